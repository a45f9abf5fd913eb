"""Expand/contract phases across a simulated upgrade, and the rollout wait."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fast_note_migrate import rollout
from fast_note_migrate.errors import ConfigError, MigrateError, NotUpToDate
from fast_note_migrate.rollout import (
    DeploymentState,
    PodState,
    ReplicaSetState,
    Target,
    decide,
    wait,
)
from testkit.certificates import Authority
from testkit.cli import Migrator
from testkit.database import Database
from testkit.kube.objects import ObjectServer, serve
from testkit.migrations_folder import PRISMA_LAST, RELEASE_N, MigrationsFolder, example_folders

CONTRACT = "20240415090000_drop_user_email"
KUBECTL = Path(__file__).resolve().parents[2] / ".tools" / "bin" / "kubectl"


def test_rename_across_two_releases_with_expand_and_contract_runs(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """Release N expands (both columns); release N+1's pre-upgrade run skips the contract
    step, its pods' wait and helm test pass, and the post-upgrade run drops the column."""
    migrations.copy_examples(upto=PRISMA_LAST)
    assert migrate("deploy", "--lint-policy", "block").code == 0
    with db.connect() as conn:
        conn.execute("""INSERT INTO "User" ("email", "passwordHash") VALUES ('old@x', 'h')""")

    # release N: expand only
    migrations.copy_examples(since=PRISMA_LAST, upto=RELEASE_N)
    assert migrate("deploy", "--phase", "expand", "--lint-policy", "block").code == 0
    with db.connect() as conn:  # an old pod of release N-1 still inserts with "email" only
        conn.execute("""INSERT INTO "User" ("email", "passwordHash") VALUES ('n1@x', 'h')""")
    assert db.scalar("""SELECT count(*) FROM "User" WHERE "emailAddress" IS NULL""") == 0

    # release N+1: its pre-upgrade (expand) run leaves the contract migration pending
    migrations.copy_examples(since=RELEASE_N)
    expand = migrate("deploy", "--phase", "expand", "--lint-policy", "block")
    assert expand.code == 0
    assert "1 contract migration(s) from 20240415090000_drop_user_email on wait" in expand.err
    assert "email" in db.columns("User")
    assert migrate("wait", "--timeout", "1s").code == 0  # the new pods start
    verify = migrate("verify")
    assert verify.code == 0 and "1 contract migration(s) pending" in verify.out
    status = migrate("status")
    assert status.code == 3 and "PENDING (contract)" in status.out

    # post-upgrade: the contract run
    contract = migrate("deploy", "--phase", "contract", "--lint-policy", "block")
    assert contract.code == 0, contract.err
    assert "email" not in db.columns("User") and "emailAddress" in db.columns("User")
    assert db.scalar("""SELECT count(*) FROM "User" WHERE "emailAddress" IS NOT NULL""") == 2
    assert migrate("status").code == 0


def test_expand_run_refuses_an_expand_migration_after_a_pending_contract_one(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """Applying the later expand step would mean skipping the contract step (history out
    of name order); the run refuses before changing anything."""
    migrations.add("20240101000000_init", 'CREATE TABLE "T" ("a" INT, "b" INT);\n')
    migrations.add(
        "20240102000000_drop_b",
        '-- fast-note-migrate: phase=contract\nALTER TABLE "T" DROP COLUMN "b";\n',
    )
    migrations.add("20240103000000_add_c", 'ALTER TABLE "T" ADD COLUMN "c" INT;\n')
    result = migrate("deploy", "--phase", "expand", "--lint-policy", "off")
    assert result.code == 2
    assert (
        "expand migration 20240103000000_add_c comes after the pending contract "
        "migration 20240102000000_drop_b" in result.err
    )
    assert not db.has_history_table()


def test_default_phase_applies_contract_migrations_in_order(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """--phase all (the default) applies everything in name order, as Prisma does."""
    migrations.copy_examples()
    assert migrate("deploy").code == 0
    assert [r.name for r in db.history()] == [p.name for p in example_folders()]


def test_unknown_phase_marker_is_a_usage_error(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """A typo in the marker is not silently treated as expand."""
    migrations.add("20240101000000_x", "-- fast-note-migrate: phase=contrakt\nSELECT 1;\n")
    result = migrate("deploy", "--phase", "expand")
    assert result.code == 2 and "unknown phase 'contrakt'" in result.err


# The rollout decision, on plain data ---------------------------------------------------


def _deployment(**changes: object) -> DeploymentState:
    base: dict[str, object] = dict(
        name="fast-note",
        uid="d1",
        generation=3,
        observed_generation=3,
        replicas=3,
        updated_replicas=3,
        current_replicas=3,
        available_replicas=3,
    )
    base.update(changes)
    return DeploymentState(**base)  # type: ignore[arg-type]


RS = [
    ReplicaSetState("fast-note-old", "d1", 1),
    ReplicaSetState("fast-note-new", "d1", 2),
    ReplicaSetState("someone-else", "other", 9),
]
NEW_PODS = [PodState(f"fast-note-new-{i}", "fast-note-new") for i in range(3)]


def test_rollout_is_done_when_all_new_pods_are_available_and_no_old_pod_remains() -> None:
    verdict = decide(_deployment(), RS, NEW_PODS)
    assert verdict.done and "ReplicaSet fast-note-new" in verdict.message


@pytest.mark.parametrize(
    ("changes", "pods", "expected"),
    [
        ({"observed_generation": 2}, NEW_PODS, "generation 3"),
        ({"updated_replicas": 1}, NEW_PODS, "1 of 3 new pods created"),
        ({"current_replicas": 4}, NEW_PODS, "1 old pod(s) still running"),
        ({"available_replicas": 2}, NEW_PODS, "2 of 3 new pods available"),
        (
            {},
            [*NEW_PODS, PodState("fast-note-old-x", "fast-note-old", terminating=True)],
            "fast-note-old-x (terminating)",
        ),
    ],
)
def test_rollout_is_not_done_while_old_pods_may_still_serve(
    changes: dict[str, object], pods: list[PodState], expected: str
) -> None:
    verdict = decide(_deployment(**changes), RS, pods)
    assert not verdict.done and not verdict.failed and expected in verdict.message


def test_rollout_past_its_progress_deadline_fails() -> None:
    verdict = decide(_deployment(deadline_exceeded=True, available_replicas=0), RS, NEW_PODS)
    assert verdict.failed


def test_pods_of_another_deployments_replicasets_do_not_count() -> None:
    pods = [*NEW_PODS, PodState("someone-else-1", "someone-else")]
    assert decide(_deployment(), RS, pods).done


def test_wait_returns_once_the_old_pod_is_gone() -> None:
    """wait() polls until the last old pod has terminated."""
    old = PodState("fast-note-old-x", "fast-note-old", terminating=True)
    views = [(_deployment(), RS, [*NEW_PODS, old]), (_deployment(), RS, NEW_PODS)]
    calls: list[str] = []

    def fetch(
        name: str, namespace: str
    ) -> tuple[DeploymentState, list[ReplicaSetState], list[PodState]]:
        calls.append(f"{namespace}/{name}")
        return views[min(len(calls) - 1, 1)]

    wait(Target("fast-note", "apps", timeout=5, interval=0.01), fetch=fetch)
    assert calls == ["apps/fast-note", "apps/fast-note"]


def test_wait_times_out_with_exit_3_and_says_what_is_left() -> None:
    def fetch(
        name: str, namespace: str
    ) -> tuple[DeploymentState, list[ReplicaSetState], list[PodState]]:
        return _deployment(updated_replicas=1), RS, NEW_PODS

    with pytest.raises(NotUpToDate, match="1 of 3 new pods created") as info:
        wait(Target("fast-note", "apps", timeout=0.05, interval=0.01), fetch=fetch)
    assert int(info.value.exit_code) == 3


def test_wait_stops_at_a_failed_rollout() -> None:
    def fetch(
        name: str, namespace: str
    ) -> tuple[DeploymentState, list[ReplicaSetState], list[PodState]]:
        return _deployment(deadline_exceeded=True), RS, NEW_PODS

    with pytest.raises(MigrateError, match="progress deadline"):
        wait(Target("fast-note", "apps", timeout=5, interval=0.01), fetch=fetch)


def _objects(namespace: str = "apps") -> list[dict[str, object]]:
    """A Deployment at revision 2 whose last pod of revision 1 is terminating, as the API
    server returns them; another app's pod shares the namespace."""

    def meta(name: str, owner: tuple[str, str, str] | None = None, **extra: object) -> object:
        found: dict[str, object] = {"name": name, "namespace": namespace, **extra}
        found["labels"] = {"app": "fast-note"}
        if owner:
            kind, owner_name, uid = owner
            ref = {"apiVersion": "apps/v1", "kind": kind, "name": owner_name, "uid": uid}
            found["ownerReferences"] = [ref]
        return found

    status = {"observedGeneration": 4, "replicas": 2, "updatedReplicas": 2}
    return [
        {
            "kind": "Deployment",
            "metadata": meta("fast-note", uid="d1", generation=4),
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "fast-note"}}},
            "status": status | {"availableReplicas": 2},
        },
        *(
            {
                "kind": "ReplicaSet",
                "metadata": meta(
                    f"fast-note-{r}",
                    ("Deployment", "fast-note", "d1"),
                    annotations={"deployment.kubernetes.io/revision": str(r)},
                ),
            }
            for r in (1, 2)
        ),
        {
            "kind": "Pod",
            "metadata": meta(
                "fast-note-1-a",
                ("ReplicaSet", "fast-note-1", "r1"),
                deletionTimestamp="2026-01-01T00:00:00Z",
            ),
        },
        {"kind": "Pod", "metadata": {"name": "other-1", "namespace": namespace, "labels": {}}},
    ]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[ObjectServer, Path]]:
    """A server answering like the API server, and its CA certificate."""
    authority = Authority.create(tmp_path / "pki")
    with serve(
        ObjectServer("t0k3n", _objects()), *authority.server_pem("api", ("127.0.0.1",))
    ) as server:
        yield server, authority.path


@pytest.fixture
def in_a_pod(
    api: tuple[ObjectServer, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The environment and service account folder of a pod of the server's cluster."""
    server, ca = api
    folder = tmp_path / "serviceaccount"
    folder.mkdir()
    (folder / "token").write_text(server.token)
    (folder / "ca.crt").write_bytes(ca.read_bytes())
    (folder / "namespace").write_text("apps\n")
    monkeypatch.setattr(rollout, "SERVICE_ACCOUNT", folder)
    host, _, port = server.url.removeprefix("https://").partition(":")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    return folder


def _assert_terminating_old_pod_is_seen(
    view: tuple[DeploymentState, list[ReplicaSetState], list[PodState]],
) -> None:
    state, replicasets, pods = view
    assert state.generation == 4 and state.replicas == 2 and state.available_replicas == 2
    assert [(r.name, r.owner_uid, r.revision) for r in replicasets] == [
        ("fast-note-1", "d1", 1),
        ("fast-note-2", "d1", 2),
    ]
    assert pods == [PodState("fast-note-1-a", "fast-note-1", terminating=True)]
    verdict = decide(*view)
    assert not verdict.done and "fast-note-1-a (terminating)" in verdict.message


def test_in_a_pod_the_rollout_is_read_with_the_service_account_token_and_ca(
    api: tuple[ObjectServer, Path], in_a_pod: Path
) -> None:
    """In the contract Job's pod the objects come over HTTPS (the service account's CA
    verifies the server, its token logs in), selected by the Deployment's labels, from the
    pod's own namespace; a rotated token is read again."""
    server, _ = api
    client, kube_namespace = rollout.connect()
    assert kube_namespace is None and rollout.default_namespace() == "apps"
    _assert_terminating_old_pod_is_seen(rollout.read(client, "fast-note", "apps"))
    assert server.requests == [
        "/apis/apps/v1/namespaces/apps/deployments/fast-note",
        "/apis/apps/v1/namespaces/apps/replicasets?labelSelector=app%3Dfast-note",
        "/api/v1/namespaces/apps/pods?labelSelector=app%3Dfast-note",
    ]
    server.token = "rotated"
    (in_a_pod / "token").write_text("rotated")
    assert rollout.read(client, "fast-note", "apps")[0].uid == "d1"


def test_in_a_pod_a_server_the_ca_did_not_sign_is_refused(
    api: tuple[ObjectServer, Path], in_a_pod: Path, tmp_path: Path
) -> None:
    other = Authority.create(tmp_path / "other", "someone-else")
    (in_a_pod / "ca.crt").write_bytes(other.path.read_bytes())
    client, _ = rollout.connect()
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
        rollout.read(client, "fast-note", "apps")
    assert api[0].requests == []


@pytest.mark.parametrize(
    ("deployment", "token", "expected"),
    [
        ("gone", "t0k3n", "deployment gone not found in namespace apps"),
        ("fast-note", "wrong", "not allowed to read deployment fast-note in namespace apps"),
    ],
)
def test_wait_names_a_missing_deployment_or_a_refused_token_at_once(
    api: tuple[ObjectServer, Path], in_a_pod: Path, deployment: str, token: str, expected: str
) -> None:
    (in_a_pod / "token").write_text(token)
    with pytest.raises(ConfigError, match=expected) as info:
        wait(Target(deployment, timeout=5, interval=0.01))
    assert info.value.hint and int(info.value.exit_code) == 2


def test_in_a_pod_without_a_service_account_token_the_contract_run_says_what_to_set(
    in_a_pod: Path,
) -> None:
    (in_a_pod / "token").unlink()
    with pytest.raises(ConfigError, match="needs its service account's token") as info:
        rollout.connect()
    assert "automountServiceAccountToken: true" in (info.value.hint or "")


@pytest.mark.skipif(not KUBECTL.exists(), reason="kubectl is fetched by `make tools`")
def test_outside_a_pod_the_rollout_is_read_through_kubectl_and_its_kubeconfig(
    api: tuple[ObjectServer, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a pod's environment, kubectl reads the objects with the kubeconfig's server,
    credentials and namespace."""
    server, ca = api
    kubeconfig = tmp_path / "kubeconfig"
    cluster = {"server": server.url, "certificate-authority": str(ca)}
    context = {"cluster": "c", "user": "u", "namespace": "apps"}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": {"token": server.token}}],
        "contexts": [{"name": "ctx", "context": context}],
        "current-context": "ctx",
    }
    kubeconfig.write_text(json.dumps(config))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("PATH", f"{KUBECTL.parent}{os.pathsep}{os.environ['PATH']}")
    client, kube_namespace = rollout.connect()
    assert kube_namespace == "apps"
    _assert_terminating_old_pod_is_seen(rollout.read(client, "fast-note", "apps"))
    with pytest.raises(rollout.ApiError) as info:
        rollout.read(client, "gone", "apps")
    assert info.value.status == 404


def test_contract_run_that_cannot_check_the_rollout_applies_nothing(
    migrate: Migrator,
    migrations: MigrationsFolder,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: object,
) -> None:
    """Without a cluster to ask, the contract run stops (exit 2) instead of trusting that
    the old pods are gone; with nothing pending it does not need to ask."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    migrations.add("20240101000000_init", 'CREATE TABLE "T" ("a" INT, "b" INT);\n')
    assert migrate("deploy").code == 0
    assert migrate("deploy", "--phase", "contract", "--wait-for-rollout", "fast-note").code == 0
    migrations.add(
        "20240102000000_drop_b",
        '-- fast-note-migrate: phase=contract\nALTER TABLE "T" DROP COLUMN "b";\n',
    )
    result = migrate("deploy", "--phase", "contract", "--wait-for-rollout", "fast-note")
    assert result.code == 2 and "no Kubernetes configuration found" in result.err
    assert db.columns("T") == ["a", "b"]
