"""templates/migration/job.yaml: the plain, content-hash-named migration Job (strategy job)."""

from __future__ import annotations

from .render import annotations, component, container, db, only, render_chart, strategy_values


def _job(values, helm):
    return only(component(render_chart(values, helm=helm), "Job", "migration"))


def _name(values, helm) -> str:
    return _job(values, helm)["metadata"]["name"]


class TestPlainJob:
    def test_should_not_be_a_helm_hook(self, helm):
        job = _job(strategy_values("job"), helm)
        assert not [k for k in annotations(job) if k.startswith(("helm.sh/", "argocd."))]

    def test_should_be_adoptable_by_the_release_after_a_manual_apply(self, helm):
        """The seed's manual method: `helm template --show-only ...job.yaml | kubectl apply`
        first; the later `helm upgrade --install` adopts the Job instead of refusing it."""
        docs = render_chart(strategy_values("job"), helm=helm)
        for obj in (
            only(component(docs, "Job", "migration")),
            only(component(docs, "ServiceAccount", "migration")),
            only(component(docs, "Secret", "app")),
        ):
            assert annotations(obj) == {
                "meta.helm.sh/release-name": "fast-note",
                "meta.helm.sh/release-namespace": "fast-note-prod",
            }
            assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"

    def test_should_use_the_seed_job_settings(self, helm):
        job = _job(strategy_values("job"), helm)
        assert job["spec"]["backoffLimit"] == 3
        assert job["spec"]["ttlSecondsAfterFinished"] == 86400
        assert job["spec"]["activeDeadlineSeconds"] == 900

    def test_should_name_the_job_after_a_hash(self, helm):
        name = _name(strategy_values("job"), helm)
        prefix, digest = name.rsplit("-", 1)
        assert prefix == "fast-note-migrate"
        assert len(digest) == 10 and int(digest, 16) >= 0

    def test_should_change_name_when_the_app_image_changes(self, helm):
        one = _name({**strategy_values("job"), "image": {"tag": "1.0.0"}}, helm)
        two = _name({**strategy_values("job"), "image": {"tag": "1.0.1"}}, helm)
        assert one != two

    def test_should_change_name_when_the_migration_settings_change(self, helm):
        base = _name(strategy_values("job"), helm)
        assert _name(strategy_values("job", lockTimeout="1m"), helm) != base
        assert _name(strategy_values("job", image={"tag": "9.9.9"}), helm) != base

    def test_should_keep_name_when_nothing_it_runs_changes(self, helm):
        base = _name(strategy_values("job"), helm)
        assert _name({**strategy_values("job"), "replicaCount": 5}, helm) == base
        assert _name({**strategy_values("job"), "config": {"data": {"A": "b"}}}, helm) == base
        assert _name({**strategy_values("job"), "ingress": {"enabled": True}}, helm) == base

    def test_should_fit_a_long_release_name_in_63_characters(self, helm):
        values = {**strategy_values("job"), "fullnameOverride": "x" * 70}
        name = _name(values, helm)
        assert len(name) <= 63
        assert name.startswith("x" * 40) and name.rsplit("-", 2)[1] == "migrate"

    def test_should_add_argocd_presync_in_argocd_mode(self, helm):
        job = _job(strategy_values("job", argocd=True), helm)
        assert annotations(job) == {
            "meta.helm.sh/release-name": "fast-note",
            "meta.helm.sh/release-namespace": "fast-note-prod",
            "argocd.argoproj.io/hook": "PreSync",
            "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
            "argocd.argoproj.io/sync-wave": "0",
        }

    def test_should_deploy_all_phases(self, helm):
        job = _job(strategy_values("job"), helm)
        args = container(job["spec"]["template"]["spec"], "migrate")["args"]
        assert args[:2] == ["deploy", "--lock-timeout"]
        assert "--phase" not in args, "the migrator runs every phase by default"

    def test_should_not_render_for_other_strategies(self, helm):
        for strategy in ("initContainer", "none"):
            docs = render_chart(strategy_values(strategy), helm=helm)
            assert not component(docs, "Job", "migration")
        assert not [
            d
            for d in render_chart(db(), helm=helm)
            if d["kind"] == "Job" and "helm.sh/hook" not in annotations(d)
        ]
