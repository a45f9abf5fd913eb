"""Render the fast-note chart with real Helm 3 and Helm 4 and validate what comes out.

`render_chart(values, helm=...)` runs `helm template`, parses every object and validates it with
kubernetes-validate (strict: unknown fields fail) against the Kubernetes schemas of the oldest and
newest versions we support. Renders and validations are cached: many tests share one render.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from fast_note_migrate import __version__

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "fast-note"
# Where the releases publish the images (the values' defaults; tools/release.py checks them). The
# chart's appVersion is the project version (tests/test_version.py), the images' default tag.
APP_REPOSITORY = "ghcr.io/fast-note/fast-note-example"
MIGRATOR_REPOSITORY = "ghcr.io/fast-note/fast-note-migrate"
MIGRATOR_IMAGE = f"{MIGRATOR_REPOSITORY}:{__version__}"
HELM_BIN = {"helm3": ROOT / ".tools" / "bin" / "helm3", "helm4": ROOT / ".tools" / "bin" / "helm4"}
HELMS = tuple(HELM_BIN)
# Oldest and newest Kubernetes we validate against (kubernetes-validate 1.37 ships 1.25-1.37).
KUBE_VERSIONS = ("1.29", "1.35")
# Renders aimed at clusters older than kubernetes-validate knows (the e2e API server is 1.20)
# are checked against the oldest schema it has, reading beta APIs removed in 1.25 as GA.
OLD_KUBE_SCHEMA = "1.25"
OLD_API_AS = {"policy/v1beta1": "policy/v1"}
# APIs gone from current Kubernetes, rendered for old clusters only: checked at OLD_KUBE_SCHEMA.
LEGACY_APIS = {"policy/v1beta1", "autoscaling/v2beta2"}
STRATEGIES = ("hook", "initContainer", "job", "none")
VALUES_FILES = tuple(sorted((ROOT / "values").glob("*.yaml")))
CI_VALUES_FILES = tuple(sorted((CHART / "ci").glob("*-values.yaml")))
DB_URL = "postgresql://fastnote:secret@postgres:5432/fastnote"
RELEASE = "fast-note"
NAMESPACE = "fast-note-prod"
# The one pod that uses the Kubernetes API, with its own ServiceAccount and read-only Role
# (templates/migration/contract-serviceaccount.yaml, contract-role.yaml): the contract Job waiting
# for the rollout.
API_POD = f"Job/{RELEASE}-migrate-contract"
API_SERVICE_ACCOUNT = f"{RELEASE}-migrate-contract"


class RenderError(Exception):
    """`helm template` failed; the message is Helm's stderr."""


@functools.cache
def _helm_template(
    helm: str,
    values_json: str,
    values_files: tuple[str, ...],
    kube_version: str | None,
    api_versions: tuple[str, ...],
) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as extra:
        extra.write(values_json)
        extra.flush()
        cmd = [str(HELM_BIN[helm]), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
        for path in values_files:
            cmd += ["-f", path]
        cmd += ["-f", extra.name]
        if kube_version:
            cmd += ["--kube-version", kube_version]
        for api in api_versions:
            cmd += ["--api-versions", api]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RenderError(proc.stderr.strip())
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return json.dumps(docs)


@functools.cache
def _validate(doc_json: str, version: str) -> None:
    doc = json.loads(doc_json)
    if version == OLD_KUBE_SCHEMA:
        doc["apiVersion"] = OLD_API_AS.get(doc["apiVersion"], doc["apiVersion"])
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(p) for p in exc.path)
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        raise AssertionError(
            f"{name} invalid for Kubernetes {version} at {where}: {exc.message}"
        ) from None


def render_chart(
    values: dict[str, Any] | None = None,
    *,
    helm: str = "helm3",
    values_files: Sequence[str | Path] = (),
    kube_version: str | None = None,
    api_versions: Sequence[str] = (),
    validate: bool = True,
) -> list[dict[str, Any]]:
    """Render the chart (values as an extra -f file, last) and return its objects.

    Every object is validated against KUBE_VERSIONS (or the oldest schema when kube_version is
    older than 1.25) unless validate=False. Raises RenderError when Helm refuses the values.
    """
    raw = _helm_template(
        helm,
        json.dumps(values or {}, sort_keys=True),
        tuple(str(p) for p in values_files),
        kube_version,
        tuple(api_versions),
    )
    docs: list[dict[str, Any]] = json.loads(raw)
    if validate:
        old = kube_version is not None and _minor(kube_version) < _minor(OLD_KUBE_SCHEMA)
        for doc in docs:
            doc_json = json.dumps(doc, sort_keys=True)
            legacy = old or doc["apiVersion"] in LEGACY_APIS
            for version in (OLD_KUBE_SCHEMA,) if legacy else KUBE_VERSIONS:
                _validate(doc_json, version)
    return docs


def _minor(version: str) -> tuple[int, int]:
    major, minor = re.match(r"v?(\d+)\.(\d+)", version).groups()  # type: ignore[union-attr]
    return int(major), int(minor)


def db(**values: Any) -> dict[str, Any]:
    """Values with a database URL (dev style) merged with the given top-level values."""
    return {"database": {"url": DB_URL}, **values}


def strategy_values(strategy: str, **migration: Any) -> dict[str, Any]:
    """Values selecting a strategy, with a database URL."""
    return db(migration={"strategy": strategy, **migration})


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def component(docs: list[dict[str, Any]], kind: str, name: str) -> list[dict[str, Any]]:
    """Objects of a kind whose app.kubernetes.io/component label is `name`."""
    return [
        d
        for d in of_kind(docs, kind)
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == name
    ]


def only(docs: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(docs) == 1, (
        f"expected exactly one object, got {[d['metadata']['name'] for d in docs]}"
    )
    return docs[0]


def deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return only(of_kind(docs, "Deployment"))


def annotations(doc: dict[str, Any]) -> dict[str, str]:
    return doc["metadata"].get("annotations") or {}


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod spec in the render (Deployment and Job templates, bare Pods) with a label."""
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "Pod":
            yield name, doc["spec"]
        elif doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            yield name, doc["spec"]["template"]["spec"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in containers(spec) if c["name"] == name]
    assert found, f"no container {name!r}; have {[c['name'] for c in containers(spec)]}"
    return found[0]


def env_value(ctr: dict[str, Any], name: str) -> Any:
    for var in ctr.get("env") or []:
        if var["name"] == name:
            return var.get("value", var.get("valueFrom"))
    raise AssertionError(f"container {ctr['name']} has no env {name}")


# Volume types the Pod Security Standard "restricted" allows.
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def pss_restricted_violations(name: str, spec: dict[str, Any]) -> list[str]:
    """What in one pod spec breaks Pod Security Standard "restricted" or our extra rules
    (read-only root file system with /tmp on an emptyDir, TCP ports, no API token except for
    API_POD under its own API_SERVICE_ACCOUNT)."""
    bad: list[str] = []
    pod_sc = spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            bad.append(f"{name}: {flag}")
    api_pod = name == API_POD and spec.get("serviceAccountName") == API_SERVICE_ACCOUNT
    if spec.get("automountServiceAccountToken") is not False and not api_pod:
        bad.append(f"{name}: automountServiceAccountToken is not false")
    if pod_sc.get("runAsUser") == 0:
        bad.append(f"{name}: runAsUser 0")
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    for vol in volumes.values():
        kinds = set(vol) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            bad.append(f"{name}: volume {vol['name']} of type {sorted(kinds)}")
    for ctr in containers(spec):
        where = f"{name} container {ctr['name']}"
        sc = ctr.get("securityContext") or {}
        if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
            bad.append(f"{where}: runAsNonRoot not true")
        if sc.get("runAsUser") == 0:
            bad.append(f"{where}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{where}: seccompProfile {seccomp!r}")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{where}: allowPrivilegeEscalation not false")
        if sc.get("privileged"):
            bad.append(f"{where}: privileged")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad.append(f"{where}: capabilities do not drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            bad.append(f"{where}: adds capabilities {caps['add']}")
        if sc.get("readOnlyRootFilesystem") is not True:
            bad.append(f"{where}: readOnlyRootFilesystem not true")
        tmp = [m for m in ctr.get("volumeMounts") or [] if m["mountPath"] == "/tmp"]
        if not tmp or "emptyDir" not in volumes.get(tmp[0]["name"], {}):
            bad.append(f"{where}: /tmp is not an emptyDir")
        for port in ctr.get("ports") or []:
            if port.get("protocol") != "TCP":
                bad.append(f"{where}: port {port.get('name')} has no protocol: TCP")
            if port.get("hostPort"):
                bad.append(f"{where}: hostPort")
    return bad


def all_violations(docs: list[dict[str, Any]]) -> list[str]:
    return [v for name, spec in pod_specs(docs) for v in pss_restricted_violations(name, spec)]


@functools.cache
def render_notes(values_json: str = "{}", values_file: str | None = None) -> str:
    """NOTES.txt as `helm install --dry-run=client` prints it. Helm 4 only: Helm 3.19's install
    dry run still dials the cluster."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as extra:
        extra.write(values_json)
        extra.flush()
        cmd = [
            str(HELM_BIN["helm4"]),
            "install",
            RELEASE,
            str(CHART),
            "--namespace",
            NAMESPACE,
            "--dry-run=client",
            "--hide-secret",
        ]
        if values_file:
            cmd += ["-f", values_file]
        cmd += ["-f", extra.name]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RenderError(proc.stderr.strip())
    return proc.stdout.split("\nNOTES:\n", 1)[1]
