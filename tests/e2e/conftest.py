"""Fixtures of the end-to-end tests: the cluster, one namespace and one database per test.

``make e2e`` runs them (``FAST_NOTE_E2E=1 pytest -m e2e tests/e2e``): it starts the local
control plane (etcd, kube-apiserver, kube-controller-manager built from Debian's source,
see testkit/kube/cluster.py) and the node agent once per session and stops everything at the
end, also on a failure or Ctrl-C. A plain ``pytest`` run skips these tests.
"""

from __future__ import annotations

import json
import os
import re
import signal
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from testkit.harness import Database, Helm, Images, Kube, run
from testkit.kube.cluster import LocalCluster
from testkit.pgserver import PostgresServer

E2E_DIR = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("FAST_NOTE_E2E") == "1":
        # a SIGTERM (CI timeout, kill) stops the session like Ctrl-C: the finalizers stop
        # the control plane, the node agent's pods and PostgreSQL
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
        item: pytest.Item, call: pytest.CallInfo[None],
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, for the failure diagnostics of ``kube``."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


class Cluster:
    """What the tests need from a cluster: a kubeconfig and, locally, the agent's logs."""

    def __init__(self, kubeconfig: Path, local: LocalCluster | None) -> None:
        self.kubeconfig = kubeconfig
        self.local = local

    def container_logs(self, namespace: str) -> dict[str, str]:
        """``pod/container`` -> log text (from the node agent's files, or kubectl logs)."""
        logs: dict[str, str] = {}
        if self.local is not None:
            for path in sorted((self.local.agent_dir / "pods" / namespace).glob("*/*.log")):
                logs[f"{path.parent.name}/{path.stem}"] = path.read_text(errors="replace")
        return logs

    def container_log(self, kube: Kube, pod: str, container: str) -> str:
        """One container's log: the node agent's file, or ``kubectl logs`` on a real cluster."""
        if self.local is not None:
            path = self.local.agent_dir / "pods" / kube.namespace / pod / f"{container}.log"
            return path.read_text(errors="replace")
        return kube.kubectl("logs", pod, "-c", container).stdout

    def pod_ports(self, namespace: str, pod: str) -> dict[str, int]:
        """The pod's container ports (number or name) -> the host port the agent gave them."""
        assert self.local is not None, "local control plane only"
        path = self.local.agent_dir / "pods" / namespace / pod / "ports.json"
        return {k: int(v) for k, v in json.loads(path.read_text()).items()}


@pytest.fixture(scope="session")
def images_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("images")
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, images_root: Path) -> Iterator[Cluster]:
    remote = os.environ.get("FAST_NOTE_E2E_KUBECONFIG")
    if remote:
        yield Cluster(Path(remote), None)
        return
    local = LocalCluster(images_dir=images_root)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # show the build/start progress
        print()
        local.start_or_stop()
    try:
        yield Cluster(local.kubeconfig, local)
    finally:
        with capture.global_and_fixture_disabled():
            local.stop()


@pytest.fixture(scope="session")
def images(images_root: Path) -> Images:
    return Images(images_root)


def _dump(kube: Kube, cluster: Cluster) -> None:
    print(f"\n===== diagnostics of namespace {kube.namespace} =====")
    for args in (["get", "all,events", "-o", "wide"],
                 ["get", "pods", "-o", "jsonpath={range .items[*]}{.metadata.name}: "
                  "{.status.phase} init={.status.initContainerStatuses[*].state} "
                  "main={.status.containerStatuses[*].state}{'\\n'}{end}"]):
        print(kube.kubectl(*args, check=False))
    for name, text in cluster.container_logs(kube.namespace).items():
        print(f"----- log {name}\n{text[-4000:]}")
    if cluster.local is not None:
        agent_log = cluster.local.workdir / "logs" / "node-agent.log"
        lines = agent_log.read_text(errors="replace").splitlines()
        print("----- node agent (last 30 lines)\n" + "\n".join(lines[-30:]))


@pytest.fixture
def kube(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[Kube]:
    """A fresh namespace; on failure its objects and container logs are printed."""
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    namespace = f"{base}-{uuid.uuid4().hex[:5]}"
    kube = Kube(cluster.kubeconfig, namespace)
    run([*_kubectl(cluster), "create", "namespace", namespace], env=kube.env())
    if cluster.local is not None:
        cluster.local.wait_namespace_ready(namespace)
    yield kube
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        _dump(kube, cluster)
    run([*_kubectl(cluster), "delete", "namespace", namespace, "--wait=false"],
        env=kube.env(), check=False)


def _kubectl(cluster: Cluster) -> list[str]:
    from testkit.harness import KUBECTL
    return [str(KUBECTL)]


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
def database(e2e_postgres: str, kube: Kube) -> Iterator[Database]:
    """A fresh database, and the Secret ``fast-note-db`` (key ``database-url``) in the namespace."""
    import psycopg

    name = "e2e_" + uuid.uuid4().hex[:12]
    with psycopg.connect(e2e_postgres, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    base, _, query = e2e_postgres.partition("?")
    url = base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")
    db = Database(e2e_postgres, url, name)
    kube.kubectl("create", "secret", "generic", "fast-note-db",
                 f"--from-literal=database-url={url}")
    yield db
    with psycopg.connect(e2e_postgres, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True, scope="session")
def _tools_present() -> None:
    from testkit.harness import HELMS, KUBECTL
    missing = [str(p) for p in (KUBECTL, *HELMS.values()) if not p.exists()]
    if missing:
        pytest.exit(f"missing {', '.join(missing)}: run `make tools` first", returncode=2)
