"""templates/tests/pod.yaml: the `helm test` Pod running `fast-note-migrate verify`."""

from __future__ import annotations

import pytest

from .render import (
    APP_REPOSITORY,
    MIGRATOR_IMAGE,
    VALUES_FILES,
    annotations,
    component,
    container,
    env_value,
    only,
    render_chart,
    strategy_values,
)


class TestVerifyPod:
    def test_should_run_verify_as_a_helm_test(self, helm):
        pod = only(component(render_chart(strategy_values("hook"), helm=helm), "Pod", "test"))
        assert annotations(pod) == {
            "helm.sh/hook": "test",
            "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
            # Helm prints the log itself: `helm test --logs` reads the Pod after
            # hook-succeeded deleted it and fails (helm/helm#9098).
            "helm.sh/hook-output-log-policy": "hook-succeeded,hook-failed",
        }
        verify = container(pod["spec"], "verify")
        assert verify["args"] == ["verify"]
        assert verify["image"] == MIGRATOR_IMAGE
        assert pod["spec"]["restartPolicy"] == "Never"

    def test_should_verify_the_migrations_of_the_deployed_app_image(self, helm):
        values = {**strategy_values("none"), "image": {"tag": "3.1.4"}}
        pod = only(component(render_chart(values, helm=helm), "Pod", "test"))
        assert container(pod["spec"], "copy-migrations")["image"] == f"{APP_REPOSITORY}:3.1.4"
        assert env_value(container(pod["spec"], "verify"), "MIGRATIONS_DIR") == "/migrations"

    def test_should_read_the_release_secret_not_the_hook_copy(self, helm):
        pod = only(component(render_chart(strategy_values("hook"), helm=helm), "Pod", "test"))
        assert env_value(container(pod["spec"], "verify"), "DATABASE_URL") == {
            "secretKeyRef": {"name": "fast-note-db", "key": "database-url"}
        }

    def test_should_verify_prod_with_the_existing_secret(self, helm):
        prod = [f for f in VALUES_FILES if f.name == "prod.yaml"]
        pod = only(component(render_chart(helm=helm, values_files=prod), "Pod", "test"))
        assert env_value(container(pod["spec"], "verify"), "DATABASE_URL") == {
            "secretKeyRef": {"name": "fast-note-secrets", "key": "database-url"}
        }

    def test_should_not_render_when_disabled_or_without_database(self, helm):
        docs = render_chart({**strategy_values("hook"), "tests": {"enabled": False}}, helm=helm)
        assert not component(docs, "Pod", "test")
        docs = render_chart({"migration": {"strategy": "none"}}, helm=helm)
        assert not component(docs, "Pod", "test")


def _verify_jobs(docs):
    return component(docs, "Job", "test")


class TestArgoCDVerifyJob:
    """Argo CD ignores `helm.sh/hook: test` Pods: in Argo CD mode `verify` also runs as a
    PostSync hook Job."""

    @pytest.mark.parametrize("strategy", ["hook", "job"])
    def test_should_verify_after_every_sync(self, helm, strategy):
        docs = render_chart(strategy_values(strategy, argocd=True), helm=helm)
        job = only(_verify_jobs(docs))
        assert job["metadata"]["name"].startswith("fast-note-verify-")
        assert annotations(job) == {
            "argocd.argoproj.io/hook": "PostSync",
            "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
        }
        assert job["spec"]["backoffLimit"] == 0
        assert job["spec"]["ttlSecondsAfterFinished"] == 86400
        spec = job["spec"]["template"]["spec"]
        verify = container(spec, "verify")
        assert verify["args"] == ["verify"]
        assert env_value(verify, "DATABASE_URL") == {
            "secretKeyRef": {"name": "fast-note-db", "key": "database-url"}
        }
        assert spec["serviceAccountName"] == "fast-note"
        # the helm test Pod stays for `helm test` users
        assert only(component(docs, "Pod", "test"))

    def test_should_get_a_new_name_only_when_its_spec_changes(self, helm):
        def name(values):
            return only(_verify_jobs(render_chart(values, helm=helm)))["metadata"]["name"]

        base = strategy_values("job", argocd=True)
        assert name(base) == name(strategy_values("job", argocd=True))
        assert name(base) != name({**base, "image": {"tag": "9.9.9"}})

    @pytest.mark.parametrize(
        "values",
        [
            strategy_values("job"),
            strategy_values("hook"),
            {**strategy_values("job", argocd=True), "tests": {"enabled": False}},
            strategy_values("none", argocd=True),
        ],
        ids=["job", "hook", "tests-off", "none"],
    )
    def test_should_not_render_outside_argocd_mode(self, helm, values):
        assert not _verify_jobs(render_chart(values, helm=helm))
