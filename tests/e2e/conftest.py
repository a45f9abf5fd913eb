"""Fixtures of the end-to-end tests: the cluster, one namespace and one database per test.

The helpers behind them (``Cluster``, ``Kube``, ``Helm``, ``Database``, ``Images``) are in
``testkit/harness.py``; test modules import them from there.

``make e2e`` runs them (``FAST_NOTE_E2E=1 pytest -m e2e tests/e2e``): it builds the images
of ``testkit/catalogue.py`` (cached), starts the local control plane and the node (etcd,
kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, containerd and runc, see
testkit/kube/cluster.py and node.py) once per session and stops everything at the end, also
on a failure or Ctrl-C. A plain ``pytest`` run skips these tests.
"""

from __future__ import annotations

import os
import re
import signal
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from testkit import catalogue
from testkit.database import Database
from testkit.harness import HELMS, KUBECTL, Cluster, Helm, Kube, run
from testkit.kube.cluster import LocalCluster
from testkit.migrations_folder import MigrationsFolder
from testkit.pgserver import PostgresServer

E2E_DIR = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("FAST_NOTE_E2E") == "1":
        # a SIGTERM (CI timeout, kill) stops the session like Ctrl-C: the finalizers stop
        # the node, its pods, the control plane and PostgreSQL
        def interrupt(signum: int, frame: object) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, interrupt)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    markexpr = (config.option.markexpr or "").strip()
    enabled = os.environ.get("FAST_NOTE_E2E") == "1" or markexpr == "e2e"
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(E2E_DIR):
            item.add_marker(pytest.mark.e2e)
            if not enabled:
                item.add_marker(pytest.mark.skip(reason="end-to-end: run `make e2e`"))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item,
    call: pytest.CallInfo[None],
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, for the failure diagnostics of ``kube``."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, e2e_postgres: str) -> Iterator[Cluster]:
    remote = os.environ.get("FAST_NOTE_E2E_KUBECONFIG")
    if remote:
        yield Cluster(Path(remote), None)
        return
    local = LocalCluster(app_images=catalogue.app_images(), bundled=catalogue.BUNDLED_TAGS)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # show the build/start progress
        print()
        local.start_or_stop()
    try:
        cluster = Cluster(local.kubeconfig, local)
        cluster.reach_database_from_pods(e2e_postgres)
        yield cluster
    finally:
        with capture.global_and_fixture_disabled():
            local.stop()


@pytest.fixture
def kube(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[Kube]:
    """A fresh namespace; on failure its objects and container logs are printed."""
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    namespace = f"{base}-{uuid.uuid4().hex[:5]}"
    kube = Kube(cluster.kubeconfig, namespace)
    run([KUBECTL, "create", "namespace", namespace], env=kube.env())
    if cluster.local is not None:
        cluster.local.wait_namespace_ready(namespace)
    yield kube
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        cluster.dump(kube)
    run([KUBECTL, "delete", "namespace", namespace, "--wait=false"], env=kube.env(), check=False)


@pytest.fixture
def helm(helm_major: str, kube: Kube, tmp_path: Path) -> Helm:
    """Helm 3 or Helm 4: tests parametrize ``helm_major`` with "helm3" and "helm4"."""
    (tmp_path / "helm").mkdir()
    return Helm(helm_major, kube, tmp_path / "helm")


@pytest.fixture(scope="session")
def e2e_postgres() -> Iterator[str]:
    """Admin URL of the PostgreSQL the pods use: embedded, or FAST_NOTE_E2E_DATABASE_URL."""
    url = os.environ.get("FAST_NOTE_E2E_DATABASE_URL")
    if url:
        yield url
        return
    with PostgresServer() as server:
        yield server.url("postgres")


@pytest.fixture
def database(e2e_postgres: str, kube: Kube, cluster: Cluster) -> Iterator[Database]:
    """A fresh database, and the Secret ``fast-note-db`` (key ``database-url``) in the namespace."""
    db = Database.create(e2e_postgres, prefix="e2e_")
    url = cluster.pod_database_url(db)
    kube.kubectl(
        "create", "secret", "generic", "fast-note-db", f"--from-literal=database-url={url}"
    )
    yield db
    db.drop()


@pytest.fixture(scope="session")
def image_migrations(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The migrations folder an app image tag carries, for the migrator run from the host."""
    root = tmp_path_factory.mktemp("image-migrations")

    def folder(tag: str) -> Path:
        path = root / tag
        if not path.exists():
            target = MigrationsFolder(path)
            for name, sql in catalogue.app_images()[tag].items():
                script = sql / "migration.sql" if isinstance(sql, Path) else None
                target.add(name, script.read_text() if script else str(sql))
        return path

    return folder


@pytest.fixture(autouse=True, scope="session")
def _tools_present() -> None:
    missing = [str(p) for p in (KUBECTL, *HELMS.values()) if not p.exists()]
    if missing:
        pytest.exit(f"missing {', '.join(missing)}: run `make tools` first", returncode=2)
