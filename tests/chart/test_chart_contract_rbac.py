"""templates/migration/contract-serviceaccount.yaml, contract-role.yaml, contract-rolebinding.yaml:
the contract Job's own ServiceAccount, read-only Role and RoleBinding, hooks created before the
Job."""

from __future__ import annotations

import pytest

from .render import (
    NAMESPACE,
    annotations,
    db,
    of_kind,
    only,
    pod_specs,
    render_chart,
    strategy_values,
)

NAME = "fast-note-migrate-contract"
RBAC_KINDS = ("ServiceAccount", "Role", "RoleBinding")


def _contract(**contract):
    return strategy_values("hook", contract={"enabled": True, **contract})


def _named(docs, kind, name=NAME):
    return only([d for d in of_kind(docs, kind) if d["metadata"]["name"] == name])


def _weight(doc) -> int:
    return int(annotations(doc)["helm.sh/hook-weight"])


class TestContractRbac:
    def test_should_grant_read_only_access_to_what_the_rollout_wait_reads(self, helm):
        role = _named(render_chart(_contract(), helm=helm), "Role")
        assert role["rules"] == [
            {
                "apiGroups": ["apps"],
                "resources": ["deployments", "replicasets"],
                "verbs": ["get", "list"],
            },
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        ]

    def test_should_bind_the_role_to_the_contract_account_in_the_release_namespace(self, helm):
        docs = render_chart(_contract(), helm=helm)
        binding = _named(docs, "RoleBinding")
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": NAME,
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}
        ]
        assert not of_kind(docs, "ClusterRole") and not of_kind(docs, "ClusterRoleBinding")

    @pytest.mark.parametrize("weight", [0, 7, -20])
    def test_should_exist_before_the_contract_job(self, helm, weight):
        docs = render_chart(_contract(weight=weight), helm=helm)
        job = _named(docs, "Job")
        assert job["spec"]["template"]["spec"]["serviceAccountName"] == NAME
        for kind in RBAC_KINDS:
            obj = _named(docs, kind)
            assert annotations(obj)["helm.sh/hook"] == annotations(job)["helm.sh/hook"]
            assert annotations(obj)["helm.sh/hook"] == "post-install,post-upgrade"
            assert (
                annotations(obj)["helm.sh/hook-delete-policy"]
                == "before-hook-creation,hook-succeeded"
            )
            assert _weight(obj) < _weight(job), kind

    def test_should_be_argocd_postsync_hooks_before_the_job_in_argocd_mode(self, helm):
        values = strategy_values("hook", argocd=True, contract={"enabled": True, "weight": 2})
        docs = render_chart(values, helm=helm)
        job = _named(docs, "Job")
        wave = int(annotations(job)["argocd.argoproj.io/sync-wave"])
        for kind in RBAC_KINDS:
            ann = annotations(_named(docs, kind))
            assert ann["argocd.argoproj.io/hook"] == "PostSync"
            assert int(ann["argocd.argoproj.io/sync-wave"]) < wave

    def test_should_give_the_only_api_token_to_the_contract_job(self, helm):
        docs = render_chart(_contract(), helm=helm)
        accounts = {
            sa["metadata"]["name"]: sa.get("automountServiceAccountToken")
            for sa in of_kind(docs, "ServiceAccount")
        }
        assert accounts == {"fast-note": False, "fast-note-migration": False, NAME: True}
        with_token = [
            name for name, spec in pod_specs(docs) if spec["automountServiceAccountToken"]
        ]
        assert with_token == [f"Job/{NAME}"]

    def test_should_label_every_object_as_migration(self, helm):
        docs = render_chart(_contract(), helm=helm)
        for kind in RBAC_KINDS:
            labels = _named(docs, kind)["metadata"]["labels"]
            assert labels["app.kubernetes.io/component"] == "migration"

    @pytest.mark.parametrize(
        "values",
        [
            db(),
            strategy_values("hook", contract={"enabled": False}),
            strategy_values("initContainer"),
            strategy_values("job"),
            strategy_values("none"),
        ],
        ids=["default", "hook-without-contract", "initContainer", "job", "none"],
    )
    def test_should_not_render_without_the_contract_hook(self, helm, values):
        docs = render_chart(values, helm=helm)
        assert not of_kind(docs, "Role") and not of_kind(docs, "RoleBinding")
        assert NAME not in {d["metadata"]["name"] for d in docs}
        assert all(spec["automountServiceAccountToken"] is False for _, spec in pod_specs(docs))
