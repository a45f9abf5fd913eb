"""A real Kubernetes node for the end-to-end tests: kubelet, containerd, runc, a CNI bridge.

``LocalNode`` runs the kubelet (1.20.2, built from Debian's source like the control plane)
and containerd (Debian's, with runc) against a ``LocalCluster``'s API server. Everything of
the node lives in namespaces and folders of the run:

* one **mount and network namespace** (held by a ``sleep`` process) for containerd and the
  kubelet: the CNI bridge, its iptables rules and the pods' addresses exist only there, and
  so do the mounts the node makes (``/run``, ``/var/lib`` and ``/var/log`` are the run's own
  folders there, the pods' network namespaces, overlay and tmpfs mounts);
* the kubelet sets kernel sysctls it wants (``kernel.panic_on_oops`` …): in that mount
  namespace those ``/proc/sys`` files are bind-mounted stand-ins that already hold the values,
  so the host's are never written;
* a **cgroup root** ``/fast-note-e2e-<id>`` in every cgroup hierarchy, removed at the end;
* **relays** (``relay.py``) join the namespaces: the API server's port appears on the node's
  loopback, the kubelet's port on the host's (``kubectl logs``/``exec``), and PostgreSQL on
  the node's bridge address (``POD_HOST_ADDRESS``) for the pods.

Images come from ``images.py`` (built with buildah from the project's Dockerfiles) and are
imported into containerd; pods use them with ``imagePullPolicy: IfNotPresent``/``Never``.
At the end every process of the node is killed by pid: the pods' (from the cgroups),
containerd's shims' (from the mount namespace), the kubelet and containerd, then the holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from testkit.kube.process import Process, free_port
from testkit.kube.relay import Relay

NODE_NAME = "localhost"  # the kubelet refuses a loopback --node-ip; the name needs none
POD_SUBNET = "10.244.0.0/24"  # inside the node's network namespace only
POD_HOST_ADDRESS = "10.244.0.1"  # the bridge: how pods reach relayed host services
NODE_ADDRESS = "10.244.1.1"  # the node's InternalIP, on an empty bridge in its namespace
CNI_BIN = Path("/usr/lib/cni")
# sysctls the kubelet 1.20 enforces (pkg/kubelet/cm/container_manager_linux.go setupKernelTunables)
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
# folders the node's programs write to by fixed paths; the run's own copies in its namespace
PRIVATE_FOLDERS = ("/run", "/var/lib", "/var/log")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy: the v1 ones (cpu, memory, …) and, in a hybrid layout,
    the unified one (the kubelet makes its cgroups in all of them)."""
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [
        Path(parts[4])
        for parts in (line.split() for line in lines)
        if parts[parts.index("-") + 1] in ("cgroup", "cgroup2")
    ]


def read_sysctls() -> dict[str, str]:
    """The values of the sysctls the kubelet wants, as the calling process sees them."""
    return {name: Path(f"/proc/sys/{name}").read_text().strip() for name in KUBELET_SYSCTLS}


def _kill_pids(pids: Iterable[int]) -> int:
    killed = 0
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed


def _same_mount_ns(ns: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / "mnt") == ns:
                    pids.append(int(entry.name))
    return pids


@dataclass
class LocalNode:
    """kubelet + containerd in namespaces of the run; see the module docstring."""

    workdir: Path
    bin_dir: Path  # the kubelet binary
    api_port: int
    api_ca: Path
    token: str
    containerd_root: Path  # image content and snapshots; may outlive the run (a cache)
    pause_image: str
    name: str = NODE_NAME
    relays: list[Relay] = field(default_factory=list)
    processes: list[Process] = field(default_factory=list)
    holder: Process | None = None
    cgroup_name: str = field(default_factory=lambda: f"fast-note-e2e-{os.urandom(4).hex()}")
    host_sysctls: dict[str, str] = field(default_factory=dict)  # before the start
    _root_lock: int | None = None

    # -- paths -------------------------------------------------------------------------------

    @property
    def containerd_socket(self) -> Path:
        return self.workdir / "run" / "containerd" / "containerd.sock"

    @property
    def pod_logs(self) -> Path:
        """The kubelet's /var/log/pods, as the host sees it."""
        return self.workdir / "var-log" / "pods"

    @property
    def holder_pid(self) -> int:
        """The pid of the process that holds the node's namespaces."""
        assert self.holder is not None and self.holder.popen is not None
        return int(self.holder.popen.pid)

    @property
    def netns(self) -> Path:
        return Path(f"/proc/{self.holder_pid}/ns/net")

    # -- life cycle --------------------------------------------------------------------------

    def start_namespaces(self) -> None:
        """The holder of the node's mount and network namespaces, set up; cgroups; relays."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host_sysctls = read_sysctls()
        self.holder = Process(
            "holder",
            ["unshare", "--mount", "--net", "--propagation", "private", "sleep", "infinity"],
            self._logfile("holder"),
        ).start()
        self._wait_unshared()
        self.in_namespaces(["ip", "link", "set", "lo", "up"])
        self._node_address()
        self._private_folders()
        self._sysctl_standins()
        self._make_cgroups()
        self.kubelet_port = free_port()
        self.relays = [
            Relay(
                "apiserver",
                ("127.0.0.1", self.api_port),
                ("127.0.0.1", self.api_port),
                listen_netns=self.netns,
            ).start(),
            Relay(
                "kubelet",
                ("127.0.0.1", self.kubelet_port),
                ("127.0.0.1", self.kubelet_port),
                target_netns=self.netns,
            ).start(),
        ]

    def relay_to_pods(self, name: str, host_port: int, pod_port: int) -> str:
        """Make the host's 127.0.0.1:``host_port`` reachable by pods; returns ``host:port``."""
        relay = Relay(
            name, ("0.0.0.0", pod_port), ("127.0.0.1", host_port), listen_netns=self.netns
        )
        self.relays.append(relay.start())
        return f"{POD_HOST_ADDRESS}:{pod_port}"

    def start_containerd(self) -> None:
        self._claim_containerd_root()
        config = self._write_containerd_config()
        self._spawn("containerd", ["containerd", "--config", str(config)])
        deadline = time.monotonic() + 30
        while not self.containerd_socket.exists():
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError("containerd did not create its socket in 30 s")
            time.sleep(0.1)

    def _claim_containerd_root(self) -> None:
        """The image store is shared by runs one after another, not at the same time: if
        another run holds it, this one gets a store of its own (and imports the images)."""
        self.containerd_root.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.containerd_root / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._root_lock = lock
        except BlockingIOError:
            os.close(lock)
            self.containerd_root = self.workdir / "containerd"

    def forget_old_containers(self) -> None:
        """Containers an earlier run left in the store's metadata (it was killed): their
        processes are gone with its namespaces; remove the records before the kubelet starts."""
        for container in self.ctr("containers", "ls", "-q").stdout.split():
            self.ctr("containers", "rm", container, check=False)

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ctr`` against this node's containerd, in the kubelet's namespace ``k8s.io``."""
        return subprocess.run(
            ["ctr", "--address", str(self.containerd_socket), "-n", "k8s.io", *args],
            check=check,
            capture_output=True,
            text=True,
        )

    def container_log(self, namespace: str, pod: str, container: str) -> str:
        """A container's output from the kubelet's log files (also for a pod deleted less
        than a minute ago, before the kubelet's garbage collection): the CRI log format
        ``<time> <stream> <P|F> <text>`` turned back into plain lines."""
        out: list[str] = []
        for path in sorted(self.pod_logs.glob(f"{namespace}_{pod}_*/{container}/*.log")):
            for row in path.read_text(errors="replace").splitlines():
                _time, _stream, tag, text = [*row.split(" ", 3), "", "", "", ""][:4]
                out.append(text if tag == "P" else text + "\n")  # P: the line goes on
        return "".join(out)

    def kill_container(self, container_id: str) -> None:
        """SIGKILL a container's processes, as the OOM killer would."""
        self.ctr("tasks", "kill", "--signal", "SIGKILL", container_id)

    def start_kubelet(self) -> None:
        kubeconfig = self._write_kubelet_kubeconfig()
        config = self._write_kubelet_config()
        root = self.workdir / "kubelet"
        self._spawn(
            "kubelet",
            [
                str(self.bin_dir / "kubelet"),
                "--config",
                str(config),
                "--kubeconfig",
                str(kubeconfig),
                "--container-runtime",
                "remote",
                "--container-runtime-endpoint",
                f"unix://{self.containerd_socket}",
                "--runtime-request-timeout",
                "5m",
                "--hostname-override",
                self.name,
                "--pod-infra-container-image",
                self.pause_image,
                "--root-dir",
                str(root),
                "--cert-dir",
                str(root / "pki"),
                "--v",
                "1",
            ],
        )

    def stop(self) -> None:
        """Stop everything of the node by pid; safe to call twice, also after a failed start."""
        kubelet = [p for p in self.processes if p.name == "kubelet"]
        for proc in kubelet:
            proc.stop(timeout=10)
        self._kill_pods()
        for proc in reversed(self.processes):
            proc.stop(timeout=5)
        if self.holder is not None:
            if self.holder.alive():
                # containerd's shims re-parent to init: find them by the namespace they share
                ns = os.readlink(f"/proc/{self.holder_pid}/ns/mnt")
                _kill_pids(p for p in _same_mount_ns(ns) if p != self.holder_pid)
            self.holder.stop(timeout=1)
            self.holder = None
        for relay in self.relays:
            relay.stop()
        self.relays.clear()
        self._remove_cgroups()
        self.processes.clear()
        if self._root_lock is not None:
            os.close(self._root_lock)
            self._root_lock = None

    # -- pieces ------------------------------------------------------------------------------

    def in_namespaces(self, argv: Sequence[str]) -> str:
        """Run a command in the node's mount and network namespaces; its output."""
        return subprocess.run(
            ["nsenter", "--target", str(self.holder_pid), "--mount", "--net", *argv],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def _wait_unshared(self) -> None:
        assert self.holder is not None
        mine = os.readlink("/proc/self/ns/mnt")
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{self.holder_pid}/ns/mnt") == mine:
            if not self.holder.alive() or time.monotonic() > deadline:
                raise RuntimeError("unshare --mount --net failed (needs root)")
            time.sleep(0.02)

    def _node_address(self) -> None:
        """The kubelet reports the address of the default route's interface (and without
        one, no address at all, so the API server cannot reach it for logs and exec): an
        empty bridge (no ports: whatever is sent to it goes nowhere) is that route."""
        self.in_namespaces(["ip", "link", "add", "node0", "type", "bridge"])
        self.in_namespaces(["ip", "addr", "add", f"{NODE_ADDRESS}/32", "dev", "node0"])
        self.in_namespaces(["ip", "link", "set", "node0", "up"])
        self.in_namespaces(["ip", "route", "add", "default", "dev", "node0"])

    def _private_folders(self) -> None:
        for folder in PRIVATE_FOLDERS:
            own = self.workdir / folder.strip("/").replace("/", "-")
            own.mkdir(parents=True, exist_ok=True)
            self.in_namespaces(["mount", "--bind", str(own), folder])
        self.pod_logs.mkdir(parents=True, exist_ok=True)

    def _sysctl_standins(self) -> None:
        standins = self.workdir / "sysctl"
        for name, value in KUBELET_SYSCTLS.items():
            path = standins / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(value + "\n")
            self.in_namespaces(["mount", "--bind", str(path), f"/proc/sys/{name}"])

    def _make_cgroups(self) -> None:
        for hierarchy in cgroup_hierarchies():
            (hierarchy / self.cgroup_name).mkdir(exist_ok=True)

    def _cgroup_dirs(self) -> Iterator[Path]:
        for hierarchy in cgroup_hierarchies():
            root = hierarchy / self.cgroup_name
            if root.is_dir():
                # deepest first, so rmdir can go in this order
                yield from sorted(
                    (p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
                )
                yield root

    def _kill_pods(self) -> None:
        """SIGKILL every process in the node's cgroups (the pods' containers), until none."""
        for _ in range(50):
            pids: set[int] = set()
            for cgroup in self._cgroup_dirs():
                with contextlib.suppress(OSError):
                    pids.update(int(p) for p in (cgroup / "cgroup.procs").read_text().split())
            if not pids:
                return
            _kill_pids(pids)
            time.sleep(0.1)

    def _remove_cgroups(self) -> None:
        for _ in range(50):
            left = []
            for cgroup in self._cgroup_dirs():
                try:
                    cgroup.rmdir()
                except OSError:
                    left.append(cgroup)
            if not left:
                return
            self._kill_pods()
            time.sleep(0.1)

    def _spawn(self, name: str, argv: Sequence[str]) -> Process:
        enter = ["nsenter", "--target", str(self.holder_pid), "--mount", "--net"]
        proc = Process(name, [*enter, *argv], self._logfile(name)).start()
        self.processes.append(proc)
        return proc

    def _logfile(self, name: str) -> Path:
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        return logs / f"{name}.log"

    def check_alive(self) -> None:
        """Raise if a program of the node has exited (with the end of its log)."""
        for proc in self.processes:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")

    def _write_containerd_config(self) -> Path:
        cni = self.workdir / "cni"
        (cni / "net.d").mkdir(parents=True, exist_ok=True)
        (cni / "net.d" / "10-fast-note-e2e.conflist").write_text(json.dumps(self._cni_config()))
        self.containerd_root.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "containerd.toml"
        config.write_text(
            f"""version = 2
root = "{self.containerd_root}"
state = "{self.workdir / "run" / "containerd-state"}"
[grpc]
  address = "{self.containerd_socket}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.workdir / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{self.pause_image}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni / "net.d"}"
"""
        )
        return config

    def _cni_config(self) -> dict[str, object]:
        return {
            "cniVersion": "0.4.0",
            "name": "fast-note-e2e",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": True,
                    "ipMasq": False,  # there is nowhere to go out to
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_SUBNET, "gateway": POD_HOST_ADDRESS}]],
                        "dataDir": str(self.workdir / "cni" / "ipam"),
                    },
                },
                {"type": "loopback"},
            ],
        }

    def _write_kubelet_kubeconfig(self) -> Path:
        path = self.workdir / "kubelet.kubeconfig"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "node",
                    "clusters": [
                        {
                            "name": "e2e",
                            "cluster": {
                                "server": f"https://127.0.0.1:{self.api_port}",
                                "certificate-authority": str(self.api_ca),
                            },
                        }
                    ],
                    "users": [{"name": "node", "user": {"token": self.token}}],
                    "contexts": [{"name": "node", "context": {"cluster": "e2e", "user": "node"}}],
                }
            )
        )
        path.chmod(0o600)
        return path

    def _write_kubelet_config(self) -> Path:
        resolv = self.workdir / "resolv.conf"
        resolv.write_text("")  # pods get no name servers: no traffic leaves the node
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": "127.0.0.1",
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzPort": 0,
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{self.cgroup_name}",
            "cgroupsPerQOS": True,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            "resolvConf": str(resolv),
            "protectKernelDefaults": False,
            # the imported images are all there is: never garbage-collect them, never evict
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "1Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "serializeImagePulls": False,
            "nodeStatusUpdateFrequency": "4s",
            "syncFrequency": "10s",
            "fileCheckFrequency": "20s",
            "podPidsLimit": -1,
            "maxPods": 110,
            "clusterDomain": "cluster.local",
        }
        path = self.workdir / "kubelet-config.json"
        path.write_text(json.dumps(config, indent=2))
        return path
