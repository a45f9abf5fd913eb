"""What the migration hooks use (templates/migration/serviceaccount.yaml, hook-secret.yaml) and the
release's own Secret, ConfigMap, ServiceAccount and Service (templates/app/)."""

from __future__ import annotations

import base64

import pytest

from .render import DB_URL, annotations, component, db, only, render_chart, strategy_values


def _weight(doc) -> int:
    return int(annotations(doc)["helm.sh/hook-weight"])


class TestMigrationServiceAccount:
    def test_should_exist_before_the_hook_job(self, helm):
        docs = render_chart(strategy_values("hook"), helm=helm)
        sa = only(component(docs, "ServiceAccount", "migration"))
        job = only(component(docs, "Job", "migration"))
        assert sa["metadata"]["name"] == job["spec"]["template"]["spec"]["serviceAccountName"]
        assert annotations(sa)["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert _weight(sa) < _weight(job)
        assert (
            annotations(sa)["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
        )

    def test_should_stay_below_a_negative_job_weight(self, helm):
        docs = render_chart(strategy_values("hook", hook={"weight": -20}), helm=helm)
        assert _weight(only(component(docs, "ServiceAccount", "migration"))) == -25

    def test_should_be_a_plain_object_for_strategy_job(self, helm):
        sa = only(
            component(
                render_chart(strategy_values("job"), helm=helm), "ServiceAccount", "migration"
            )
        )
        assert not [k for k in annotations(sa) if k.startswith("helm.sh/")]
        assert sa["automountServiceAccountToken"] is False

    def test_should_be_an_argocd_presync_hook_in_argocd_mode(self, helm):
        docs = render_chart(strategy_values("job", argocd=True), helm=helm)
        sa = only(component(docs, "ServiceAccount", "migration"))
        assert annotations(sa)["argocd.argoproj.io/hook"] == "PreSync"
        assert int(annotations(sa)["argocd.argoproj.io/sync-wave"]) < 0

    def test_should_keep_user_annotations(self, helm):
        values = strategy_values("hook", serviceAccount={"annotations": {"iam": "role"}})
        sa = only(component(render_chart(values, helm=helm), "ServiceAccount", "migration"))
        assert annotations(sa)["iam"] == "role" and "helm.sh/hook" in annotations(sa)

    def test_should_use_a_named_existing_account(self, helm):
        values = strategy_values("hook", serviceAccount={"create": False, "name": "db-migrator"})
        docs = render_chart(values, helm=helm)
        assert not component(docs, "ServiceAccount", "migration")
        job = only(component(docs, "Job", "migration"))
        assert job["spec"]["template"]["spec"]["serviceAccountName"] == "db-migrator"

    @pytest.mark.parametrize("strategy", ["initContainer", "none"])
    def test_should_not_render_without_a_migration_job(self, helm, strategy):
        assert not component(
            render_chart(strategy_values(strategy), helm=helm), "ServiceAccount", "migration"
        )


class TestHookSecret:
    def test_should_copy_the_values_url_as_a_hook_below_the_job(self, helm):
        docs = render_chart(strategy_values("hook"), helm=helm)
        secret = only(component(docs, "Secret", "migration"))
        job = only(component(docs, "Job", "migration"))
        assert secret["metadata"]["name"] == "fast-note-migration-db"
        assert base64.b64decode(secret["data"]["database-url"]).decode() == DB_URL
        assert annotations(secret)["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert (
            annotations(secret)["helm.sh/hook-delete-policy"]
            == "before-hook-creation,hook-succeeded"
        )
        assert _weight(secret) < _weight(job)

    def test_should_not_exist_with_an_existing_secret(self, helm):
        docs = render_chart({"database": {"existingSecret": "fast-note-secrets"}}, helm=helm)
        assert not of_kind_secret(docs)

    @pytest.mark.parametrize("strategy", ["initContainer", "job", "none"])
    def test_should_not_exist_when_no_hook_needs_it(self, helm, strategy):
        assert not component(
            render_chart(strategy_values(strategy), helm=helm), "Secret", "migration"
        )


def of_kind_secret(docs):
    return [d for d in docs if d["kind"] == "Secret"]


class TestAppSecret:
    @pytest.mark.parametrize("strategy", ["hook", "initContainer", "job", "none"])
    def test_should_never_be_a_hook(self, helm, strategy):
        """The app's Secret is never deleted or recreated under running pods."""
        secret = only(
            component(render_chart(strategy_values(strategy), helm=helm), "Secret", "app")
        )
        assert secret["metadata"]["name"] == "fast-note-db"
        assert not [k for k in annotations(secret) if k.startswith(("helm.sh/", "argocd."))]
        assert base64.b64decode(secret["data"]["database-url"]).decode() == DB_URL

    def test_should_not_render_for_an_existing_secret(self, helm):
        docs = render_chart({"database": {"existingSecret": "fast-note-secrets"}}, helm=helm)
        assert not component(docs, "Secret", "app")


class TestAppConfigMap:
    def test_should_render_config_data_as_strings(self, helm):
        docs = render_chart(
            db(config={"data": {"NODE_ENV": "production", "PORT": 3000}}), helm=helm
        )
        cm = only(component(docs, "ConfigMap", "app"))
        assert cm["metadata"]["name"] == "fast-note-config"
        assert cm["data"] == {"NODE_ENV": "production", "PORT": "3000"}

    def test_should_not_render_for_an_existing_configmap(self, helm):
        docs = render_chart(db(config={"existingConfigMap": "fast-note-config"}), helm=helm)
        assert not component(docs, "ConfigMap", "app")


class TestAppServiceAccount:
    def test_should_render_without_token_by_default(self, helm):
        sa = only(component(render_chart(db(), helm=helm), "ServiceAccount", "app"))
        assert sa["metadata"]["name"] == "fast-note"
        assert sa["automountServiceAccountToken"] is False
        assert annotations(sa) == {}

    def test_should_not_render_when_disabled(self, helm):
        docs = render_chart(db(serviceAccount={"create": False}), helm=helm)
        assert not component(docs, "ServiceAccount", "app")
        spec = only([d for d in docs if d["kind"] == "Deployment"])["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == "default"


class TestService:
    def test_should_route_the_http_port_to_app_pods_only(self, helm):
        svc = only(
            [
                d
                for d in render_chart(db(service={"port": 8080}), helm=helm)
                if d["kind"] == "Service"
            ]
        )
        assert svc["spec"]["ports"] == [
            {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
        ]
        assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "app"
