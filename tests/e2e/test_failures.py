"""What a real node does to a running migration, with Helm 3 and Helm 4: the Job deleted,
its deadline reached, its container killed, Helm giving up first; and what the pods of the
chart may do (the security context, checked from inside).

A migration is held at a chosen statement by a gate (``testkit/gate.py``): an advisory lock
the test holds. ``catalogue.GATED_TAG`` carries a transactional gated migration (nothing of
it exists until it commits), ``catalogue.STEPS_TAG`` a statement-by-statement one (CREATE
INDEX CONCURRENTLY: each statement commits with its progress).
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from testkit import catalogue
from testkit.database import Database
from testkit.gate import Gate
from testkit.harness import (
    APP_REPOSITORY,
    CHART,
    RELEASE,
    Cluster,
    Helm,
    Kube,
    example_migrations,
    migration_jobs,
    pod_image,
    pod_ready,
)
from testkit.harness import release_values as values
from testkit.waiting import wait_until

HELM_MAJORS = pytest.mark.parametrize("helm_major", ["helm3", "helm4"])
# the gate is an advisory lock: the migrator must wait at it, not time out
GATED = {"statementLockTimeout": "0"}
# seconds from the pod's deletion to the migrator's session ending: well inside the 30 s grace
# period after which the kubelet would SIGKILL it (usually 1-3 s; up to 15 s seen on 2 busy cores)
STOPPED_WITHIN = 20.0


def gated_values(tag: str, **migration: Any) -> dict[str, Any]:
    result = values("hook", tag)
    result["migration"].update(GATED, **migration)
    return result


def start_upgrade(
    helm: Helm, release_values: dict[str, Any], timeout: str = "3m"
) -> subprocess.Popen[str]:
    """``helm upgrade --install --wait`` in the background (the gate holds its hook)."""
    path = helm.home / f"values-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(release_values))
    argv = [str(helm.binary), "-n", helm.kube.namespace, "upgrade", "--install", RELEASE]
    argv += [str(CHART), "-f", str(path), "--wait", "--timeout", timeout]
    return subprocess.Popen(
        argv, env=helm.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_at_gate(gate: Gate, upgrade: subprocess.Popen[str]) -> None:
    """Until the migration waits at the gate; fails with Helm's output if Helm ends first."""

    def reached() -> bool:
        if upgrade.poll() is not None:
            output = upgrade.stdout.read() if upgrade.stdout else ""
            raise AssertionError(f"helm exited {upgrade.returncode} first:\n{output}")
        return gate.reached()

    wait_until(reached, 120, "the migration to wait at the gate")


def migrator_pod(kube: Kube) -> dict[str, Any]:
    """The pod of the (one) migration Job."""
    jobs = migration_jobs(kube)
    assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]
    selector = f"job-name={jobs[0]['metadata']['name']}"
    pod: dict[str, Any] = kube.wait_for(
        "the migration pod", lambda: next(iter(kube.items("pods", selector)), None)
    )
    return pod


def inside(kube: Kube, pod: str, container: str, argv: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        kube.kubectl("exec", pod, "-c", container, "--", *argv).stdout
    )
    return result


PYTHON_PROBE = """
import json, os
lines = open('/proc/self/status').read().splitlines()
status = dict(line.split(':\\t', 1) for line in lines if ':\\t' in line)
try:
    open('/probe', 'w'); writable = True
except OSError as e:
    writable = e.strerror
print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'cap_eff': status['CapEff'],
                  'no_new_privs': status['NoNewPrivs'], 'seccomp': status['Seccomp'],
                  'root_write': writable}))
"""
NODE_PROBE = """
const fs = require('fs');
const status = Object.fromEntries(fs.readFileSync('/proc/self/status', 'utf8').split('\\n')
  .filter(l => l.includes(':\\t')).map(l => l.split(':\\t')));
let writable = true;
try { fs.writeFileSync('/probe', 'x') } catch (e) { writable = e.code }
console.log(JSON.stringify({uid: process.getuid(), gid: process.getgid(), cap_eff: status.CapEff,
  no_new_privs: status.NoNewPrivs, seccomp: status.Seccomp, root_write: writable}));
"""


def assert_restricted(probe: dict[str, Any]) -> None:
    """What the chart's security context promises, as the process sees it."""
    assert probe["uid"] == 10001 and probe["gid"] == 10001, probe
    assert int(probe["cap_eff"].strip(), 16) == 0, f"capabilities left: {probe['cap_eff']}"
    assert probe["no_new_privs"].strip() == "1", probe
    assert probe["seccomp"].strip() == "2", "seccomp filter (RuntimeDefault) not applied"
    assert probe["root_write"] in ("Read-only file system", "EROFS"), probe


@HELM_MAJORS
@pytest.mark.parametrize("stop_by", ["delete-job", "deadline"])
def test_stopping_the_migration_job_stops_the_migrator_within_seconds_and_rolls_back(
    helm: Helm, kube: Kube, database: Database, cluster: Cluster, stop_by: str
) -> None:
    """`kubectl delete job` or the Job's activeDeadlineSeconds during a migration: Kubernetes
    sends SIGTERM, the migrator's session ends well before the 30 s grace period is over, the
    lock is free, nothing of the migration exists, the upgrade fails and the old pods keep
    serving (Helm 3 takes a deleted hook Job for a finished one and updates the Deployment:
    the new pods wait for the schema until Helm's timeout); the next `helm upgrade` applies
    it. (Inside the running migrator: uid 10001, no capabilities, no_new_privs, seccomp,
    read-only root.)"""
    helm.upgrade(RELEASE, values("hook", catalogue.CURRENT))
    # the chart wants connectTimeout + lockTimeout below the deadline (it says so otherwise)
    deadline = {
        "job": {"backoffLimit": 0, "activeDeadlineSeconds": 20},
        "connectTimeout": "5s",
        "lockTimeout": "10s",
    }
    gated = gated_values(catalogue.GATED_TAG, **(deadline if stop_by == "deadline" else {}))
    with Gate(database) as gate:
        # Helm 4 waits for a deleted hook Job until its timeout: keep that short
        upgrade = start_upgrade(helm, gated, timeout="60s")
        try:
            wait_at_gate(gate, upgrade)
            pod = migrator_pod(kube)["metadata"]["name"]
            if stop_by == "delete-job":
                assert_restricted(inside(kube, pod, "migrate", ["python3", "-c", PYTHON_PROBE]))
                job = migration_jobs(kube)[0]["metadata"]["name"]
                kube.kubectl("delete", "job", job, "--wait=false")
            # the garbage collector or the Job controller deletes the pod (a moment later on
            # a fresh cluster); the kubelet then sends SIGTERM: the clock starts there
            stopped_at = kube.wait_for(
                "the migration pod's deletion", lambda: deleting(kube, pod), timeout=120
            )
            # (app pods of the new release may be waiting for the migration: Helm 3 takes a
            # deleted hook Job for a finished one and goes on with the upgrade)
            wait_until(
                lambda: database.migrator_sessions("deploy") == 0, 30, "the deployer to stop"
            )
            took = time.monotonic() - stopped_at
            print(f"the migrator stopped {took:.1f} s after its pod's deletion")
            output, _ = upgrade.communicate(timeout=240)
        finally:
            if upgrade.poll() is None:
                upgrade.kill()
    assert took < STOPPED_WITHIN, f"the migrator needed {took:.1f} s to stop"
    assert upgrade.returncode != 0, f"the upgrade must fail:\n{output}"
    serving = [p for p in kube.app_pods(RELEASE) if pod_ready(p)]
    assert {pod_image(p) for p in serving} == {f"{APP_REPOSITORY}:{catalogue.CURRENT}"}
    assert len(serving) == 2, "the old pods keep serving"
    assert database.advisory_locks() == 0, "the migration lock is left behind"
    assert "Gated" not in database.tables(), "half of the migration is left"
    assert catalogue.GATED not in database.applied()
    assert helm.history(RELEASE)[-1]["status"] == "failed"
    if stop_by == "deadline":
        assert any(
            c["type"] == "Failed" and c.get("reason") == "DeadlineExceeded"
            for job in migration_jobs(kube)
            for c in job.get("status", {}).get("conditions", [])
        ), "the Job must fail by its deadline"

    helm.upgrade(RELEASE, gated_values(catalogue.GATED_TAG))
    assert database.applied().count(catalogue.GATED) == 1
    assert database.scalar('SELECT count(*) FROM "Gated"') == 1


def deleting(kube: Kube, pod: str) -> float | None:
    """The time once ``pod`` is being deleted (or gone), None before."""
    found = kube.kubectl("get", "pod", pod, "-o", "json", check=False)
    if not found.ok or "deletionTimestamp" in json.loads(found.stdout)["metadata"]:
        return time.monotonic()
    return None


@HELM_MAJORS
def test_killed_statement_by_statement_migration_resumes_in_the_next_release(
    helm: Helm, kube: Kube, database: Database, cluster: Cluster
) -> None:
    """The migrator's container is SIGKILLed (OOM, a node gone) half-way through a migration
    that runs statement by statement: the upgrade fails; the next `helm upgrade` resumes it
    after the last committed statement: every statement ran once, the index is valid."""
    node = cluster.local.local_node if cluster.local is not None else None
    if node is None:
        pytest.skip("needs the local node (kills a container through containerd)")
    helm.upgrade(RELEASE, values("hook", catalogue.CURRENT))
    with Gate(database) as gate:
        upgrade = start_upgrade(helm, gated_values(catalogue.STEPS_TAG))
        try:
            wait_at_gate(gate, upgrade)
            # the kubelet reports the running container a moment after it started
            running = kube.wait_for(
                "the migrate container's id", lambda: container_id(migrator_pod(kube), "migrate")
            )
            node.kill_container(running)
            wait_until(
                lambda: database.migrator_sessions() == 0,
                30,
                "the killed migrator's session to end",
            )
            output, _ = upgrade.communicate(timeout=240)
        finally:
            if upgrade.poll() is None:
                upgrade.kill()
    assert upgrade.returncode != 0, output
    assert database.query("SELECT x FROM t ORDER BY x") == [(1,)], (
        "statements before the gate committed"
    )

    helm.upgrade(RELEASE, gated_values(catalogue.STEPS_TAG))
    assert database.query("SELECT x FROM t ORDER BY x") == [(1,), (2,)], "a statement ran twice"
    assert database.scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_x'::regclass"), (
        "the index is invalid"
    )
    assert database.applied().count(catalogue.STEPS) == 1


def container_id(pod: dict[str, Any], container: str) -> str | None:
    """The runtime's id of a container (None until the kubelet has reported it)."""
    statuses = pod["status"].get("containerStatuses", [])
    found: dict[str, Any] = next((s for s in statuses if s["name"] == container), {})
    return str(found["containerID"]).split("://", 1)[1] if "containerID" in found else None


@HELM_MAJORS
def test_helm_timeout_shorter_than_the_migration_fails_the_upgrade_but_not_the_migration(
    helm: Helm, kube: Kube, database: Database
) -> None:
    """`helm upgrade --timeout` shorter than the migration: Helm reports the timeout and marks
    the release failed, the old pods keep serving; the hook Job goes on and commits the
    migration; the next `helm upgrade` finds nothing to apply and rolls the pods."""
    helm.upgrade(RELEASE, values("hook", catalogue.CURRENT))
    with Gate(database) as gate:
        upgrade = start_upgrade(helm, gated_values(catalogue.GATED_TAG), timeout="20s")
        try:
            wait_at_gate(gate, upgrade)
            output, _ = upgrade.communicate(timeout=120)
        finally:
            if upgrade.poll() is None:
                upgrade.kill()
        assert upgrade.returncode != 0, output
        assert "timed out" in output or "deadline exceeded" in output, output
        assert helm.history(RELEASE)[-1]["status"] == "failed"
        assert gate.reached(), "the migration Job must still be running"
    wait_until(lambda: catalogue.GATED in database.applied(), 60, "the Job to commit the migration")
    old_images = {pod_image(p) for p in kube.app_pods(RELEASE)}
    assert old_images == {f"{APP_REPOSITORY}:{catalogue.CURRENT}"}, "the old pods keep serving"

    helm.upgrade(RELEASE, gated_values(catalogue.GATED_TAG))
    assert database.applied().count(catalogue.GATED) == 1
    assert sorted(database.applied()) == sorted([*example_migrations(), catalogue.GATED])


@HELM_MAJORS
def test_app_pod_runs_restricted(
    helm: Helm, kube: Kube, database: Database, cluster: Cluster
) -> None:
    """Inside an app pod (an image without a shell): uid 10001, no capabilities,
    no_new_privs, the runtime's seccomp filter, a read-only root file system."""
    helm.upgrade(RELEASE, values("hook", catalogue.CURRENT, replicas=1))
    pod = kube.app_pods(RELEASE)[0]["metadata"]["name"]
    assert_restricted(inside(kube, pod, "app", ["node", "-e", NODE_PROBE]))
    shell = kube.kubectl("exec", pod, "-c", "app", "--", "sh", "-c", "true", check=False)
    assert not shell.ok, "the app image must have no shell"
