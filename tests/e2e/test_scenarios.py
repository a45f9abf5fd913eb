"""The chart and the migrator on a real Kubernetes API server, with Helm 3 and Helm 4.

Each test installs the chart in its own namespace against its own database. App image tags
and the migrations they carry are in ``testkit/catalogue.py``; the images are built from
``examples/app/Dockerfile`` and ``hooks/Dockerfile`` and run by the kubelet and containerd.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from testkit import catalogue
from testkit.database import Database
from testkit.harness import (
    APP_REPOSITORY,
    RELEASE,
    Cluster,
    Helm,
    Kube,
    example_migrations,
    migrate,
    migration_jobs,
    pod_image,
    pod_ready,
)
from testkit.harness import release_values as values
from testkit.kube.images import BUNDLED_REPOSITORY

HELM_MAJORS = pytest.mark.parametrize("helm_major", ["helm3", "helm4"])


def app_pods(kube: Kube) -> list[dict[str, Any]]:
    return kube.app_pods(RELEASE)


def assert_app_serving(kube: Kube, tag: str, replicas: int) -> None:
    pods = app_pods(kube)
    running = [p for p in pods if p["status"].get("phase") == "Running"]
    assert len(running) == replicas, [p["metadata"]["name"] for p in pods]
    assert all(pod_ready(p) for p in running), "some app pods are not Ready"
    assert {pod_image(p) for p in running} == {f"{APP_REPOSITORY}:{tag}"}


def assert_applied_once(db: Database, expected: list[str]) -> None:
    counts = Counter(r.name for r in db.history(missing_ok=True) if r.applied)
    assert sorted(counts) == sorted(expected)
    assert set(counts.values()) == {1}, f"applied more than once: {counts}"


def job_failed(job: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Failed" and c["status"] == "True"
        for c in job.get("status", {}).get("conditions", [])
    )


# ---------------------------------------------------------------------------------------------


@HELM_MAJORS
def test_hook_install_migrates_empty_database_and_helm_test_passes(
    helm: Helm, kube: Kube, database: Database
) -> None:
    """1. strategy hook, empty database: the pre-install Job migrates, the pods start, `helm
    test` passes and prints the verify pod's log, _prisma_migrations holds the history."""
    helm.upgrade(RELEASE, values("hook", catalogue.CURRENT))
    assert_app_serving(kube, catalogue.CURRENT, 2)
    assert_applied_once(database, example_migrations())
    # the chart's hook-output-log-policy: Helm prints the verify pod's log without --logs
    # (which fails on Helm 3.19: the pod is deleted on success before it reads the log)
    result = helm.test(RELEASE)
    assert "[ok] no pending migration" in result.stdout + result.stderr, result
    assert migration_jobs(kube) == [], "hook-succeeded: the hook Job is deleted"


@HELM_MAJORS
def test_upgrade_with_one_new_migration_applies_it_once_and_rolls_pods(
    helm: Helm, kube: Kube, database: Database
) -> None:
    """2. an upgrade to an image with one new migration: applied once, pods rolled."""
    helm.upgrade(RELEASE, values("hook", catalogue.OLD))
    assert_applied_once(database, example_migrations()[:-1])
    old_pods = {p["metadata"]["name"] for p in app_pods(kube)}
    helm.upgrade(RELEASE, values("hook", catalogue.CURRENT))
    assert_applied_once(database, example_migrations())
    assert_app_serving(kube, catalogue.CURRENT, 2)
    assert not old_pods & {p["metadata"]["name"] for p in app_pods(kube)}, "pods not rolled"
    helm.test(RELEASE)


@HELM_MAJORS
def test_failed_migration_fails_upgrade_keeps_old_pods_and_recovers_after_resolve(
    helm: Helm,
    kube: Kube,
    database: Database,
    cluster: Cluster,
    image_migrations: Callable[[str], Path],
) -> None:
    """3. a failing migration: `helm upgrade` fails, the release is failed, the old pods keep
    serving, the failed Job and its log remain, `status` names the migration; after
    `resolve --rolled-back` and a fixed image the next upgrade succeeds."""
    helm.upgrade(RELEASE, values("hook", catalogue.CURRENT))
    old_pods = {p["metadata"]["name"] for p in app_pods(kube)}

    result = helm.upgrade(RELEASE, values("hook", catalogue.BROKEN_TAG), check=False)
    assert not result.ok, "the upgrade must fail"
    assert helm.history(RELEASE)[-1]["status"] == "failed"
    assert_app_serving(kube, catalogue.CURRENT, 2)
    assert {p["metadata"]["name"] for p in app_pods(kube)} == old_pods
    for name in old_pods:  # the old pods answer, with their own image and schema
        body = cluster.app_get(kube, name)
        assert body["status"] == 200, body
        assert body["image"] == f"{APP_REPOSITORY}:{catalogue.CURRENT}"
        assert catalogue.BROKEN not in body["applied_migrations"]

    jobs = migration_jobs(kube)
    assert len(jobs) == 1 and job_failed(jobs[0]), [j["metadata"]["name"] for j in jobs]
    job_pods = kube.items("pods", f"job-name={jobs[0]['metadata']['name']}")
    assert [p["status"]["phase"] for p in job_pods] == ["Failed"]
    log = cluster.container_log(kube, job_pods[0]["metadata"]["name"], "migrate")
    assert catalogue.BROKEN in log, log

    broken_dir = image_migrations(catalogue.BROKEN_TAG)
    status = migrate(database, "status", "--json", migrations=broken_dir, check=False)
    assert status.returncode == 4, status
    assert catalogue.BROKEN in json.dumps(json.loads(status.stdout))

    migrate(database, "resolve", "--rolled-back", catalogue.BROKEN, migrations=broken_dir)
    helm.upgrade(RELEASE, values("hook", catalogue.FIXED_TAG))
    assert_app_serving(kube, catalogue.FIXED_TAG, 2)
    assert catalogue.BROKEN in database.applied(missing_ok=True)
    helm.test(RELEASE)


@HELM_MAJORS
def test_init_container_strategy_applies_each_migration_once_with_three_replicas(
    helm: Helm, kube: Kube, database: Database, cluster: Cluster
) -> None:
    """4. strategy initContainer, 3 replicas started together: one pod's migrator applies the
    migrations, the others wait for its lock and find nothing to do; all pods Ready."""
    helm.upgrade(RELEASE, values("initContainer", catalogue.CURRENT, replicas=3))
    assert_app_serving(kube, catalogue.CURRENT, 3)
    assert_applied_once(database, example_migrations())
    assert migration_jobs(kube) == []
    logs = []
    for pod in app_pods(kube):
        inits = [c["name"] for c in pod["spec"]["initContainers"]]
        assert inits == ["copy-migrations", "migrate"]
        logs.append(cluster.container_log(kube, pod["metadata"]["name"], "migrate"))
    applied = [log for log in logs if f"applied {len(example_migrations())} migration(s)" in log]
    up_to_date = [log for log in logs if "no pending migrations" in log]
    assert (len(applied), len(up_to_date)) == (1, 2), "\n---\n".join(logs)


@HELM_MAJORS
def test_job_strategy_with_wait_does_not_deadlock(
    helm: Helm, kube: Kube, database: Database
) -> None:
    """5. strategy job (plain Job, GitOps mode) with --wait: no deadlock; the app pods wait
    until the Job has committed the migrations (woken by its NOTIFY, they may start a moment
    before the Job's own process has exited)."""
    helm.upgrade(RELEASE, values("job", catalogue.CURRENT))
    assert_app_serving(kube, catalogue.CURRENT, 2)
    assert_applied_once(database, example_migrations())
    jobs = migration_jobs(kube)
    assert len(jobs) == 1 and jobs[0]["status"].get("succeeded") == 1
    assert "helm.sh/hook" not in jobs[0]["metadata"].get("annotations", {})
    committed = max(row.finished_at for row in database.history() if row.finished_at)
    # the kubelet's times have whole seconds: compare at that resolution
    migrated = committed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for pod in app_pods(kube):
        waits = {c["name"]: c for c in pod["status"]["initContainerStatuses"]}
        finished = waits["wait-for-migrations"]["state"]["terminated"]["finishedAt"]
        assert finished >= migrated, "an app pod started before the migrations were committed"
    helm.test(RELEASE)


@HELM_MAJORS
def test_rollback_starts_old_pods_although_database_is_ahead(
    helm: Helm, kube: Kube, database: Database
) -> None:
    """6. `helm rollback` after a successful upgrade: the old image's pods start although the
    database has a migration they do not know."""
    helm.upgrade(RELEASE, values("hook", catalogue.OLD))
    helm.upgrade(RELEASE, values("hook", catalogue.CURRENT))
    helm("rollback", RELEASE, "1", "--wait", "--timeout", "3m")
    assert_app_serving(kube, catalogue.OLD, 2)
    assert_applied_once(database, example_migrations())  # still ahead: nothing rolled back
    helm.test(RELEASE)  # verify: the database being ahead of the image is fine


@HELM_MAJORS
def test_strategy_none_leaves_database_alone(
    helm: Helm, kube: Kube, database: Database, image_migrations: Callable[[str], Path]
) -> None:
    """7. strategy none: no Job, no init container, the database is not touched (the operator
    migrated it; the app, ready only with its schema, starts on it)."""
    migrate(database, "deploy", migrations=image_migrations(catalogue.CURRENT))
    before = database.history(missing_ok=True)
    helm.upgrade(RELEASE, values("none", catalogue.CURRENT))
    assert_app_serving(kube, catalogue.CURRENT, 2)
    assert database.history(missing_ok=True) == before
    assert migration_jobs(kube) == []
    for pod in app_pods(kube):
        assert not pod["spec"].get("initContainers")


@HELM_MAJORS
def test_bundled_migrations_need_nothing_of_the_app_image(
    helm: Helm, kube: Kube, database: Database
) -> None:
    """8. `migration.source.image: migrator` with a migrator image built with the app's
    migrations inside (examples/app/migrator.Dockerfile): no copy container anywhere, the
    hook Job migrates, the pods wait for exactly those migrations, `helm test` passes."""
    release = values("hook", catalogue.CURRENT)
    bundled = {"registry": "", "repository": BUNDLED_REPOSITORY, "tag": catalogue.CURRENT}
    release["migration"]["image"] = bundled
    release["migration"]["source"] = {"image": "migrator"}
    helm.upgrade(RELEASE, release)
    assert_app_serving(kube, catalogue.CURRENT, 2)
    assert_applied_once(database, example_migrations())
    for pod in app_pods(kube):
        inits = [c["name"] for c in pod["spec"]["initContainers"]]
        assert inits == ["wait-for-migrations"], inits
        assert {c["image"] for c in pod["spec"]["initContainers"]} == {
            f"{BUNDLED_REPOSITORY}:{catalogue.CURRENT}"
        }
    helm.test(RELEASE)
