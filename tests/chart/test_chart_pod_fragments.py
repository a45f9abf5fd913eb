"""templates/_pod.tpl: one migrator container, one copy-migrations init container and one pod
security context, shared by the Deployment, the Jobs and the test Pod."""

from __future__ import annotations

import copy
import json

import pytest

from .render import (
    MIGRATOR_IMAGE,
    MIGRATOR_REPOSITORY,
    containers,
    env_value,
    pod_specs,
    render_chart,
    render_notes,
    strategy_values,
)

MIGRATOR_NAMES = {"migrate", "wait-for-migrations", "verify", "migrate-contract"}


def _normalised(ctr: dict) -> dict:
    """A migrator container without what legitimately differs: name, args and the Secret name."""
    ctr = copy.deepcopy(ctr)
    ctr.pop("name")
    ctr.pop("args")
    for var in ctr["env"]:
        if var["name"] == "DATABASE_URL":
            var["valueFrom"]["secretKeyRef"].pop("name")
    return ctr


def _all(values: dict, helm: str):
    docs = render_chart(values, helm=helm)
    return [(name, spec) for name, spec in pod_specs(docs)]


class TestPodFragments:
    def test_should_render_every_migrator_container_alike(self, helm):
        found = []
        for values in (
            strategy_values("hook", contract={"enabled": True}),
            strategy_values("initContainer"),
            strategy_values("job"),
        ):
            for _, spec in _all(values, helm):
                found += [c for c in containers(spec) if c["name"] in MIGRATOR_NAMES]
        assert {c["name"] for c in found} == MIGRATOR_NAMES
        first = _normalised(found[0])
        assert all(_normalised(c) == first for c in found)
        assert first["image"] == MIGRATOR_IMAGE

    def test_should_copy_migrations_the_same_way_everywhere(self, helm):
        copies = [
            c
            for _, spec in _all(strategy_values("job"), helm)
            for c in containers(spec)
            if c["name"] == "copy-migrations"
        ]
        assert len(copies) == 3  # Deployment, Job, test Pod
        assert all(c == copies[0] for c in copies)

    def test_should_share_the_pod_security_context_and_tmp_volume(self, helm):
        values = {
            **strategy_values("hook"),
            "podSecurityContext": {"runAsUser": 20000},
            "tmpSizeLimit": "32Mi",
        }
        specs = _all(values, helm)
        assert len(specs) == 3  # Deployment, hook Job, test Pod
        for name, spec in specs:
            assert spec["securityContext"]["runAsUser"] == 20000, name
            tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
            assert tmp == {"name": "tmp", "emptyDir": {"sizeLimit": "32Mi"}}, name

    def test_should_pass_image_pull_secrets_to_every_pod(self, helm):
        specs = _all({**strategy_values("hook"), "imagePullSecrets": ["registry-creds"]}, helm)
        assert all(spec["imagePullSecrets"] == [{"name": "registry-creds"}] for _, spec in specs)

    def test_should_pin_the_migrator_image_by_digest(self, helm):
        digest = "sha256:" + "a" * 64
        specs = _all(strategy_values("hook", image={"digest": digest}), helm)
        images = {
            c["image"] for _, spec in specs for c in containers(spec) if c["name"] in MIGRATOR_NAMES
        }
        assert images == {f"{MIGRATOR_REPOSITORY}@{digest}"}


CA_VOLUME = {"name": "rds-ca", "configMap": {"name": "rds-ca-bundle"}}
CA_MOUNT = {"name": "rds-ca", "mountPath": "/etc/ssl/rds", "readOnly": True}
AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["system"]}]}
            ]
        }
    }
}
SPREAD = [
    {
        "maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "migration"}},
    }
]


def _migrator_pod_values(strategy: str, **migration) -> dict:
    return strategy_values(
        strategy,
        extraVolumes=[CA_VOLUME],
        extraVolumeMounts=[CA_MOUNT],
        affinity=AFFINITY,
        topologySpreadConstraints=SPREAD,
        priorityClassName="db-migrations",
        podLabels={"team": "db"},
        **migration,
    )


class TestMigratorPodSettings:
    """What the migrator pods (Jobs, test Pod) get of their own: volumes and mounts (a CA bundle
    for sslmode=verify-full), affinity, spread, priority class, labels."""

    def test_should_schedule_every_migrator_pod_as_configured(self, helm):
        docs = render_chart(_migrator_pod_values("hook", contract={"enabled": True}), helm=helm)
        docs += render_chart(_migrator_pod_values("job"), helm=helm)
        pods = [
            (name, doc, spec)
            for (name, spec), doc in zip(
                pod_specs(docs), [d for d in docs if _has_pod(d)], strict=True
            )
            if not name.startswith("Deployment/")
        ]
        assert len(pods) == 5  # hook, contract and plain Jobs, two test Pods
        for name, doc, spec in pods:
            assert spec["affinity"] == AFFINITY, name
            assert spec["topologySpreadConstraints"] == SPREAD, name
            assert spec["priorityClassName"] == "db-migrations", name
            assert CA_VOLUME in spec["volumes"], name
            migrator = spec["containers"][0]
            assert CA_MOUNT in migrator["volumeMounts"], name
            labels = (
                doc["metadata"]["labels"]
                if doc["kind"] == "Pod"
                else doc["spec"]["template"]["metadata"]["labels"]
            )
            assert labels["team"] == "db", name

    @pytest.mark.parametrize("strategy", ["hook", "initContainer"])
    def test_should_give_app_pods_the_volume_of_their_migrator_init_container(self, helm, strategy):
        values = _migrator_pod_values(strategy)
        values["extraVolumes"] = [CA_VOLUME, {"name": "cache", "emptyDir": {}}]
        spec = render_chart(values, helm=helm)
        spec = next(s for n, s in pod_specs(spec) if n.startswith("Deployment/"))
        assert [v["name"] for v in spec["volumes"]] == ["tmp", "migrations", "rds-ca", "cache"]
        init = spec["initContainers"][-1]
        assert init["name"] in ("migrate", "wait-for-migrations")
        assert CA_MOUNT in init["volumeMounts"]
        app = next(c for c in spec["containers"] if c["name"] == "app")
        assert CA_MOUNT not in app.get("volumeMounts", [])
        # The app's own scheduling is not the migrators'.
        assert "affinity" not in spec and "priorityClassName" not in spec

    def test_should_leave_app_pods_alone_without_a_migrator(self, helm):
        spec = render_chart(_migrator_pod_values("none"), helm=helm)
        spec = next(s for n, s in pod_specs(spec) if n.startswith("Deployment/"))
        assert [v["name"] for v in spec["volumes"]] == ["tmp"]


def _has_pod(doc: dict) -> bool:
    return doc["kind"] in ("Pod", "Deployment", "Job")


class TestEnvironmentOverrides:
    def test_should_render_database_url_once_when_extra_env_sets_it(self, helm):
        own = {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "x", "key": "y"}}}
        values = strategy_values("initContainer", extraEnv=[own])
        values["extraEnv"] = [own, {"name": "LOG_LEVEL", "value": "debug"}]
        docs = render_chart(values, helm=helm)
        values = strategy_values("hook", extraEnv=[own], contract={"enabled": True})
        values["extraEnv"] = [own]
        docs += render_chart(values, helm=helm)
        seen = 0
        for name, spec in pod_specs(docs):
            for ctr in containers(spec):
                names = [e["name"] for e in ctr.get("env") or []]
                assert len(names) == len(set(names)), f"{name} {ctr['name']}: {names}"
                if "DATABASE_URL" in names:
                    seen += 1
                    ref = next(e for e in ctr["env"] if e["name"] == "DATABASE_URL")
                    assert ref == own, f"{name} {ctr['name']}"
        assert seen >= 6


NODE_COPY = [
    "node",
    "-e",
    "require('fs').cpSync(process.env.MIGRATIONS_SOURCE, process.env.MIGRATIONS_DIR,"
    " {recursive: true})",
]


class TestMigrationSource:
    def test_should_copy_with_a_command_the_app_image_has(self, helm):
        """An app image without `cp` or a shell (distroless Node) copies with its own runtime."""
        values = strategy_values("hook", source={"command": NODE_COPY})
        copies = [
            c
            for _, spec in _all(values, helm)
            for c in containers(spec)
            if c["name"] == "copy-migrations"
        ]
        assert len(copies) == 3  # Deployment, hook Job, test Pod
        for copy_ in copies:
            assert copy_["command"] == NODE_COPY
            assert copy_["env"] == [
                {"name": "MIGRATIONS_SOURCE", "value": "/app/prisma/migrations"},
                {"name": "MIGRATIONS_DIR", "value": "/migrations"},
            ]

    @pytest.mark.parametrize("strategy", ["hook", "initContainer", "job"])
    def test_should_read_migrations_bundled_in_the_migrator_image(self, helm, strategy):
        values = strategy_values(strategy, source={"image": "migrator", "path": "/srv/migrations"})
        if strategy == "hook":
            values["migration"]["contract"] = {"enabled": True}
        specs = _all(values, helm)
        assert len(specs) >= 2  # Deployment, test Pod, the Jobs of the strategy
        for name, spec in specs:
            assert "copy-migrations" not in [c["name"] for c in containers(spec)], name
            assert "migrations" not in [v["name"] for v in spec["volumes"]], name
            for ctr in containers(spec):
                if ctr["name"] in MIGRATOR_NAMES:
                    assert env_value(ctr, "MIGRATIONS_DIR") == "/srv/migrations", name
                    assert [m["mountPath"] for m in ctr["volumeMounts"]] == ["/tmp"], name

    def test_should_say_where_bundled_migrations_are(self):
        values = strategy_values("hook", source={"image": "migrator"})
        notes = render_notes(json.dumps(values, sort_keys=True))
        assert f"bundled in the migrator image {MIGRATOR_IMAGE}" in notes
        assert "-c app -- ls" not in notes
        shellless = strategy_values("hook", source={"command": NODE_COPY})
        assert "-c app -- ls" not in render_notes(json.dumps(shellless, sort_keys=True))
