"""Wait until a Deployment's rollout is complete and no pod of an older ReplicaSet remains.

The contract phase runs this before it applies anything: a post-upgrade hook runs as soon
as Helm has sent the new manifests (and without ``helm --wait``, while old pods still
serve). The decision (``decide``) works on plain data and is unit-tested; ``wait`` reads
the objects from the API server and needs only get/list on deployments, replicasets and
pods in the namespace. No client library: in a pod (the chart's contract Job) it asks the
API server over HTTPS with the standard library, the service account's token and CA;
outside a cluster it asks through ``kubectl get --raw``, which brings the kubeconfig and
every way of logging in that kubectl knows (exec plugins, client certificates, tokens).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from .durations import format_duration
from .errors import ConfigError, MigrateError, NotUpToDate

log = logging.getLogger(__name__)

REVISION = "deployment.kubernetes.io/revision"
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
PROGRESS_EVERY = 10.0
REQUEST_TIMEOUT = 30.0
Json = dict[str, Any]


@dataclass(frozen=True)
class DeploymentState:
    name: str
    uid: str
    generation: int
    observed_generation: int
    replicas: int  # spec.replicas
    updated_replicas: int
    current_replicas: int  # status.replicas: pods of every ReplicaSet, not terminating
    available_replicas: int
    deadline_exceeded: bool = False  # Progressing condition, reason ProgressDeadlineExceeded


@dataclass(frozen=True)
class ReplicaSetState:
    name: str
    owner_uid: str | None
    revision: int


@dataclass(frozen=True)
class PodState:
    name: str
    replicaset: str | None  # the owning ReplicaSet's name
    terminating: bool = False


@dataclass(frozen=True)
class Verdict:
    done: bool
    message: str
    failed: bool = False


def decide(
    deployment: DeploymentState, replicasets: list[ReplicaSetState], pods: list[PodState]
) -> Verdict:
    """Is the rollout complete, with no pod of an older ReplicaSet left (even terminating)?"""
    d = deployment
    if d.observed_generation < d.generation:
        return Verdict(False, f"waiting for the controller to see generation {d.generation}")
    if d.deadline_exceeded:
        return Verdict(
            False,
            f"deployment {d.name} exceeded its progress deadline: the new pods do not become ready",
            failed=True,
        )
    if d.updated_replicas < d.replicas:
        return Verdict(False, f"{d.updated_replicas} of {d.replicas} new pods created")
    if d.current_replicas > d.updated_replicas:
        old = d.current_replicas - d.updated_replicas
        return Verdict(False, f"{old} old pod(s) still running")
    if d.available_replicas < d.updated_replicas:
        return Verdict(False, f"{d.available_replicas} of {d.updated_replicas} new pods available")
    owned = [rs for rs in replicasets if rs.owner_uid == d.uid]
    if not owned:
        return Verdict(d.replicas == 0, "no ReplicaSet yet")
    newest = max(owned, key=lambda rs: rs.revision)
    older = {rs.name for rs in owned if rs.name != newest.name}
    leftovers = [p for p in pods if p.replicaset in older]
    if leftovers:
        states = ", ".join(
            f"{p.name}{' (terminating)' if p.terminating else ''}" for p in leftovers[:3]
        )
        return Verdict(False, f"{len(leftovers)} pod(s) of an older ReplicaSet remain: {states}")
    return Verdict(
        True,
        f"deployment {d.name} rolled out: {d.updated_replicas} pod(s) of "
        f"ReplicaSet {newest.name}, none of an older one",
    )


# Reading the cluster ---------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    deployment: str
    namespace: str | None = None
    timeout: float = 600.0
    interval: float = 2.0


def default_namespace() -> str | None:
    """POD_NAMESPACE, or the service account's namespace in a pod; None: kubeconfig's."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return (SERVICE_ACCOUNT / "namespace").read_text().strip() or None
    except OSError:
        return None


class ApiError(Exception):
    """The API server answered with an error; ``status`` is its HTTP status, if known."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Api(Protocol):
    def get(self, path: str, query: Mapping[str, str] | None = None) -> Json:
        """GET ``path`` of the API server, decoded."""
        ...


@dataclass(frozen=True)
class InCluster:
    """The API server of the pod's own cluster, with the service account's token (read
    again for each request: the kubelet rotates it) and CA."""

    server: str
    folder: Path  # the service account's token and ca.crt

    def get(self, path: str, query: Mapping[str, str] | None = None) -> Json:
        token = (self.folder / "token").read_text().strip()
        context = ssl.create_default_context(cafile=str(self.folder / "ca.crt"))
        # No proxy from the environment: the API server is an address inside the cluster.
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
        url = self.server + path + (f"?{urlencode(query)}" if query else "")
        request = urllib.request.Request(
            url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
        )
        try:
            with opener.open(request, timeout=REQUEST_TIMEOUT) as response:
                return dict(json.load(response))
        except urllib.error.HTTPError as exc:
            raise ApiError(f"HTTP {exc.code} {exc.reason} for {path}", exc.code) from None


@dataclass(frozen=True)
class Kubectl:
    """Outside a cluster: ``kubectl get --raw``, with kubectl's kubeconfig and log-in."""

    program: str

    def get(self, path: str, query: Mapping[str, str] | None = None) -> Json:
        url = path + (f"?{urlencode(query)}" if query else "")
        out = self._run("get", "--raw", url, f"--request-timeout={REQUEST_TIMEOUT:.0f}s")
        return dict(json.loads(out))

    def namespace(self) -> str | None:
        """The current context's namespace."""
        return self._run("config", "view", "--minify", "--output=jsonpath={..namespace}") or None

    def _run(self, *args: str) -> str:
        result = subprocess.run([self.program, *args], capture_output=True, text=True)
        if result.returncode != 0:
            message = (result.stderr.strip().splitlines() or ["no output"])[-1]
            status = next((code for word, code in _KUBECTL_STATUS if word in message), None)
            raise ApiError(f"kubectl {args[0]} {args[1]}: {message}", status)
        return result.stdout.strip()


_KUBECTL_STATUS = (("(NotFound)", 404), ("(Forbidden)", 403), ("(Unauthorized)", 401))


def connect() -> tuple[Api, str | None]:
    """The API server (in a pod first, else kubectl's) and the kubeconfig's namespace."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    if host:
        missing = [n for n in ("token", "ca.crt") if not (SERVICE_ACCOUNT / n).is_file()]
        if missing:
            raise ConfigError(
                f"--wait-for-rollout in a pod needs its service account's "
                f"{' and '.join(missing)} in {SERVICE_ACCOUNT}, which are not there",
                hint="run the contract Job with automountServiceAccountToken: true "
                "(the chart's contract ServiceAccount sets it)",
            )
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        server = f"https://{f'[{host}]' if ':' in host else host}:{port}"
        return InCluster(server, SERVICE_ACCOUNT), None
    configs = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    if not any(Path(p).is_file() for p in configs.split(os.pathsep) if p):
        raise ConfigError(
            "no Kubernetes configuration found: not in a pod (KUBERNETES_SERVICE_HOST is "
            f"not set) and no kubeconfig at {configs}",
            hint="run in a pod of the cluster, or set KUBECONFIG to your kubeconfig",
        )
    program = shutil.which("kubectl")
    if program is None:
        raise ConfigError(
            "outside a pod, --wait-for-rollout reads the cluster with kubectl, "
            "which is not on PATH",
            hint="install kubectl (it uses your kubeconfig), or run the contract phase "
            "in a pod of the cluster (the chart's contract Job)",
        )
    kubectl = Kubectl(program)
    try:
        return kubectl, kubectl.namespace()
    except ApiError as exc:
        raise ConfigError(
            f"no Kubernetes configuration found: {exc}",
            hint="check your kubeconfig (kubectl config current-context)",
        ) from None


def _owner(meta: Json, kind: str) -> tuple[str | None, str | None]:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == kind:
            return ref.get("name"), ref.get("uid")
    return None, None


def _selector(deployment: Json) -> str:
    labels = deployment["spec"]["selector"].get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def read(
    api: Api, name: str, namespace: str
) -> tuple[DeploymentState, list[ReplicaSetState], list[PodState]]:
    """The Deployment, its ReplicaSets and their pods, as plain data."""
    ns = quote(namespace, safe="")
    dep = api.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{quote(name, safe='')}")
    meta, spec, status = dep["metadata"], dep["spec"], dep.get("status") or {}
    progressing = [c for c in status.get("conditions") or [] if c.get("type") == "Progressing"]
    state = DeploymentState(
        name=name,
        uid=meta["uid"],
        generation=meta.get("generation") or 0,
        observed_generation=status.get("observedGeneration") or 0,
        replicas=1 if spec.get("replicas") is None else spec["replicas"],
        updated_replicas=status.get("updatedReplicas") or 0,
        current_replicas=status.get("replicas") or 0,
        available_replicas=status.get("availableReplicas") or 0,
        deadline_exceeded=any(c.get("reason") == "ProgressDeadlineExceeded" for c in progressing),
    )
    query = {"labelSelector": _selector(dep)}
    replicasets = [
        ReplicaSetState(
            rs["metadata"]["name"],
            _owner(rs["metadata"], "Deployment")[1],
            int((rs["metadata"].get("annotations") or {}).get(REVISION, "0") or 0),
        )
        for rs in api.get(f"/apis/apps/v1/namespaces/{ns}/replicasets", query)["items"]
    ]
    pods = [
        PodState(
            p["metadata"]["name"],
            _owner(p["metadata"], "ReplicaSet")[0],
            p["metadata"].get("deletionTimestamp") is not None,
        )
        for p in api.get(f"/api/v1/namespaces/{ns}/pods", query)["items"]
    ]
    return state, replicasets, pods


def _api_error(exc: Exception, target: Target, namespace: str) -> MigrateError | None:
    status = getattr(exc, "status", None)
    if status == 404:
        return ConfigError(
            f"deployment {target.deployment} not found in namespace {namespace}",
            hint="check --wait-for-rollout and --namespace",
        )
    if status in (401, 403):
        return ConfigError(
            f"not allowed to read deployment {target.deployment} in namespace {namespace} "
            f"(HTTP {status})",
            hint="give the migrator's ServiceAccount a Role with get/list on deployments, "
            "replicasets (apps) and pods in this namespace",
        )
    return None


def wait(
    target: Target,
    *,
    sleep: Callable[[float], None] = time.sleep,
    fetch: Callable[[str, str], tuple[DeploymentState, list[ReplicaSetState], list[PodState]]]
    | None = None,
) -> None:
    """Block until ``decide`` says done; raise NotUpToDate (exit 3) after the timeout."""
    namespace = target.namespace or default_namespace()
    if fetch is None:
        api, kube_namespace = connect()
        namespace = namespace or kube_namespace

        def fetch(
            name: str, ns: str
        ) -> tuple[DeploymentState, list[ReplicaSetState], list[PodState]]:
            return read(api, name, ns)

    namespace = namespace or "default"
    started = time.monotonic()
    last_logged = -PROGRESS_EVERY
    log.info(
        "waiting for deployment %s in namespace %s to finish its rollout (at most %s)",
        target.deployment,
        namespace,
        format_duration(target.timeout),
    )
    while True:
        try:
            verdict = decide(*fetch(target.deployment, namespace))
        except MigrateError:
            raise
        except Exception as exc:
            error = _api_error(exc, target, namespace)
            if error is not None:
                raise error from None
            verdict = Verdict(False, f"cannot read the rollout yet: {exc}")
        waited = time.monotonic() - started
        if verdict.done:
            log.info("%s (after %s)", verdict.message, format_duration(waited))
            return
        if verdict.failed:
            raise MigrateError(
                f"{verdict.message}; the contract migrations are not applied",
                hint="fix the new release (kubectl describe deployment "
                f"{target.deployment}), or roll back with helm rollback",
            )
        if waited >= target.timeout:
            raise NotUpToDate(
                f"timed out after {format_duration(waited)} waiting for deployment "
                f"{target.deployment} to roll out: {verdict.message}; the contract "
                "migrations are not applied",
                hint="check the new pods (kubectl rollout status deployment/"
                f"{target.deployment}); raise --rollout-timeout; run "
                "`deploy --phase contract` again once the rollout is done",
            )
        if waited - last_logged >= PROGRESS_EVERY:
            log.info("rollout of %s not done yet: %s", target.deployment, verdict.message)
            last_logged = waited
        sleep(min(target.interval, max(0.05, target.timeout - waited)))
