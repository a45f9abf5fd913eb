"""A test double of the kubelet for the end-to-end tests: runs pods as local processes.

There is no kubelet, scheduler or container runtime in the local control plane. This
agent registers one Node (Ready, with capacity), binds every pending pod that names no
node (and uses the default scheduler) to it, and runs the pod's containers for real as
local processes: init containers in order, then the main containers, each in a private
mount namespace where the image's folders (see ``images.py``) and the pod's volumes
(emptyDir, Secret, ConfigMap, projected, downwardAPI, hostPath) are bind-mounted at their
mount paths (``run_container.py``). Environment: literals, ``$(VAR)`` expansion,
``secretKeyRef``/``configMapKeyRef``/``fieldRef`` and ``envFrom``.

It reports what a kubelet reports: phase, init and main container states (waiting /
running / terminated with exit code and reason), restart counts, the Initialized,
ContainersReady and Ready conditions, hostIP and podIP (127.0.0.1). ``restartPolicy`` is
honoured (Never for Jobs; Always/OnFailure restart a failed container, init containers
included, with a back-off of 1, 2, 4 … 10 s). Readiness: ``httpGet`` and ``tcpSocket``
readiness probes, every second. All pods share 127.0.0.1, so each container port gets a
free host port and the container gets ``PORT`` set to the first one; probes naming a
container port go to its host port. When a pod is deleted its processes get SIGTERM
(SIGKILL after min(grace, 5 s)) and the agent removes the pod (grace 0), as a kubelet does.

Each container's output goes to ``<workdir>/pods/<namespace>/<pod>/<container>.log``
(restarts append), and ``<workdir>/pods/<namespace>/<pod>/ports.json`` maps the pod's
container ports to host ports. The agent serves nothing (no logs/exec/port-forward API).

Not done: images (see images.py), networking (no pod network, Services or DNS), users
(everything runs as root), resource requests/limits, liveness/startup probes, exec
probes (counted as passing), lifecycle hooks, PVCs, ephemeral containers, evictions.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config  # type: ignore[import-untyped]
from kubernetes.client.rest import ApiException  # type: ignore[import-untyped]

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from testkit.kube import images
from testkit.kube.cluster import K8S_VERSION

LOG = logging.getLogger("node-agent")
RUN_CONTAINER = Path(__file__).resolve().parent / "run_container.py"
POD_IP = "127.0.0.1"
POLL_SECONDS = 0.3
PROBE_SECONDS = 1.0
MAX_GRACE_SECONDS = 5.0
Json = dict[str, Any]


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ConfigError(Exception):
    """A referenced Secret/ConfigMap/key is missing (CreateContainerConfigError)."""


# --------------------------------------------------------------------------------------------
# API access (plain dicts; the generated models are not needed)
# --------------------------------------------------------------------------------------------


class Api:
    def __init__(self, kubeconfig: str | None) -> None:
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig)
        else:
            config.load_incluster_config()
        self.core = client.CoreV1Api()

    @staticmethod
    def _json(resp: Any) -> Json:
        return json.loads(resp.data) if resp.data else {}

    def list_pods(self) -> list[Json]:
        pods: list[Json] = self._json(
            self.core.list_pod_for_all_namespaces(_preload_content=False)
        )["items"]
        return pods

    def read(self, kind: str, namespace: str, name: str) -> Json:
        fn = {
            "secret": self.core.read_namespaced_secret,
            "configmap": self.core.read_namespaced_config_map,
        }[kind]
        try:
            return self._json(fn(name, namespace, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                raise ConfigError(f'{kind} "{name}" not found') from exc
            raise

    def bind(self, pod: Json, node: str) -> None:
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        self.core.create_namespaced_binding(meta["namespace"], body, _preload_content=False)

    def set_pod_status(self, namespace: str, name: str, status: Json) -> None:
        patch = [{"op": "replace", "path": "/status", "value": status}]
        self.core.patch_namespaced_pod_status(name, namespace, patch, _preload_content=False)

    def delete_pod_now(self, namespace: str, name: str, uid: str) -> None:
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_pod(
                name, namespace, body=body, grace_period_seconds=0, _preload_content=False
            )

    def register_node(self, name: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "fast-note.dev/node-agent": "true",
                },
            },
        }
        try:
            self.core.create_node(body, _preload_content=False)
        except ApiException as exc:
            if exc.status != 409:
                raise
        self.heartbeat(name)

    def heartbeat(self, name: str) -> None:
        t = now()
        resources = {
            "cpu": str(os.cpu_count() or 2),
            "memory": "32Gi",
            "pods": "110",
            "ephemeral-storage": "100Gi",
        }
        status = {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "NodeAgentReady",
                    "message": "fast-note e2e node agent is running",
                    "lastHeartbeatTime": t,
                    "lastTransitionTime": t,
                }
            ],
            "addresses": [
                {"type": "InternalIP", "address": POD_IP},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": platform.release(),
                "osImage": "fast-note e2e",
                "containerRuntimeVersion": "fast-note-node-agent://1",
                "kubeletVersion": f"v{K8S_VERSION}",
                "kubeProxyVersion": f"v{K8S_VERSION}",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }
        patch = [{"op": "replace", "path": "/status", "value": status}]
        self.core.patch_node_status(name, patch, _preload_content=False)

    def delete_node(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self.core.delete_node(name, _preload_content=False)


# --------------------------------------------------------------------------------------------
# Environment and volumes
# --------------------------------------------------------------------------------------------

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known variables are replaced, $$ escapes."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(sub, value)


def _decode(data: dict[str, str] | None, binary: bool) -> dict[str, bytes]:
    if not data:
        return {}
    if binary:
        return {k: base64.b64decode(v) for k, v in data.items()}
    return {k: v.encode() for k, v in data.items()}


def field_value(pod: Json, path: str) -> str:
    meta = pod["metadata"]
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str(meta.get(m.group(1), {}).get(m.group(2), ""))
    return str(
        {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta.get("uid", ""),
            "spec.nodeName": pod["spec"].get("nodeName", ""),
            "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
            "status.podIP": POD_IP,
            "status.hostIP": POD_IP,
        }.get(path, "")
    )


@dataclass
class Container:
    """One container of a pod and its current state as the kubelet would report it."""

    spec: Json
    init: bool
    state: Json = field(default_factory=lambda: {"waiting": {"reason": "PodInitializing"}})
    last_state: Json = field(default_factory=dict)
    restarts: int = 0
    ready: bool = False
    proc: subprocess.Popen[bytes] | None = None
    runtime: images.Runtime | None = None
    probe_failures: int = 0
    started_at: float = 0.0

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def status(self) -> Json:
        image = self.spec.get("image", "")
        out: Json = {
            "name": self.name,
            "state": self.state,
            "lastState": self.last_state,
            "ready": self.ready,
            "restartCount": self.restarts,
            "image": image,
            "imageID": f"fast-note-node-agent://{image}",
        }
        if self.proc is not None:
            out["containerID"] = f"fast-note-node-agent://{self.proc.pid}"
        if not self.init:
            out["started"] = "running" in self.state
        return out


class PodRunner(threading.Thread):
    """Runs one pod: volumes, init containers, containers, restarts, probes, status."""

    def __init__(self, agent: Agent, pod: Json) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.agent, self.pod = agent, pod
        self.ns, self.pod_name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.dir = agent.workdir / "pods" / self.ns / self.pod_name
        self.state_dir = agent.workdir / "state" / self.uid
        spec = pod["spec"]
        self.restart_policy = spec.get("restartPolicy", "Always")
        self.inits = [Container(c, True) for c in spec.get("initContainers", [])]
        self.mains = [Container(c, False) for c in spec.get("containers", [])]
        self.stopping = threading.Event()
        self.phase = "Pending"
        self.initialized = not self.inits
        self.start_time = now()
        self.conditions_t: dict[str, tuple[str, str]] = {}
        self.ports: dict[str, int] = {}
        self.volumes: dict[str, Path] = {}
        self.reported: str = ""
        self.message = ""
        self.reason = ""

    # -- status -------------------------------------------------------------------------------

    def _condition(self, ctype: str, ok: bool, reason: str = "") -> Json:
        value = "True" if ok else "False"
        prev = self.conditions_t.get(ctype)
        if prev is None or prev[0] != value:
            self.conditions_t[ctype] = (value, now())
        cond: Json = {
            "type": ctype,
            "status": value,
            "lastProbeTime": None,
            "lastTransitionTime": self.conditions_t[ctype][1],
        }
        if reason and not ok:
            cond["reason"] = reason
        return cond

    def report(self) -> None:
        ready = self.initialized and bool(self.mains) and all(c.ready for c in self.mains)
        if self.phase in ("Succeeded", "Failed"):
            ready = False
        done = self.phase in ("Succeeded", "Failed")
        not_ready = "PodCompleted" if done else "ContainersNotReady"
        status: Json = {
            "phase": self.phase,
            "conditions": [
                self._condition("Initialized", self.initialized, "ContainersNotInitialized"),
                self._condition("Ready", ready, not_ready),
                self._condition("ContainersReady", ready, not_ready),
                self._condition("PodScheduled", True),
            ],
            "hostIP": POD_IP,
            "podIP": POD_IP,
            "podIPs": [{"ip": POD_IP}],
            "startTime": self.start_time,
            "initContainerStatuses": [c.status() for c in self.inits],
            "containerStatuses": [c.status() for c in self.mains],
        }
        if self.message:
            status["message"], status["reason"] = self.message, self.reason
        if not self.inits:
            del status["initContainerStatuses"]
        qos = self.pod.get("status", {}).get("qosClass")
        if qos:
            status["qosClass"] = qos
        key = json.dumps(status, sort_keys=True)
        if key == self.reported:
            return
        try:
            self.agent.api.set_pod_status(self.ns, self.pod_name, status)
            self.reported = key
        except ApiException as exc:
            if exc.status != 404:
                LOG.warning("%s/%s: status update failed: %s", self.ns, self.pod_name, exc.reason)

    # -- preparing ----------------------------------------------------------------------------

    def _write_files(
        self, target: Path, files: dict[str, bytes], items: list[Json] | None, mode: int
    ) -> None:
        if items:
            selected = {}
            for it in items:
                if it["key"] not in files:
                    raise ConfigError(f'key "{it["key"]}" not found')
                selected[it["path"]] = (files[it["key"]], it.get("mode", mode))
        else:
            selected = {k: (v, mode) for k, v in files.items()}
        for rel, (data, fmode) in selected.items():
            path = target / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            path.chmod(fmode)

    def _source_files(self, kind: str, name: str, optional: bool) -> dict[str, bytes]:
        try:
            obj = self.agent.api.read(kind, self.ns, name)
        except ConfigError:
            if optional:
                return {}
            raise
        if kind == "secret":
            return _decode(obj.get("data"), True)
        return {**_decode(obj.get("data"), False), **_decode(obj.get("binaryData"), True)}

    def prepare_volumes(self) -> None:
        vol_root = self.state_dir / "volumes"
        for vol in self.pod["spec"].get("volumes", []):
            name = vol["name"]
            target = vol_root / name
            if "hostPath" in vol:
                self.volumes[name] = Path(vol["hostPath"]["path"])
                continue
            target.mkdir(parents=True, exist_ok=True)
            self.volumes[name] = target
            if "emptyDir" in vol:
                continue
            if "secret" in vol:
                src = vol["secret"]
                files = self._source_files("secret", src["secretName"], src.get("optional", False))
                self._write_files(target, files, src.get("items"), src.get("defaultMode", 0o644))
            elif "configMap" in vol:
                src = vol["configMap"]
                files = self._source_files("configmap", src["name"], src.get("optional", False))
                self._write_files(target, files, src.get("items"), src.get("defaultMode", 0o644))
            elif "projected" in vol:
                mode = vol["projected"].get("defaultMode", 0o644)
                for source in vol["projected"].get("sources", []):
                    if "secret" in source:
                        s = source["secret"]
                        files = self._source_files("secret", s["name"], s.get("optional", False))
                        self._write_files(target, files, s.get("items"), mode)
                    elif "configMap" in source:
                        s = source["configMap"]
                        files = self._source_files("configmap", s["name"], s.get("optional", False))
                        self._write_files(target, files, s.get("items"), mode)
                    elif "downwardAPI" in source:
                        self._downward(target, source["downwardAPI"].get("items", []), mode)
                    elif "serviceAccountToken" in source:
                        path = source["serviceAccountToken"]["path"]
                        self._write_files(target, {path: b"not-a-real-token"}, None, mode)
            elif "downwardAPI" in vol:
                self._downward(
                    target,
                    vol["downwardAPI"].get("items", []),
                    vol["downwardAPI"].get("defaultMode", 0o644),
                )
            else:
                kind = next((k for k in vol if k != "name"), "?")
                raise ConfigError(f"volume {name}: type {kind} is not supported by the node agent")

    def _downward(self, target: Path, items: list[Json], mode: int) -> None:
        files = {}
        for it in items:
            ref = it.get("fieldRef", {}).get("fieldPath", "")
            if ref in ("metadata.labels", "metadata.annotations"):
                data = self.pod["metadata"].get(ref.split(".")[1], {})
                lines = (f'{k}="{v}"' for k, v in sorted(data.items()))
                files[it["path"]] = "\n".join(lines).encode()
            else:
                files[it["path"]] = field_value(self.pod, ref).encode()
        self._write_files(target, files, None, mode)

    def allocate_ports(self) -> None:
        for c in self.inits + self.mains:
            for p in c.spec.get("ports", []):
                key = str(p["containerPort"])
                if key not in self.ports:
                    self.ports[key] = free_port()
                if p.get("name"):
                    self.ports[p["name"]] = self.ports[key]
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "ports.json").write_text(json.dumps(self.ports, indent=1))

    def container_env(self, c: Container) -> dict[str, str]:
        spec = c.spec
        assert c.runtime is not None
        env: dict[str, str] = {"HOSTNAME": self.pod_name, "HOME": "/root"}
        env.update(c.runtime.env)
        for src in spec.get("envFrom", []):
            prefix = src.get("prefix", "")
            if "configMapRef" in src:
                ref = src["configMapRef"]
                data = self._source_files("configmap", ref["name"], ref.get("optional", False))
            else:
                ref = src["secretRef"]
                data = self._source_files("secret", ref["name"], ref.get("optional", False))
            env.update({prefix + k: v.decode(errors="replace") for k, v in data.items()})
        for var in spec.get("env", []):
            name = var["name"]
            if "valueFrom" not in var:
                env[name] = expand(var.get("value", ""), env)
                continue
            vf = var["valueFrom"]
            if "secretKeyRef" in vf or "configMapKeyRef" in vf:
                kind = "secret" if "secretKeyRef" in vf else "configmap"
                ref = vf.get("secretKeyRef") or vf["configMapKeyRef"]
                optional = ref.get("optional", False)
                data = self._source_files(kind, ref["name"], optional)
                if ref["key"] not in data:
                    if optional:
                        continue
                    raise ConfigError(
                        f"couldn't find key {ref['key']} in {kind} {self.ns}/{ref['name']}"
                    )
                env[name] = data[ref["key"]].decode(errors="replace")
            elif "fieldRef" in vf:
                env[name] = field_value(self.pod, vf["fieldRef"]["fieldPath"])
            else:
                env[name] = "0"  # resourceFieldRef: no resources here
        ports = [self.ports[str(p["containerPort"])] for p in spec.get("ports", [])]
        if ports:
            env["PORT"] = str(ports[0])
        return env

    # -- processes ----------------------------------------------------------------------------

    def start_container(self, c: Container) -> None:
        spec = c.spec
        try:
            c.runtime = images.resolve(spec.get("image", ""), self.agent.images_dir)
        except images.ImagePullError as exc:
            c.state = {"waiting": {"reason": "ErrImagePull", "message": str(exc)}}
            return
        command = spec.get("command") or c.runtime.entrypoint
        if not command:
            c.state = {
                "waiting": {
                    "reason": "ErrImagePull",
                    "message": f"image {spec.get('image')} is not in the node agent's image "
                    "table and the container gives no command",
                }
            }
            return
        try:
            env = self.container_env(c)
        except ConfigError as exc:
            c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
            return
        argv = [expand(a, env) for a in [*command, *spec.get("args", [])]]
        mounts = []
        for m in spec.get("volumeMounts", []):
            source = self.volumes.get(m["name"])
            if source is None:
                continue
            if m.get("subPath"):
                source = source / m["subPath"]
                if not source.exists():
                    source.mkdir(parents=True)
            mounts.append(
                {
                    "source": str(source),
                    "path": m["mountPath"],
                    "readOnly": m.get("readOnly", False),
                }
            )
        run_spec = {
            "root": str(self.state_dir / "roots" / c.name),
            "image_files": {k: str(v) for k, v in c.runtime.files.items()},
            "mounts": mounts,
            "workingDir": spec.get("workingDir", ""),
            "argv": argv,
            "env": env,
            "keep": sorted({str(images.REPO), sys.prefix, sys.base_prefix}),
            "agent_pid": os.getpid(),
        }
        spec_file = self.state_dir / f"{c.name}.json"
        spec_file.write_text(json.dumps(run_spec))
        self.dir.mkdir(parents=True, exist_ok=True)
        logfile = self.dir / f"{c.name}.log"
        with open(logfile, "ab") as out:
            if c.restarts:
                out.write(f"--- restart {c.restarts} at {now()} ---\n".encode())
                out.flush()
            c.proc = subprocess.Popen(
                [sys.executable, str(RUN_CONTAINER), str(spec_file)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd="/",
            )
        c.started_at = time.monotonic()
        c.state = {"running": {"startedAt": now()}}
        c.ready = False
        c.probe_failures = 0
        LOG.info(
            "%s/%s: started %s %s",
            self.ns,
            self.pod_name,
            "init container" if c.init else "container",
            c.name,
        )

    def finished(self, c: Container) -> int | None:
        """The exit code if the container's process ended (and record it), else None."""
        if c.proc is None or "running" not in c.state:
            return None
        rc = c.proc.poll()
        if rc is None:
            return None
        code = rc if rc >= 0 else 128 - rc
        started = c.state["running"]["startedAt"]
        c.state = {
            "terminated": {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": started,
                "finishedAt": now(),
                "containerID": f"fast-note-node-agent://{c.proc.pid}",
            }
        }
        c.ready = False
        LOG.info("%s/%s: %s exited with %d", self.ns, self.pod_name, c.name, code)
        return code

    def kill(self, c: Container, grace: float) -> None:
        if c.proc is None or c.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(c.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            c.proc.wait(grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(c.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            c.proc.wait(5)

    def backoff(self, c: Container) -> bool:
        """Wait before a restart (CrashLoopBackOff); False if the pod is being stopped."""
        delay = min(10.0, 2.0 ** max(0, c.restarts - 1))
        c.last_state = c.state
        c.state = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {delay:.0f}s restarting failed container={c.name}",
            }
        }
        self.report()
        c.restarts += 1
        return not self.stopping.wait(delay)

    # -- probes -------------------------------------------------------------------------------

    def probe(self, c: Container) -> None:
        probe = c.spec.get("readinessProbe")
        if "running" not in c.state:
            c.ready = False
            return
        if not probe:
            c.ready = True
            return
        if time.monotonic() - c.started_at < min(float(probe.get("initialDelaySeconds", 0)), 2.0):
            return
        ok = True
        timeout = float(probe.get("timeoutSeconds", 1))
        try:
            if "httpGet" in probe:
                get = probe["httpGet"]
                port = self.ports.get(str(get["port"]), get["port"])
                scheme = get.get("scheme", "HTTP").lower()
                url = f"{scheme}://127.0.0.1:{port}{get.get('path', '/')}"
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    ok = 200 <= resp.status < 400
            elif "tcpSocket" in probe:
                port = self.ports.get(str(probe["tcpSocket"]["port"]), probe["tcpSocket"]["port"])
                with socket.create_connection(("127.0.0.1", int(port)), timeout=timeout):
                    pass
        except (OSError, ValueError):
            ok = False
        if ok:
            c.probe_failures = 0
            c.ready = True
        else:
            c.probe_failures += 1
            if not c.ready or c.probe_failures >= int(probe.get("failureThreshold", 3)):
                c.ready = False

    # -- the pod's life -----------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            LOG.exception("%s/%s: runner crashed", self.ns, self.pod_name)
        finally:
            for c in self.inits + self.mains:
                self.kill(c, 0.5)

    def _prepare(self) -> bool:
        while not self.stopping.is_set():
            try:
                self.prepare_volumes()
                self.allocate_ports()
                return True
            except ConfigError as exc:
                for c in self.inits + self.mains:
                    c.state = {
                        "waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}
                    }
                self.report()
                self.stopping.wait(1.0)
        return False

    def _run(self) -> None:
        self.report()
        if not self._prepare():
            return
        for c in self.inits:
            if not self._run_init(c):
                return
        self.initialized = True
        for c in self.mains:
            c.state = {"waiting": {"reason": "ContainerCreating"}}
        self.report()
        for c in self.mains:
            self.start_container(c)
        self.phase = "Running"
        self.report()
        self._supervise()

    def _run_init(self, c: Container) -> bool:
        while not self.stopping.is_set():
            if "running" not in c.state:
                self.start_container(c)
                if "running" not in c.state:  # config or image error: retry
                    self.report()
                    if self.stopping.wait(1.0):
                        return False
                    continue
            self.report()
            while (code := self.finished(c)) is None:
                if self.stopping.wait(0.2):
                    return False
            if code == 0:
                self.report()
                return True
            if self.restart_policy == "Never":
                self.phase = "Failed"
                self.report()
                return False
            if not self.backoff(c):
                return False
        return False

    def _supervise(self) -> None:
        next_probe = 0.0
        while not self.stopping.is_set():
            for c in self.mains:
                if "waiting" in c.state and c.proc is None:  # image/config error: retry
                    self.start_container(c)
                code = self.finished(c)
                if code is None:
                    continue
                restart = self.restart_policy == "Always" or (
                    self.restart_policy == "OnFailure" and code != 0
                )
                if restart:
                    self.report()
                    if not self.backoff(c):
                        return
                    self.start_container(c)
            if time.monotonic() >= next_probe:
                for c in self.mains:
                    self.probe(c)
                next_probe = time.monotonic() + PROBE_SECONDS
            done = [c for c in self.mains if "terminated" in c.state]
            if len(done) == len(self.mains) and self.restart_policy != "Always":
                codes = [c.state["terminated"]["exitCode"] for c in done]
                self.phase = "Succeeded" if all(x == 0 for x in codes) else "Failed"
                self.report()
                return
            self.report()
            self.stopping.wait(0.2)

    def stop(self) -> None:
        """Stop the pod's processes (SIGTERM, then SIGKILL after min(grace, 5 s))."""
        self.stopping.set()
        grace = float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        for c in self.mains + self.inits:
            self.kill(c, min(grace, MAX_GRACE_SECONDS))

    def cleanup(self) -> None:
        shutil.rmtree(self.state_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# The agent
# --------------------------------------------------------------------------------------------


class Agent:
    def __init__(self, api: Api, node: str, workdir: Path, images_dir: Path | None) -> None:
        self.api, self.node, self.workdir, self.images_dir = api, node, workdir, images_dir
        self.runners: dict[str, PodRunner] = {}
        self.stopping = threading.Event()
        self.deleting: set[str] = set()

    def _mine(self, pod: Json) -> bool:
        return bool(pod["spec"].get("nodeName") == self.node)

    def _schedulable(self, pod: Json) -> bool:
        spec = pod["spec"]
        return (
            not spec.get("nodeName")
            and "deletionTimestamp" not in pod["metadata"]
            and spec.get("schedulerName", "default-scheduler") == "default-scheduler"
            and pod.get("status", {}).get("phase", "Pending") == "Pending"
        )

    def sync(self) -> None:
        pods = self.api.list_pods()
        seen = set()
        for pod in pods:
            meta = pod["metadata"]
            uid = meta["uid"]
            if self._schedulable(pod):
                try:
                    self.api.bind(pod, self.node)
                    LOG.info("%s/%s: bound to %s", meta["namespace"], meta["name"], self.node)
                except ApiException as exc:
                    LOG.warning(
                        "%s/%s: bind failed: %s", meta["namespace"], meta["name"], exc.reason
                    )
                continue
            if not self._mine(pod):
                continue
            seen.add(uid)
            runner = self.runners.get(uid)
            if "deletionTimestamp" in meta:
                if uid not in self.deleting:
                    self.deleting.add(uid)
                    threading.Thread(target=self._delete, args=(pod, runner), daemon=True).start()
                continue
            if runner is None and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
                runner = PodRunner(self, pod)
                self.runners[uid] = runner
                runner.start()
        for uid in list(self.runners):
            if uid not in seen:  # removed behind our back (grace 0, or namespace gone)
                runner = self.runners.pop(uid)
                threading.Thread(target=self._forget, args=(runner,), daemon=True).start()
        self.deleting &= seen

    def _delete(self, pod: Json, runner: PodRunner | None) -> None:
        meta = pod["metadata"]
        if runner is not None:
            runner.stop()
            runner.join(10)
            runner.cleanup()
        self.api.delete_pod_now(meta["namespace"], meta["name"], meta["uid"])
        self.runners.pop(meta["uid"], None)
        LOG.info("%s/%s: deleted", meta["namespace"], meta["name"])

    def _forget(self, runner: PodRunner) -> None:
        runner.stop()
        runner.join(10)
        runner.cleanup()

    def run(self) -> None:
        self.api.register_node(self.node)
        LOG.info(
            "node %s registered; running pods (workdir %s, images %s)",
            self.node,
            self.workdir,
            self.images_dir or images.EXAMPLE_MIGRATIONS,
        )
        last_beat = time.monotonic()
        while not self.stopping.is_set():
            try:
                self.sync()
                if time.monotonic() - last_beat > 10:
                    self.api.heartbeat(self.node)
                    last_beat = time.monotonic()
            except Exception as exc:  # the API server may be briefly away; keep going
                LOG.warning("sync failed: %s", exc)
            self.stopping.wait(POLL_SECONDS)

    def shutdown(self) -> None:
        self.stopping.set()
        threads = []
        for runner in list(self.runners.values()):
            t = threading.Thread(target=runner.stop, daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(MAX_GRACE_SECONDS + 5)
        self.api.delete_node(self.node)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fast-note e2e node agent (a kubelet test double)")
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    parser.add_argument("--node-name", default="fast-note-e2e-node")
    parser.add_argument(
        "--workdir", type=Path, required=True, help="container logs, ports and volumes go here"
    )
    parser.add_argument(
        "--images",
        type=Path,
        default=None,
        help="the images folder (<images>/<name>/<tag>/…); see images.py",
    )
    args = parser.parse_args(argv)
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if os.geteuid() != 0:
        parser.error("the node agent needs root (mount namespaces for the pods' volumes)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    agent = Agent(
        Api(args.kubeconfig),
        args.node_name,
        args.workdir.resolve(),
        args.images.resolve() if args.images else None,
    )
    stop: Callable[..., None] = lambda *_: agent.stopping.set()  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        agent.run()
    finally:
        agent.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
