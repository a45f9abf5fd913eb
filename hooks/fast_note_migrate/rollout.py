"""Wait until a Deployment's rollout is complete and no pod of an older ReplicaSet remains.

The contract phase runs this before it applies anything: a post-upgrade hook runs as soon
as Helm has sent the new manifests (and without ``helm --wait``, while old pods still
serve). The decision (``decide``) works on plain data and is unit-tested; ``wait`` reads
the objects with the ``kubernetes`` client (extra ``[kubernetes]``, imported lazily) and
needs only get/list on deployments, replicasets and pods in the namespace.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .durations import format_duration
from .errors import ConfigError, MigrateError, NotUpToDate

log = logging.getLogger(__name__)

REVISION = "deployment.kubernetes.io/revision"
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
PROGRESS_EVERY = 10.0
INSTALL_HINT = (
    "install the Kubernetes client: pip install 'fast-note-migrate[kubernetes]'; "
    "or drop --wait-for-rollout and make sure no old pod still serves"
)


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
        return NAMESPACE_FILE.read_text().strip() or None
    except OSError:
        return None


def _client() -> tuple[Any, Any, str]:
    """AppsV1Api, CoreV1Api and the kubeconfig's namespace (in-cluster first)."""
    try:
        from kubernetes import client, config  # type: ignore[import-untyped]
    except ImportError:
        raise ConfigError(
            "--wait-for-rollout needs the kubernetes Python client, which is not installed",
            hint=INSTALL_HINT,
        ) from None
    namespace = "default"
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
    else:
        try:
            config.load_kube_config()
            _, context = config.list_kube_config_contexts()
            namespace = (context or {}).get("context", {}).get("namespace") or namespace
        except Exception as exc:
            raise ConfigError(
                f"no Kubernetes configuration found: {exc}",
                hint="run in a pod (in-cluster config) or set KUBECONFIG",
            ) from None
    return client.AppsV1Api(), client.CoreV1Api(), namespace


def _owner(meta: Any, kind: str) -> tuple[str | None, str | None]:
    for ref in meta.owner_references or []:
        if ref.kind == kind:
            return ref.name, ref.uid
    return None, None


def _selector(deployment: Any) -> str:
    labels = deployment.spec.selector.match_labels or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def read(
    apps: Any, core: Any, name: str, namespace: str
) -> tuple[DeploymentState, list[ReplicaSetState], list[PodState]]:
    """The Deployment, its ReplicaSets and their pods, as plain data."""
    dep = apps.read_namespaced_deployment(name, namespace)
    status = dep.status
    progressing = [c for c in status.conditions or [] if c.type == "Progressing"]
    state = DeploymentState(
        name=name,
        uid=dep.metadata.uid,
        generation=dep.metadata.generation or 0,
        observed_generation=status.observed_generation or 0,
        replicas=1 if dep.spec.replicas is None else dep.spec.replicas,
        updated_replicas=status.updated_replicas or 0,
        current_replicas=status.replicas or 0,
        available_replicas=status.available_replicas or 0,
        deadline_exceeded=any(c.reason == "ProgressDeadlineExceeded" for c in progressing),
    )
    selector = _selector(dep)
    replicasets = [
        ReplicaSetState(
            rs.metadata.name,
            _owner(rs.metadata, "Deployment")[1],
            int((rs.metadata.annotations or {}).get(REVISION, "0") or 0),
        )
        for rs in apps.list_namespaced_replica_set(namespace, label_selector=selector).items
    ]
    pods = [
        PodState(
            p.metadata.name,
            _owner(p.metadata, "ReplicaSet")[0],
            p.metadata.deletion_timestamp is not None,
        )
        for p in core.list_namespaced_pod(namespace, label_selector=selector).items
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
        apps, core, kube_namespace = _client()
        namespace = namespace or kube_namespace

        def fetch(
            name: str, ns: str
        ) -> tuple[DeploymentState, list[ReplicaSetState], list[PodState]]:
            return read(apps, core, name, ns)

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
