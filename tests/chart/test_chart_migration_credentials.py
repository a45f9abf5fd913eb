"""migration.database: the migrator's own credentials (a DDL role, a direct endpoint), defaulting to
the app's, in the hook, plain and contract Jobs, the migrate init container and the Secrets."""

from __future__ import annotations

import base64

import pytest

from .render import (
    DB_URL,
    component,
    container,
    deployment,
    env_value,
    only,
    render_chart,
)

MIGRATE_URL = "postgresql://fastnote_ddl:ddl-secret@postgres-direct:5432/fastnote"


def _ref(name: str, key: str) -> dict:
    return {"secretKeyRef": {"name": name, "key": key}}


def _jobs(docs) -> dict:
    return {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in of_job(docs)}


def of_job(docs):
    return component(docs, "Job", "migration")


def _app_refs(docs) -> list:
    spec = deployment(docs)["spec"]["template"]["spec"]
    refs = [env_value(container(spec, "app"), "DATABASE_URL")]
    if any(c["name"] == "wait-for-migrations" for c in spec.get("initContainers") or []):
        refs.append(env_value(container(spec, "wait-for-migrations"), "DATABASE_URL"))
    pod = only(component(docs, "Pod", "test"))
    refs.append(env_value(container(pod["spec"], "verify"), "DATABASE_URL"))
    return refs


class TestMigrationCredentials:
    def test_should_default_to_the_app_credentials(self, helm):
        docs = render_chart(
            {
                "database": {"existingSecret": "fast-note-secrets"},
                "migration": {"strategy": "hook"},
            },
            helm=helm,
        )
        job = _jobs(docs)["fast-note-migrate"]
        assert env_value(container(job, "migrate"), "DATABASE_URL") == _ref(
            "fast-note-secrets", "database-url"
        )

    def test_should_read_a_migration_secret_in_every_migration_job(self, helm):
        values = {
            "database": {"existingSecret": "fast-note-secrets"},
            "migration": {
                "strategy": "hook",
                "contract": {"enabled": True},
                "database": {"existingSecret": "fast-note-ddl"},
            },
        }
        docs = render_chart(values, helm=helm)
        jobs = _jobs(docs)
        assert set(jobs) == {"fast-note-migrate", "fast-note-migrate-contract"}
        for name, spec in jobs.items():
            migrator = spec["containers"][0]
            assert env_value(migrator, "DATABASE_URL") == _ref("fast-note-ddl", "database-url"), (
                name
            )
        # The app, its wait init container and the test keep the app's (DML) role.
        assert _app_refs(docs) == [_ref("fast-note-secrets", "database-url")] * 3

    def test_should_read_another_key_of_the_app_secret(self, helm):
        """One Secret holding both URLs: the pooled one for the app, the direct one for the
        migrator (Prisma's url / directUrl)."""
        values = {
            "database": {"existingSecret": "fast-note-secrets"},
            "migration": {"strategy": "job", "database": {"existingSecretKey": "direct-url"}},
        }
        docs = render_chart(values, helm=helm)
        (job,) = _jobs(docs).values()
        assert env_value(container(job, "migrate"), "DATABASE_URL") == _ref(
            "fast-note-secrets", "direct-url"
        )
        assert _app_refs(docs) == [_ref("fast-note-secrets", "database-url")] * 3

    def test_should_name_the_key_of_a_migration_secret(self, helm):
        values = {
            "database": {"existingSecret": "app", "existingSecretKey": "url"},
            "migration": {
                "strategy": "hook",
                "database": {"existingSecret": "ddl", "existingSecretKey": "ddl-url"},
            },
        }
        job = _jobs(render_chart(values, helm=helm))["fast-note-migrate"]
        assert env_value(container(job, "migrate"), "DATABASE_URL") == _ref("ddl", "ddl-url")
        values["migration"]["database"]["existingSecretKey"] = ""
        job = _jobs(render_chart(values, helm=helm))["fast-note-migrate"]
        assert env_value(container(job, "migrate"), "DATABASE_URL") == _ref("ddl", "url")

    def test_should_migrate_with_its_own_role_in_the_init_container(self, helm):
        values = {
            "database": {"existingSecret": "fast-note-secrets"},
            "migration": {"strategy": "initContainer", "database": {"existingSecret": "ddl"}},
        }
        spec = deployment(render_chart(values, helm=helm))["spec"]["template"]["spec"]
        assert env_value(container(spec, "migrate"), "DATABASE_URL") == _ref("ddl", "database-url")
        assert env_value(container(spec, "app"), "DATABASE_URL") == _ref(
            "fast-note-secrets", "database-url"
        )


class TestMigrationCredentialsFromValues:
    @pytest.mark.parametrize("strategy", ["initContainer", "job"])
    def test_should_store_both_urls_in_the_release_secret(self, helm, strategy):
        values = {
            "database": {"url": DB_URL},
            "migration": {"strategy": strategy, "database": {"url": MIGRATE_URL}},
        }
        docs = render_chart(values, helm=helm)
        secret = only(component(docs, "Secret", "app"))
        data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert data == {"database-url": DB_URL, "migration-database-url": MIGRATE_URL}
        migrators = [
            c
            for d in docs
            if d["kind"] in ("Deployment", "Job")
            for c in (d["spec"]["template"]["spec"].get("initContainers") or [])
            + d["spec"]["template"]["spec"]["containers"]
            if c["name"] == "migrate"
        ]
        assert len(migrators) == 1
        assert env_value(migrators[0], "DATABASE_URL") == _ref(
            "fast-note-db", "migration-database-url"
        )

    def test_should_copy_the_migration_url_into_the_hook_secret(self, helm):
        values = {
            "database": {"url": DB_URL},
            "migration": {"strategy": "hook", "database": {"url": MIGRATE_URL}},
        }
        docs = render_chart(values, helm=helm)
        copy = only(component(docs, "Secret", "migration"))
        assert base64.b64decode(copy["data"]["database-url"]).decode() == MIGRATE_URL
        job = _jobs(docs)["fast-note-migrate"]
        assert env_value(container(job, "migrate"), "DATABASE_URL") == _ref(
            "fast-note-migration-db", "database-url"
        )

    def test_should_need_no_hook_copy_for_a_migration_secret(self, helm):
        values = {
            "database": {"url": DB_URL},
            "migration": {"strategy": "hook", "database": {"existingSecret": "ddl"}},
        }
        docs = render_chart(values, helm=helm)
        assert not component(docs, "Secret", "migration")
        job = _jobs(docs)["fast-note-migrate"]
        assert env_value(container(job, "migrate"), "DATABASE_URL") == _ref("ddl", "database-url")
