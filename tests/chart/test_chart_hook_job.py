"""templates/migration/hook-job.yaml and contract-hook-job.yaml: the migration as Helm hooks."""

from __future__ import annotations

import pytest

from .render import (
    NAMESPACE,
    annotations,
    component,
    container,
    db,
    env_value,
    only,
    render_chart,
    strategy_values,
)


def _hook_job(docs):
    return only(
        [
            d
            for d in component(docs, "Job", "migration")
            if d["metadata"]["name"] == "fast-note-migrate"
        ]
    )


def _contract_job(docs):
    return only(
        [
            d
            for d in component(docs, "Job", "migration")
            if d["metadata"]["name"] == "fast-note-migrate-contract"
        ]
    )


class TestHookJob:
    def test_should_run_before_install_and_upgrade(self, helm):
        job = _hook_job(render_chart(strategy_values("hook"), helm=helm))
        assert annotations(job) == {
            "helm.sh/hook": "pre-install,pre-upgrade",
            "helm.sh/hook-weight": "0",
            "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
            "helm.sh/hook-output-log-policy": "hook-succeeded,hook-failed",
        }

    def test_should_keep_node_autoscalers_from_evicting_every_migration_pod(self, helm):
        docs = render_chart(strategy_values("hook", contract={"enabled": True}), helm=helm)
        docs += render_chart(strategy_values("job"), helm=helm)
        jobs = component(docs, "Job", "migration")
        assert len(jobs) == 3  # hook, contract, plain
        for job in jobs:
            pod_annotations = job["spec"]["template"]["metadata"]["annotations"]
            assert pod_annotations["karpenter.sh/do-not-disrupt"] == "true"
            assert pod_annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
        app = only([d for d in docs if d["kind"] == "Deployment"][:1])
        assert "karpenter.sh/do-not-disrupt" not in app["spec"]["template"]["metadata"].get(
            "annotations", {}
        )

    def test_should_let_a_disruption_annotation_be_dropped(self, helm):
        values = strategy_values(
            "hook", job={"podAnnotations": {"karpenter.sh/do-not-disrupt": None, "team": "db"}}
        )
        pod_annotations = _hook_job(render_chart(values, helm=helm))["spec"]["template"][
            "metadata"
        ]["annotations"]
        assert pod_annotations == {
            "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
            "team": "db",
        }

    def test_should_keep_a_failed_job_for_its_logs(self, helm):
        job = _hook_job(render_chart(strategy_values("hook"), helm=helm))
        assert "hook-failed" not in annotations(job)["helm.sh/hook-delete-policy"]
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"

    def test_should_deploy_all_phases_with_the_configured_timeouts(self, helm):
        values = strategy_values(
            "hook", lockTimeout="45s", connectTimeout="1m", lintPolicy="block", logFormat="json"
        )
        spec = _hook_job(render_chart(values, helm=helm))["spec"]["template"]["spec"]
        migrate = container(spec, "migrate")
        assert migrate["args"] == [
            "deploy",
            "--lock-timeout",
            "45s",
            "--connect-timeout",
            "1m",
            "--lint-policy",
            "block",
            "--statement-lock-timeout",
            "5s",
            "--statement-timeout",
            "0",
            "--lock-retries",
            "3",
        ]
        assert env_value(migrate, "MIGRATE_LOG_FORMAT") == "json"
        assert env_value(migrate, "MIGRATIONS_DIR") == "/migrations"
        assert [c["name"] for c in spec["initContainers"]] == ["copy-migrations"]

    def test_should_pass_the_statement_timeouts_and_lock_retries(self, helm):
        values = strategy_values(
            "hook", statementLockTimeout="200ms", statementTimeout="10m", lockRetries=0
        )
        spec = _hook_job(render_chart(values, helm=helm))["spec"]["template"]["spec"]
        args = container(spec, "migrate")["args"]
        assert args[args.index("--statement-lock-timeout") + 1] == "200ms"
        assert args[args.index("--statement-timeout") + 1] == "10m"
        assert args[args.index("--lock-retries") + 1] == "0"
        assert "--lint-policy" not in args  # "" keeps the migrator's default

    def test_should_bound_the_job_in_time_and_retries(self, helm):
        values = strategy_values(
            "hook", lockTimeout="1m", job={"backoffLimit": 1, "activeDeadlineSeconds": 300}
        )
        job = _hook_job(render_chart(values, helm=helm))
        assert job["spec"]["backoffLimit"] == 1
        assert job["spec"]["activeDeadlineSeconds"] == 300
        assert job["spec"]["ttlSecondsAfterFinished"] == 86400  # a failed Job stays a day

    @pytest.mark.parametrize(("ttl", "expected"), [(300, 300), (7200, 7200), (None, "unset")])
    def test_should_keep_ttl_distinct_from_unset(self, helm, ttl, expected):
        job = _hook_job(
            render_chart(strategy_values("hook", job={"ttlSecondsAfterFinished": ttl}), helm=helm)
        )
        assert job["spec"].get("ttlSecondsAfterFinished", "unset") == expected

    def test_should_not_retry_errors_a_retry_cannot_fix(self, helm):
        job = _hook_job(render_chart(strategy_values("hook"), helm=helm))
        rule = job["spec"]["podFailurePolicy"]["rules"][0]
        assert rule["action"] == "FailJob"
        assert rule["onExitCodes"] == {
            "containerName": "migrate",
            "operator": "In",
            "values": [2, 4, 5],
        }

    def test_should_leave_out_pod_failure_policy_before_kubernetes_1_26(self, helm):
        docs = render_chart(strategy_values("hook"), helm=helm, kube_version="1.20.2")
        assert "podFailurePolicy" not in _hook_job(docs)["spec"]

    def test_should_take_the_hook_weight(self, helm):
        job = _hook_job(render_chart(strategy_values("hook", hook={"weight": 10}), helm=helm))
        assert annotations(job)["helm.sh/hook-weight"] == "10"

    def test_should_merge_user_annotations_on_top(self, helm):
        values = strategy_values(
            "hook",
            job={
                "annotations": {"team": "db", "helm.sh/hook-delete-policy": "before-hook-creation"}
            },
        )
        ann = annotations(_hook_job(render_chart(values, helm=helm)))
        assert ann["team"] == "db"
        assert ann["helm.sh/hook-delete-policy"] == "before-hook-creation"
        assert ann["helm.sh/hook"] == "pre-install,pre-upgrade"

    def test_should_add_argocd_presync_in_argocd_mode(self, helm):
        ann = annotations(_hook_job(render_chart(strategy_values("hook", argocd=True), helm=helm)))
        assert ann["argocd.argoproj.io/hook"] == "PreSync"
        assert ann["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
        assert ann["helm.sh/hook"] == "pre-install,pre-upgrade"

    def test_should_use_the_migration_service_account_without_token(self, helm):
        spec = _hook_job(render_chart(strategy_values("hook"), helm=helm))["spec"]["template"][
            "spec"
        ]
        assert spec["serviceAccountName"] == "fast-note-migration"
        assert spec["automountServiceAccountToken"] is False

    def test_should_read_the_hook_copy_of_a_values_secret(self, helm):
        spec = _hook_job(render_chart(strategy_values("hook"), helm=helm))["spec"]["template"][
            "spec"
        ]
        assert env_value(container(spec, "migrate"), "DATABASE_URL") == {
            "secretKeyRef": {"name": "fast-note-migration-db", "key": "database-url"}
        }

    def test_should_read_an_existing_secret_directly(self, helm):
        values = {"database": {"existingSecret": "fast-note-secrets"}}
        spec = _hook_job(render_chart(values, helm=helm))["spec"]["template"]["spec"]
        assert env_value(container(spec, "migrate"), "DATABASE_URL") == {
            "secretKeyRef": {"name": "fast-note-secrets", "key": "database-url"}
        }

    @pytest.mark.parametrize("strategy", ["initContainer", "job", "none"])
    def test_should_not_render_for_other_strategies(self, helm, strategy):
        docs = render_chart(strategy_values(strategy), helm=helm)
        assert not [
            d
            for d in docs
            if "helm.sh/hook" in annotations(d) and "pre-install" in annotations(d)["helm.sh/hook"]
        ]


class TestContractHookJob:
    def _docs(self, helm, **contract):
        return render_chart(
            strategy_values("hook", contract={"enabled": True, **contract}), helm=helm
        )

    def test_should_run_the_contract_phase_after_the_upgrade(self, helm):
        job = _contract_job(self._docs(helm, weight=3))
        assert annotations(job)["helm.sh/hook"] == "post-install,post-upgrade"
        assert annotations(job)["helm.sh/hook-weight"] == "3"
        args = container(job["spec"]["template"]["spec"], "migrate-contract")["args"]
        assert args[args.index("--phase") + 1] == "contract"

    def test_should_wait_for_the_rollout_of_the_app_deployment(self, helm):
        docs = self._docs(helm, rolloutTimeout="7m")
        job = _contract_job(docs)
        args = container(job["spec"]["template"]["spec"], "migrate-contract")["args"]
        deployment_name = only([d for d in docs if d["kind"] == "Deployment"])["metadata"]["name"]
        assert args[args.index("--wait-for-rollout") + 1] == deployment_name
        assert args[args.index("--namespace") + 1] == NAMESPACE
        assert args[args.index("--rollout-timeout") + 1] == "7m"

    def test_should_apply_the_same_safety_settings_as_the_pre_hook(self, helm):
        docs = render_chart(
            strategy_values(
                "hook",
                contract={"enabled": True},
                lintPolicy="block",
                statementLockTimeout="1s",
                statementTimeout="30m",
                lockRetries=5,
            ),
            helm=helm,
        )
        pre = container(_hook_job(docs)["spec"]["template"]["spec"], "migrate")["args"]
        post = container(_contract_job(docs)["spec"]["template"]["spec"], "migrate-contract")[
            "args"
        ]
        for flag in ("--lint-policy", "--statement-lock-timeout", "--statement-timeout"):
            assert post[post.index(flag) + 1] == pre[pre.index(flag) + 1], flag
        assert post[post.index("--lock-retries") + 1] == "5"

    def test_should_use_its_own_service_account_with_a_token(self, helm):
        spec = _contract_job(self._docs(helm))["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == "fast-note-migrate-contract"
        assert spec["automountServiceAccountToken"] is True

    def test_should_make_the_pre_hook_expand_only(self, helm):
        job = _hook_job(self._docs(helm))
        args = container(job["spec"]["template"]["spec"], "migrate")["args"]
        assert args[args.index("--phase") + 1] == "expand"

    def test_should_keep_the_secret_copy_for_the_post_hook(self, helm):
        docs = self._docs(helm)
        secret = only(component(docs, "Secret", "migration"))
        assert (
            annotations(secret)["helm.sh/hook"]
            == "pre-install,pre-upgrade,post-install,post-upgrade"
        )
        sa = only(
            [
                d
                for d in component(docs, "ServiceAccount", "migration")
                if d["metadata"]["name"] == "fast-note-migration"
            ]
        )
        assert annotations(sa)["helm.sh/hook"] == "pre-install,pre-upgrade"

    def test_should_be_off_by_default(self, helm):
        names = [d["metadata"]["name"] for d in render_chart(db(), helm=helm)]
        assert "fast-note-migrate-contract" not in names


class TestHookJobLogs:
    def test_should_have_helm_print_the_logs_of_both_migration_hooks(self, helm):
        docs = render_chart(strategy_values("hook", contract={"enabled": True}), helm=helm)
        for job in (_hook_job(docs), _contract_job(docs)):
            assert annotations(job)["helm.sh/hook-output-log-policy"] == (
                "hook-succeeded,hook-failed"
            )

    def test_should_not_annotate_the_plain_job(self, helm):
        job = only(component(render_chart(strategy_values("job"), helm=helm), "Job", "migration"))
        assert "helm.sh/hook-output-log-policy" not in annotations(job)

    def test_should_keep_support_objects_free_of_log_policies(self, helm):
        docs = render_chart(strategy_values("hook", contract={"enabled": True}), helm=helm)
        for doc in docs:
            if doc["kind"] not in ("Job", "Pod"):
                assert "helm.sh/hook-output-log-policy" not in annotations(doc), doc["kind"]
