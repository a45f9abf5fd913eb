"""templates/app/deployment.yaml: app pods, their init containers per strategy, env, probes."""

from __future__ import annotations

import pytest

from .render import (
    APP_REPOSITORY,
    DB_URL,
    MIGRATOR_IMAGE,
    VALUES_FILES,
    container,
    db,
    deployment,
    env_value,
    render_chart,
    render_notes,
    strategy_values,
)

PROD = [f for f in VALUES_FILES if f.name == "prod.yaml"]
DEV = [f for f in VALUES_FILES if f.name == "dev.yaml"]


def _init_names(doc) -> list[str]:
    return [c["name"] for c in doc["spec"]["template"]["spec"].get("initContainers") or []]


class TestDeployment:
    @pytest.mark.parametrize(
        ("strategy", "expected"),
        [
            ("hook", ["copy-migrations", "wait-for-migrations"]),
            ("job", ["copy-migrations", "wait-for-migrations"]),
            ("initContainer", ["copy-migrations", "migrate"]),
            ("none", []),
        ],
    )
    def test_should_run_the_init_containers_of_the_strategy(self, helm, strategy, expected):
        doc = deployment(render_chart(strategy_values(strategy), helm=helm))
        assert _init_names(doc) == expected

    @pytest.mark.parametrize("strategy", ["hook", "job"])
    def test_should_drop_the_wait_init_container_when_disabled(self, helm, strategy):
        doc = deployment(
            render_chart(strategy_values(strategy, wait={"enabled": False}), helm=helm)
        )
        assert _init_names(doc) == []
        volumes = [v["name"] for v in doc["spec"]["template"]["spec"]["volumes"]]
        assert volumes == ["tmp"]

    def test_should_wait_with_the_configured_timeouts(self, helm):
        values = strategy_values("hook", wait={"timeout": "90s"}, connectTimeout="20s")
        spec = deployment(render_chart(values, helm=helm))["spec"]["template"]["spec"]
        wait = container(spec, "wait-for-migrations")
        assert wait["image"] == MIGRATOR_IMAGE
        assert wait["args"] == ["wait", "--timeout", "90s", "--connect-timeout", "20s"]

    def test_should_migrate_in_the_init_container_like_the_seed(self, helm):
        values = strategy_values("initContainer", lockTimeout="30s", lintPolicy="warn")
        spec = deployment(render_chart(values, helm=helm))["spec"]["template"]["spec"]
        migrate = container(spec, "migrate")
        assert migrate["args"] == [
            "deploy",
            "--lock-timeout",
            "30s",
            "--connect-timeout",
            "2m",
            "--lint-policy",
            "warn",
            "--statement-lock-timeout",
            "5s",
            "--statement-timeout",
            "0",
            "--lock-retries",
            "3",
        ]
        assert env_value(migrate, "MIGRATIONS_DIR") == "/migrations"
        assert {"name": "migrations", "mountPath": "/migrations", "readOnly": True} in migrate[
            "volumeMounts"
        ]

    def test_should_copy_migrations_out_of_the_app_image(self, helm):
        values = strategy_values("initContainer", source={"path": "/srv/app/prisma/migrations/"})
        values["image"] = {"tag": "2.0.0"}
        spec = deployment(render_chart(values, helm=helm))["spec"]["template"]["spec"]
        copy = container(spec, "copy-migrations")
        assert copy["image"] == f"{APP_REPOSITORY}:2.0.0"
        assert copy["command"] == ["cp", "-r", "/srv/app/prisma/migrations/.", "/migrations/"]
        assert {"name": "migrations", "emptyDir": {"sizeLimit": "64Mi"}} in spec["volumes"]

    def test_should_read_database_url_and_config_like_the_seed_in_prod(self, helm):
        spec = deployment(render_chart(helm=helm, values_files=PROD))["spec"]["template"]["spec"]
        app = container(spec, "app")
        assert env_value(app, "DATABASE_URL") == {
            "secretKeyRef": {"name": "fast-note-secrets", "key": "database-url"}
        }
        assert app["envFrom"] == [
            {"configMapRef": {"name": "fast-note-config"}},
            {"secretRef": {"name": "fast-note-secrets"}},
        ]
        assert env_value(container(spec, "wait-for-migrations"), "DATABASE_URL") == {
            "secretKeyRef": {"name": "fast-note-secrets", "key": "database-url"}
        }

    def test_should_use_the_release_secret_and_configmap_in_dev(self, helm):
        docs = render_chart(helm=helm, values_files=DEV)
        doc = deployment(docs)
        app = container(doc["spec"]["template"]["spec"], "app")
        assert env_value(app, "DATABASE_URL") == {
            "secretKeyRef": {"name": "fast-note-db", "key": "database-url"}
        }
        assert app["envFrom"] == [{"configMapRef": {"name": "fast-note-config"}}]
        assert doc["spec"]["replicas"] == 1

    def test_should_honour_an_existing_secret_key(self, helm):
        values = {"database": {"existingSecret": "rds", "existingSecretKey": "url"}}
        spec = deployment(render_chart(values, helm=helm))["spec"]["template"]["spec"]
        for name in ("app", "wait-for-migrations"):
            assert env_value(container(spec, name), "DATABASE_URL") == {
                "secretKeyRef": {"name": "rds", "key": "url"}
            }

    def test_should_restart_pods_when_the_config_changes(self, helm):
        one = deployment(render_chart(db(config={"data": {"A": "1"}}), helm=helm))
        two = deployment(render_chart(db(config={"data": {"A": "2"}}), helm=helm))
        key = "checksum/config"
        assert (
            one["spec"]["template"]["metadata"]["annotations"][key]
            != two["spec"]["template"]["metadata"]["annotations"][key]
        )

    def test_should_derive_nothing_in_the_pod_template_from_the_password(self, helm):
        """An unsalted hash of the database URL would let anyone who reads the Deployment test
        password guesses offline: the pod template must not change with the password."""
        one = render_chart(db(), helm=helm)
        other = db()
        other["database"]["url"] = DB_URL.replace(":secret@", ":other-secret@")
        two = render_chart(other, helm=helm)
        template = deployment(one)["spec"]["template"]
        assert "checksum/database" not in template["metadata"]["annotations"]
        assert template == deployment(two)["spec"]["template"]

    def test_should_leave_replicas_to_the_autoscaler(self, helm):
        doc = deployment(render_chart(db(autoscaling={"enabled": True}, replicaCount=7), helm=helm))
        assert "replicas" not in doc["spec"]
        doc = deployment(render_chart(db(replicaCount=7), helm=helm))
        assert doc["spec"]["replicas"] == 7

    def test_should_select_only_app_pods(self, helm):
        doc = deployment(render_chart(db(), helm=helm))
        assert doc["spec"]["selector"]["matchLabels"] == {
            "app.kubernetes.io/name": "fast-note",
            "app.kubernetes.io/instance": "fast-note",
            "app.kubernetes.io/component": "app",
        }

    def test_should_render_probes_and_allow_disabling_them(self, helm):
        spec = deployment(render_chart(db(), helm=helm))["spec"]["template"]["spec"]
        assert container(spec, "app")["readinessProbe"]["httpGet"] == {"path": "/", "port": "http"}
        spec = deployment(render_chart(db(livenessProbe=None, readinessProbe=None), helm=helm))
        app = container(spec["spec"]["template"]["spec"], "app")
        assert "livenessProbe" not in app and "readinessProbe" not in app

    def test_should_not_mount_an_api_token(self, helm):
        spec = deployment(render_chart(db(), helm=helm))["spec"]["template"]["spec"]
        assert spec["automountServiceAccountToken"] is False
        assert spec["serviceAccountName"] == "fast-note"

    def test_should_run_without_database_when_strategy_none(self, helm):
        docs = render_chart({"migration": {"strategy": "none"}}, helm=helm)
        app = container(deployment(docs)["spec"]["template"]["spec"], "app")
        assert "env" not in app
        assert not [d for d in docs if d["kind"] in ("Secret", "Job", "Pod")]


class TestStrategyNone:
    """`--set migration.strategy=none` skips every migration object with one flag, also with the
    prod values (contract hook on) and in Argo CD mode."""

    @pytest.mark.parametrize("argocd", [False, True])
    def test_should_skip_everything_with_the_prod_values(self, helm, argocd):
        values = {"migration": {"strategy": "none", "argocd": argocd}}
        docs = render_chart(values, helm=helm, values_files=PROD)
        kinds = {d["kind"] for d in docs}
        assert not kinds & {"Job", "Role", "RoleBinding"}
        hooks = [
            d["metadata"]["name"]
            for d in docs
            if "helm.sh/hook" in (d["metadata"].get("annotations") or {}) and d["kind"] != "Pod"
        ]
        assert hooks == []
        assert not [
            d
            for d in docs
            if d["metadata"]["labels"].get("app.kubernetes.io/component") == "migration"
            and d["kind"] != "NetworkPolicy"
        ]
        spec = deployment(docs)["spec"]["template"]["spec"]
        assert "initContainers" not in spec
        assert [v["name"] for v in spec["volumes"]] == ["tmp"]

    def test_should_say_nothing_migrates_with_the_prod_values(self):
        notes = render_notes('{"migration": {"strategy": "none"}}', str(PROD[0]))
        assert "Nothing touches the database" in notes
        assert "contract" not in notes and "Argo CD" not in notes
