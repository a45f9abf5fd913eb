"""A local Kubernetes control plane for the end-to-end tests and the demo.

``LocalCluster`` runs etcd, kube-apiserver and kube-controller-manager (1.20.2, built
once from Debian's source package by ``build-control-plane.sh`` and cached outside the
repository) on 127.0.0.1, and optionally the node agent (``node_agent.py``, a test double
of the kubelet), then yields a kubeconfig path::

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
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tools.fetch_tools import PINS

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = Path(__file__).resolve().parent / "build-control-plane.sh"
K8S_VERSION = PINS["kubernetes"].version
DEFAULT_CACHE = Path(os.environ.get("FAST_NOTE_E2E_CACHE", "/var/cache/fast-note-e2e"))
ADMIN_TOKEN_USER = "fast-note-e2e-admin"

# kube-controller-manager 1.20 controllers we switch off: no nodes to manage besides the
# agent's, no cloud, no routes, no load balancers.
DISABLED_CONTROLLERS = ("nodeipam", "nodelifecycle", "route", "service", "cloud-node-lifecycle")


def log(msg: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def control_plane_dir(cache: Path = DEFAULT_CACHE) -> Path:
    return cache / f"kubernetes-{K8S_VERSION}" / "bin"


def control_plane_cached(cache: Path = DEFAULT_CACHE) -> bool:
    """Whether the control plane binaries are built and cached (nothing to build)."""
    bin_dir = control_plane_dir(cache)
    built = all((bin_dir / c).exists() for c in ("kube-apiserver", "kube-controller-manager"))
    return built and (bin_dir / ".complete").exists()


def ensure_control_plane(cache: Path = DEFAULT_CACHE) -> Path:
    """Build (first time) or find the cached control plane binaries; return their folder."""
    bin_dir = control_plane_dir(cache)
    if control_plane_cached(cache) and shutil.which("etcd"):
        return bin_dir
    log(f"building the Kubernetes {K8S_VERSION} control plane into {bin_dir} (first run only)")
    env = dict(os.environ, FAST_NOTE_E2E_CACHE=str(cache))
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], env=env, check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class Process:
    """A child process in its own process group, its output in a log file."""

    name: str
    argv: Sequence[str]
    logfile: Path
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> Process:
        self._log = open(self.logfile, "ab")  # noqa: SIM115 - closed in stop()
        in_main = threading.current_thread() is threading.main_thread()
        self.popen = subprocess.Popen(
            list(self.argv),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,
            preexec_fn=_set_pdeathsig if in_main else None,
        )
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        # whatever is left in the group (children that outlived the leader)
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class LocalCluster:
    """etcd + kube-apiserver + kube-controller-manager on loopback, optional node agent."""

    node_agent: bool = True
    images_dir: Path | None = None  # image tag -> file tree table for the node agent
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fast-note-e2e-")))
    cache: Path = DEFAULT_CACHE
    # FAST_NOTE_E2E_KEEP=1 keeps the logs, kubeconfig and the agent's files after the run
    keep_workdir: bool = field(default_factory=lambda: os.environ.get("FAST_NOTE_E2E_KEEP") == "1")
    startup_timeout: float = 90.0
    processes: list[Process] = field(default_factory=list)
    token: str = field(default_factory=lambda: os.urandom(16).hex())

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def agent_dir(self) -> Path:
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
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_credentials()
        self._start_etcd()
        self._start_apiserver(bin_dir)
        self._wait_ready("kube-apiserver", "/readyz")
        self._start_controller_manager(bin_dir)
        self._wait_default_serviceaccount()
        if self.node_agent:
            self.start_node_agent()
        log(f"control plane ready in {time.monotonic() - t0:.1f} s (KUBECONFIG={self.kubeconfig})")

    def start_or_stop(self) -> None:
        """Start; if that fails, stop what was started and re-raise."""
        try:
            self.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.processes:
            log("stopping the node agent and the control plane")
        for proc in reversed(self.processes):
            # the node agent stops its pods first (SIGTERM, up to 5 s each, in parallel)
            proc.stop(timeout=15.0 if proc.name == "node-agent" else 5.0)
        self.processes.clear()
        shutil.rmtree(self._etcd_dir(), ignore_errors=True)
        if self.keep_workdir:
            log(f"kept {self.workdir} (logs/, node/pods/<namespace>/<pod>/<container>.log)")
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

    def _start_controller_manager(self, bin_dir: Path) -> None:
        pki = self.workdir / "pki"
        controllers = ",".join(["*", *(f"-{c}" for c in DISABLED_CONTROLLERS)])
        self._spawn(
            "kube-controller-manager",
            [
                str(bin_dir / "kube-controller-manager"),
                "--kubeconfig",
                str(self.kubeconfig),
                "--authentication-kubeconfig",
                str(self.kubeconfig),
                "--authorization-kubeconfig",
                str(self.kubeconfig),
                "--leader-elect=false",
                "--controllers",
                controllers,
                "--service-account-private-key-file",
                str(pki / "sa.key"),
                "--root-ca-file",
                str(pki / "apiserver.crt"),
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                str(free_port()),
                "--port",
                "0",
                "--concurrent-deployment-syncs",
                "5",
                "--concurrent-replicaset-syncs",
                "5",
                "--v",
                "1",
            ],
        )

    def start_node_agent(self) -> Process:
        """Start the node agent (``testkit/kube/node_agent.py``) against this cluster."""
        self.agent_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "testkit.kube.node_agent",
            "--kubeconfig",
            str(self.kubeconfig),
            "--workdir",
            str(self.agent_dir),
        ]
        if self.images_dir is not None:
            argv += ["--images", str(self.images_dir)]
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        proc = self._spawn("node-agent", argv, env=env)
        self._wait_node_ready()
        return proc

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

    def _wait_node_ready(self) -> None:
        def ok() -> bool:
            nodes = self.request("/api/v1/nodes")["items"]
            return any(
                c["type"] == "Ready" and c["status"] == "True"
                for n in nodes
                for c in n.get("status", {}).get("conditions", [])
            )

        self._poll("the node agent's Node", ok, [p.name for p in self.processes])

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
    parser.add_argument("--no-node-agent", action="store_true")
    parser.add_argument("--images", type=Path, help="images table folder for the node agent")
    parser.add_argument("--build-only", action="store_true", help="build/cache the binaries, exit")
    args = parser.parse_args()
    if args.build_only:
        print(ensure_control_plane())
        return 0
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    with LocalCluster(node_agent=not args.no_node_agent, images_dir=args.images) as cluster:
        print(f"export KUBECONFIG={cluster.kubeconfig}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while all(p.alive() for p in cluster.processes):
                time.sleep(1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
