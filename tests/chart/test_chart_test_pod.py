"""templates/tests/pod.yaml: the `helm test` Pod running `fast-note-migrate verify`."""

from __future__ import annotations

from .render import (
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
        }
        verify = container(pod["spec"], "verify")
        assert verify["args"] == ["verify"]
        assert verify["image"] == MIGRATOR_IMAGE
        assert pod["spec"]["restartPolicy"] == "Never"

    def test_should_verify_the_migrations_of_the_deployed_app_image(self, helm):
        values = {**strategy_values("none"), "image": {"tag": "3.1.4"}}
        pod = only(component(render_chart(values, helm=helm), "Pod", "test"))
        assert container(pod["spec"], "copy-migrations")["image"] == "fast-note:3.1.4"
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
