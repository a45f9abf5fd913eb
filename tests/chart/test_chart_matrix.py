"""Every strategy with every environment file renders with both Helm majors, validates against the
Kubernetes schemas, and every pod meets the Pod Security Standard "restricted"."""

from __future__ import annotations

import pytest

from fast_note_migrate import __version__

from .render import (
    API_POD,
    APP_REPOSITORY,
    CI_VALUES_FILES,
    DB_URL,
    MIGRATOR_REPOSITORY,
    NAMESPACE,
    STRATEGIES,
    VALUES_FILES,
    all_violations,
    containers,
    db,
    pod_specs,
    pss_restricted_violations,
    render_chart,
    strategy_values,
)

# Strategy "none" with no database configured is valid too; the others get a URL only when the
# values file has no database of its own.
MATRIX = [(s, f) for s in STRATEGIES for f in VALUES_FILES]
ALL_FILES = VALUES_FILES + CI_VALUES_FILES


def _values_for(strategy: str, values_file) -> dict:
    """The environment file switched to ``strategy``, as a user would switch it: the contract
    hook exists only with strategy hook (the combination fails at render otherwise, tested in
    test_chart_render_failures), so it is turned off for the other strategies."""
    text = values_file.read_text()
    has_db = "url:" in text or "existingSecret:" in text
    migration: dict = {"strategy": strategy}
    if strategy != "hook":
        migration["contract"] = {"enabled": False}
    return {
        "migration": migration,
        **({} if has_db else {"database": {"url": DB_URL}}),
    }


class TestStrategyMatrix:
    def test_should_have_environment_files(self):
        names = {f.name for f in VALUES_FILES}
        assert {"dev.yaml", "prod.yaml"} <= names

    @pytest.mark.parametrize(
        ("strategy", "values_file"), MATRIX, ids=[f"{s}-{f.stem}" for s, f in MATRIX]
    )
    def test_should_render_valid_objects_for_every_strategy_and_environment(
        self, helm, strategy, values_file
    ):
        docs = render_chart(
            _values_for(strategy, values_file), helm=helm, values_files=[values_file]
        )
        kinds = {d["kind"] for d in docs}
        assert {"Deployment", "Service"} <= kinds
        jobs = [d for d in docs if d["kind"] == "Job"]
        assert bool(jobs) == (strategy in ("hook", "job")), f"{strategy} renders Jobs {jobs}"

    @pytest.mark.parametrize(
        ("strategy", "values_file"), MATRIX, ids=[f"{s}-{f.stem}" for s, f in MATRIX]
    )
    def test_should_meet_restricted_pod_security_on_every_pod(self, helm, strategy, values_file):
        docs = render_chart(
            _values_for(strategy, values_file), helm=helm, values_files=[values_file]
        )
        assert list(pod_specs(docs)), "no pod rendered"
        assert all_violations(docs) == []

    @pytest.mark.parametrize("values_file", VALUES_FILES, ids=[f.stem for f in VALUES_FILES])
    def test_should_meet_restricted_pod_security_with_the_contract_hook(self, helm, values_file):
        values = _values_for("hook", values_file)
        values["migration"]["contract"] = {"enabled": True}
        docs = render_chart(values, helm=helm, values_files=[values_file])
        assert API_POD in dict(pod_specs(docs))
        assert {"Role", "RoleBinding"} <= {d["kind"] for d in docs}
        assert all_violations(docs) == []

    @pytest.mark.parametrize("values_file", CI_VALUES_FILES, ids=[f.stem for f in CI_VALUES_FILES])
    def test_should_render_every_ci_values_file(self, helm, values_file):
        docs = render_chart(helm=helm, values_files=[values_file])
        assert all_violations(docs) == []

    @pytest.mark.parametrize("strategy", STRATEGIES)
    def test_should_render_for_the_kubernetes_1_20_api_server(self, helm, strategy):
        full = next(f for f in CI_VALUES_FILES if f.name == "full-values.yaml")
        values = {"migration": {"strategy": strategy, "contract": {"enabled": strategy == "hook"}}}
        docs = render_chart(values, helm=helm, values_files=[full], kube_version="1.20.2")
        api = {d["kind"]: d["apiVersion"] for d in docs}
        assert api["PodDisruptionBudget"] == "policy/v1beta1"
        assert api["HorizontalPodAutoscaler"] == "autoscaling/v2beta2"
        assert all("podFailurePolicy" not in d["spec"] for d in docs if d["kind"] == "Job")
        assert all_violations(docs) == []

    def test_should_name_every_port_protocol_tcp(self, helm):
        docs = render_chart(
            {"ingress": {"enabled": True}}, helm=helm, values_files=[VALUES_FILES[0]]
        )
        ports = [
            p for _, spec in pod_specs(docs) for c in containers(spec) for p in c.get("ports", [])
        ]
        ports += [p for d in docs if d["kind"] == "Service" for p in d["spec"]["ports"]]
        assert ports and all(p.get("protocol") == "TCP" for p in ports)

    def test_should_carry_standard_labels_on_every_object(self, helm):
        docs = render_chart(helm=helm, values_files=[CI_VALUES_FILES[0]])
        for doc in docs:
            labels = doc["metadata"]["labels"]
            assert labels["app.kubernetes.io/name"] == "fast-note"
            assert labels["app.kubernetes.io/instance"] == "fast-note"
            assert labels["app.kubernetes.io/managed-by"] == "Helm"
            assert labels["app.kubernetes.io/component"] in ("app", "migration", "test")

    @pytest.mark.parametrize("values_file", ALL_FILES, ids=[f.stem for f in ALL_FILES])
    def test_should_set_the_release_namespace_on_every_object(self, helm, values_file):
        """`helm template | kubectl apply` and GitOps renders land in the release namespace,
        whatever the current kubectl context says."""
        docs = render_chart(helm=helm, values_files=[values_file])
        assert {d["metadata"].get("namespace") for d in docs} == {NAMESPACE}

    def test_should_carry_common_labels_and_annotations_everywhere(self, helm):
        common = {
            "commonLabels": {"team": "notes", "cost-center": "42"},
            "commonAnnotations": {"owner": "notes@example.test"},
        }
        docs = []
        for values in (
            strategy_values("hook", contract={"enabled": True}),
            strategy_values("job", argocd=True),
            strategy_values("initContainer"),
        ):
            docs += render_chart(
                {
                    **values,
                    **common,
                    "ingress": {"enabled": True, "annotations": {"owner": "ingress-team"}},
                    "autoscaling": {"enabled": True},
                    "podDisruptionBudget": {"enabled": True},
                },
                helm=helm,
            )
        assert len({d["kind"] for d in docs}) >= 12
        templates = [d for d in docs if d["kind"] == "Pod"] + [
            d["spec"]["template"] for d in docs if d["kind"] in ("Deployment", "Job")
        ]
        for meta in [d["metadata"] for d in docs] + [t["metadata"] for t in templates]:
            where = meta.get("name", "a pod template")
            assert {"team": "notes", "cost-center": "42"}.items() <= meta["labels"].items(), where
            assert "owner" in meta["annotations"], where
        ingress = next(d for d in docs if d["kind"] == "Ingress")
        assert ingress["metadata"]["annotations"]["owner"] == "ingress-team"
        hook = next(d for d in docs if d["metadata"]["name"] == "fast-note-migrate")
        assert hook["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"

    def test_should_keep_the_selector_labels_over_common_labels(self, helm):
        values = db(commonLabels={"app.kubernetes.io/component": "other"})
        doc = next(d for d in render_chart(values, helm=helm) if d["kind"] == "Deployment")
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == "app"

    def test_should_pull_the_published_images_by_default(self, helm):
        for values_file in VALUES_FILES + CI_VALUES_FILES:
            docs = render_chart(helm=helm, values_files=[values_file])
            images = {c["image"] for _, spec in pod_specs(docs) for c in containers(spec)}
            for image in images:
                repository, _, tag = image.partition(":")
                assert repository in (APP_REPOSITORY, MIGRATOR_REPOSITORY), image
                assert tag == __version__, f"{image} in the render of {values_file.name}"


class TestEnvironmentFiles:
    @pytest.mark.parametrize(
        ("env", "policy"), [("dev", "warn"), ("prod", "block")], ids=["dev", "prod"]
    )
    def test_should_set_the_lint_policy_per_environment(self, helm, env, policy):
        values_file = next(f for f in VALUES_FILES if f.stem == env)
        docs = render_chart(helm=helm, values_files=[values_file])
        migrate = [
            c for _, spec in pod_specs(docs) for c in containers(spec) if c["name"] == "migrate"
        ]
        assert len(migrate) == 1
        args = migrate[0]["args"]
        assert args[0] == "deploy"
        assert args[args.index("--lint-policy") + 1] == policy
        assert args[args.index("--statement-lock-timeout") + 1] == "5s"
        assert args[args.index("--lock-retries") + 1] == "3"


class TestPodSecurityChecker:
    """The checker used above must notice what it is meant to catch."""

    def test_should_flag_a_root_privileged_container(self, helm):
        docs = render_chart(
            {
                "securityContext": {
                    "runAsNonRoot": False,
                    "privileged": True,
                    "allowPrivilegeEscalation": True,
                },
                "podSecurityContext": {"runAsUser": 0},
            },
            helm=helm,
            values_files=[VALUES_FILES[0]],
        )
        problems = "\n".join(all_violations(docs))
        assert "privileged" in problems
        assert "allowPrivilegeEscalation not false" in problems
        assert "runAsUser 0" in problems

    def test_should_flag_a_missing_tmp_and_host_network(self):
        spec = {
            "hostNetwork": True,
            "automountServiceAccountToken": False,
            "containers": [{"name": "x", "ports": [{"containerPort": 1}]}],
        }
        problems = "\n".join(pss_restricted_violations("Pod/x", spec))
        assert "hostNetwork" in problems
        assert "/tmp is not an emptyDir" in problems
        assert "no protocol: TCP" in problems

    def test_should_flag_an_api_token_on_any_pod_but_the_contract_job(self):
        spec = {"automountServiceAccountToken": True, "serviceAccountName": "fast-note"}
        assert "Job/fast-note-migrate: automountServiceAccountToken is not false" in (
            pss_restricted_violations("Job/fast-note-migrate", spec)
        )
        assert f"{API_POD}: automountServiceAccountToken is not false" in (
            pss_restricted_violations(API_POD, spec)
        )
        contract = {**spec, "serviceAccountName": "fast-note-migrate-contract"}
        assert pss_restricted_violations(API_POD, contract) == []
