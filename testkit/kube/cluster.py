"""A local Kubernetes control plane for the end-to-end tests and the demo.

``LocalCluster`` runs etcd, kube-apiserver, kube-controller-manager and kube-scheduler
(1.20.2, built once from Debian's source package by ``build-control-plane.sh`` and cached
outside the repository) on 127.0.0.1, and a real node (``node.py``: the kubelet, containerd
and runc in namespaces of the run) running images built from the project's Dockerfiles
(``images.py``), then yields a kubeconfig path::

    from testkit.kube.cluster import LocalCluster

    with LocalCluster() as cluster:
        subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), "get", "ns"])

Every process runs in its own process group and is stopped (SIGTERM, then SIGKILL) when
the block ends, on an exception or on Ctrl-C. When started from the main thread, the
children also get a parent-death signal, so a killed test run leaves nothing behind.

``python -m testkit.kube.cluster`` starts a cluster and waits (Ctrl-C stops it): handy to
poke at it by hand with the printed KUBECONFIG.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testkit.kube import images
from testkit.kube.node import NODE_NAME, LocalNode
from testkit.kube.process import Process, free_port
from tools.fetch_tools import PINS

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = Path(__file__).resolve().parent / "build-control-plane.sh"
K8S_VERSION = PINS["kubernetes"].version
DEFAULT_CACHE = Path(os.environ.get("FAST_NOTE_E2E_CACHE", "/var/cache/fast-note-e2e"))
ADMIN_TOKEN_USER = "fast-note-e2e-admin"

# kube-controller-manager 1.20 controllers we switch off: no pod CIDRs to hand out (the
# node's CNI configuration has its own range), no cloud, no routes, no load balancers. The
# node lifecycle controller runs: it lifts the node's not-ready taint.
DISABLED_CONTROLLERS = ("nodeipam", "route", "service", "cloud-node-lifecycle")
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet")
# installed by build-control-plane.sh with apt (with what the build itself needs)
REQUIRED_PROGRAMS = ("etcd", "openssl", "containerd", "runc", "ctr", "buildah", "mmdebstrap")


def log(msg: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def control_plane_dir(cache: Path = DEFAULT_CACHE) -> Path:
    return cache / f"kubernetes-{K8S_VERSION}" / "bin"


def control_plane_cached(cache: Path = DEFAULT_CACHE) -> bool:
    """Whether the control plane binaries are built and cached (nothing to build)."""
    bin_dir = control_plane_dir(cache)
    built = all((bin_dir / c).exists() for c in COMPONENTS)
    return built and (bin_dir / ".complete").exists()


def ensure_control_plane(cache: Path = DEFAULT_CACHE) -> Path:
    """Build (first time) or find the cached control plane binaries; return their folder."""
    bin_dir = control_plane_dir(cache)
    if control_plane_cached(cache) and all(shutil.which(p) for p in REQUIRED_PROGRAMS):
        return bin_dir
    log(f"building the Kubernetes {K8S_VERSION} control plane into {bin_dir} (first run only)")
    env = dict(os.environ, FAST_NOTE_E2E_CACHE=str(cache))
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], env=env, check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


@dataclass
class LocalCluster:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler on loopback; the node."""

    node: bool = True  # run the kubelet and containerd (else the control plane only)
    # app image tag -> its migrations (folder name -> SQL text or a migration folder)
    app_images: Mapping[str, Mapping[str, str | Path]] = field(default_factory=dict)
    bundled: Sequence[str] = ()  # app tags to build a bundled-migrations migrator image for
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fast-note-e2e-")))
    cache: Path = DEFAULT_CACHE
    # FAST_NOTE_E2E_KEEP=1 keeps the logs, kubeconfig and the agent's files after the run
    keep_workdir: bool = field(default_factory=lambda: os.environ.get("FAST_NOTE_E2E_KEEP") == "1")
    startup_timeout: float = 90.0
    processes: list[Process] = field(default_factory=list)
    token: str = field(default_factory=lambda: os.urandom(16).hex())
    local_node: LocalNode | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def node_dir(self) -> Path:
        return self.workdir / "node"

    # -- life cycle ---------------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        self.start_or_stop()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        t0 = time.monotonic()
        bin_dir = ensure_control_plane(self.cache)
        archives = images.ensure_images(self.app_images, self.bundled) if self.node else []
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_credentials()
        self._start_etcd()
        self._start_apiserver(bin_dir)
        self._wait_ready("kube-apiserver", "/readyz")
        self._start_controller_manager(bin_dir)
        self._start_scheduler(bin_dir)
        self._wait_default_serviceaccount()
        if self.node:
            self.start_node(bin_dir, archives)
        log(f"control plane ready in {time.monotonic() - t0:.1f} s (KUBECONFIG={self.kubeconfig})")

    def start_or_stop(self) -> None:
        """Start; if that fails, stop what was started and re-raise."""
        try:
            self.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.local_node is not None:
            log("stopping the node (kubelet, pods, containerd)")
            self.local_node.stop()
            self.local_node = None
        if self.processes:
            log("stopping the control plane")
        for proc in reversed(self.processes):
            proc.stop(timeout=5.0)
        self.processes.clear()
        shutil.rmtree(self._etcd_dir(), ignore_errors=True)
        if self.keep_workdir:
            log(f"kept {self.workdir} (logs/, node/logs/, node/var-log/pods/)")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _spawn(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Process:
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        proc = Process(name, argv, logs / f"{name}.log", env=env).start()
        self.processes.append(proc)
        return proc

    # -- the pieces ---------------------------------------------------------------------------

    def _write_credentials(self) -> None:
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)
        subprocess.run(
            ["openssl", "genrsa", "-out", str(pki / "sa.key"), "2048"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["openssl", "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")],
            check=True,
            capture_output=True,
        )
        (pki / "tokens.csv").write_text(f'{self.token},{ADMIN_TOKEN_USER},1,"system:masters"\n')
        (pki / "tokens.csv").chmod(0o600)

    def _etcd_dir(self) -> Path:
        shm = Path("/dev/shm")  # etcd fsyncs every write: keep its data on tmpfs
        base = shm if shm.is_dir() and os.access(shm, os.W_OK) else self.workdir
        return base / f"fast-note-etcd-{self.workdir.name}"

    def _start_etcd(self) -> None:
        self.etcd_port, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        peer_url = f"http://127.0.0.1:{peer}"
        etcd = shutil.which("etcd") or "/usr/bin/etcd"
        self._spawn(
            "etcd",
            [
                etcd,
                "--name",
                "e2e",
                "--data-dir",
                str(self._etcd_dir()),
                "--listen-client-urls",
                self.etcd_url,
                "--advertise-client-urls",
                self.etcd_url,
                "--listen-peer-urls",
                peer_url,
                "--initial-advertise-peer-urls",
                peer_url,
                "--initial-cluster",
                f"e2e={peer_url}",
                "--log-level",
                "warn",
                "--quota-backend-bytes",
                str(2 * 1024**3),
            ],
        )

    def _start_apiserver(self, bin_dir: Path) -> None:
        pki = self.workdir / "pki"
        self.api_port = free_port()
        self.server = f"https://127.0.0.1:{self.api_port}"
        self._spawn(
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                "--etcd-servers",
                self.etcd_url,
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
                "--secure-port",
                str(self.api_port),
                "--insecure-port",
                "0",
                "--cert-dir",
                str(pki),
                "--token-auth-file",
                str(pki / "tokens.csv"),
                "--authorization-mode",
                "RBAC",
                "--service-account-issuer",
                "https://kubernetes.default.svc.cluster.local",
                "--service-account-key-file",
                str(pki / "sa.pub"),
                "--service-account-signing-key-file",
                str(pki / "sa.key"),
                "--api-audiences",
                "https://kubernetes.default.svc.cluster.local",
                "--service-cluster-ip-range",
                "10.96.0.0/16",
                "--allow-privileged=true",
                # the node is "localhost": kubectl logs/exec reach its kubelet through a relay
                # from the host's loopback into the node's network namespace
                "--kubelet-preferred-address-types",
                "Hostname",
                "--endpoint-reconciler-type",
                "none",
                "--profiling=false",
                "--v",
                "1",
            ],
        )
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "fast-note-e2e",
                    "clusters": [
                        {
                            "name": "fast-note-e2e",
                            "cluster": {
                                "server": self.server,
                                # the API server's self-signed certificate, written at its start
                                "certificate-authority": str(pki / "apiserver.crt"),
                            },
                        }
                    ],
                    "users": [{"name": "admin", "user": {"token": self.token}}],
                    "contexts": [
                        {
                            "name": "fast-note-e2e",
                            "context": {
                                "cluster": "fast-note-e2e",
                                "user": "admin",
                                "namespace": "default",
                            },
                        }
                    ],
                },
                indent=2,
            )
        )
        self.kubeconfig.chmod(0o600)

    def _component_flags(self) -> list[str]:
        """What the controller manager and the scheduler share: the admin kubeconfig, no
        leader election, their own API on a free loopback port, no insecure port."""
        kubeconfig = str(self.kubeconfig)
        return [
            *("--kubeconfig", kubeconfig),
            *("--authentication-kubeconfig", kubeconfig),
            *("--authorization-kubeconfig", kubeconfig),
            "--leader-elect=false",
            *("--bind-address", "127.0.0.1"),
            *("--secure-port", str(free_port())),
            *("--port", "0"),
        ]

    def _start_controller_manager(self, bin_dir: Path) -> None:
        pki = self.workdir / "pki"
        controllers = ",".join(["*", *(f"-{c}" for c in DISABLED_CONTROLLERS)])
        self._spawn(
            "kube-controller-manager",
            [
                str(bin_dir / "kube-controller-manager"),
                *self._component_flags(),
                "--controllers",
                controllers,
                "--service-account-private-key-file",
                str(pki / "sa.key"),
                "--root-ca-file",
                str(pki / "apiserver.crt"),
                "--concurrent-deployment-syncs",
                "5",
                "--concurrent-replicaset-syncs",
                "5",
                "--v",
                "1",
            ],
        )

    def _start_scheduler(self, bin_dir: Path) -> None:
        self._spawn(
            "kube-scheduler",
            [
                str(bin_dir / "kube-scheduler"),
                *self._component_flags(),
                "--v",
                "1",
            ],
        )

    def start_node(self, bin_dir: Path, archives: Sequence[Path]) -> LocalNode:
        """Start the node (``node.py``) with these images imported, and wait until Ready."""
        t0 = time.monotonic()
        # the image store is a cache: an unchanged image is not imported again
        containerd_root = images.CACHE.parent / "containerd"
        self.local_node = self._node(bin_dir, self.node_dir, NODE_NAME, containerd_root)
        self._bring_up(self.local_node, archives)
        log(f"node {NODE_NAME} Ready in {time.monotonic() - t0:.1f} s (kubelet, containerd, runc)")
        return self.local_node

    def second_node(self, workdir: Path, name: str) -> LocalNode:
        """Another node with its own namespaces, image store and cgroups (only the pause
        image); the caller stops it."""
        node = self._node(control_plane_dir(self.cache), workdir, name, workdir / "containerd")
        self._bring_up(node, [images.pause_archive()])
        return node

    def _node(self, bin_dir: Path, workdir: Path, name: str, containerd_root: Path) -> LocalNode:
        return LocalNode(
            workdir=workdir,
            bin_dir=bin_dir,
            api_port=self.api_port,
            api_ca=self.workdir / "pki" / "apiserver.crt",
            token=self.token,
            containerd_root=containerd_root,
            pause_image=images.PAUSE_IMAGE,
            name=name,
        )

    def _bring_up(self, node: LocalNode, archives: Sequence[Path]) -> None:
        try:
            node.start_namespaces()
            node.start_containerd()
            node.forget_old_containers()
            images.import_images(str(node.containerd_socket), archives)
            node.start_kubelet()
            self._wait_node_ready(node)
        except BaseException:
            node.stop()
            raise

    # -- readiness -----------------------------------------------------------------------------

    def request(self, path: str, method: str = "GET", body: Any = None) -> Any:
        """One call to the API server as the admin; returns the decoded JSON."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.server + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            raw = resp.read()
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode()

    def _poll(self, what: str, check: Any, watch: Sequence[str]) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            for proc in self.processes:
                if proc.name in watch and not proc.alive():
                    raise RuntimeError(
                        f"{proc.name} exited while waiting for {what}:\n{proc.tail()}"
                    )
            with contextlib.suppress(OSError, urllib.error.URLError, ValueError, KeyError):
                if check():
                    return
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {p.name}\n{p.tail()}" for p in self.processes)
                raise TimeoutError(f"timed out waiting for {what}\n{tails}")
            time.sleep(0.2)

    def _wait_ready(self, what: str, path: str) -> None:
        self._poll(what, lambda: self.request(path) == "ok", ("etcd", "kube-apiserver"))

    def _wait_default_serviceaccount(self) -> None:
        def ok() -> bool:
            sa = self.request("/api/v1/namespaces/default/serviceaccounts/default")
            return bool(sa.get("secrets"))

        self._poll(
            "the controller manager (default ServiceAccount token)",
            ok,
            ("etcd", "kube-apiserver", "kube-controller-manager"),
        )

    def _wait_node_ready(self, node: LocalNode) -> None:
        def ok() -> bool:
            node.check_alive()
            status = self.request(f"/api/v1/nodes/{node.name}").get("status", {})
            return any(
                c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
            )

        self._poll(f"node {node.name} to be Ready", ok, [p.name for p in self.processes])

    def wait_namespace_ready(self, namespace: str, timeout: float = 30.0) -> None:
        """Wait until the namespace's default ServiceAccount has its token (pods need it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(urllib.error.URLError, KeyError):
                sa = self.request(f"/api/v1/namespaces/{namespace}/serviceaccounts/default")
                if sa.get("secrets"):
                    return
            time.sleep(0.1)
        raise TimeoutError(f"namespace {namespace}: no default ServiceAccount token")


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-node", action="store_true", help="the control plane only")
    parser.add_argument("--build-only", action="store_true", help="build/cache the binaries, exit")
    args = parser.parse_args()
    if args.build_only:
        print(ensure_control_plane())
        return 0
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    with LocalCluster(node=not args.no_node) as cluster:
        print(f"export KUBECONFIG={cluster.kubeconfig}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while all(p.alive() for p in cluster.processes):
                time.sleep(1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
