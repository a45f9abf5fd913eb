"""Helpers of the end-to-end tests: the cluster, kubectl, helm, the app images and the database.

The tests run against the local control plane (``testkit/kube/cluster.py``) by default; with
``FAST_NOTE_E2E_KUBECONFIG`` they run against that cluster instead (see docs/e2e.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testkit.database import Database
from testkit.kube import images
from testkit.kube.cluster import LocalCluster

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "fast-note"
TOOLS = REPO / ".tools" / "bin"
KUBECTL = TOOLS / "kubectl"
EXAMPLES = images.EXAMPLE_MIGRATIONS
HELMS = {"helm3": TOOLS / "helm3", "helm4": TOOLS / "helm4"}
RELEASE = "notes"
APP_REPOSITORY = os.environ.get("FAST_NOTE_E2E_APP_REPOSITORY", "fast-note")
MIGRATOR_REPOSITORY = os.environ.get("FAST_NOTE_E2E_MIGRATOR_REPOSITORY", "fast-note-migrate")
MIGRATOR_TAG = os.environ.get("FAST_NOTE_E2E_MIGRATOR_TAG", "")

Json = dict[str, Any]


def example_migrations() -> list[str]:
    """The example migration folder names, oldest first."""
    return sorted(p.name for p in EXAMPLES.iterdir() if (p / "migration.sql").is_file())


@dataclass
class Result:
    argv: Sequence[str | Path]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def __str__(self) -> str:
        command = " ".join(map(str, self.argv))
        return (
            f"$ {command}\n(exit {self.returncode} after {self.seconds:.1f} s)\n"
            f"{self.stdout}{self.stderr}"
        )


def run(
    argv: Sequence[str | Path],
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 600,
    input: str | None = None,
) -> Result:
    t0 = time.monotonic()
    proc = subprocess.run(
        list(map(str, argv)), env=env, capture_output=True, text=True, timeout=timeout, input=input
    )
    result = Result(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)
    print(f"$ {' '.join(map(str, argv))}  -> exit {proc.returncode} in {result.seconds:.1f} s")
    if check and not result.ok:
        raise AssertionError(str(result))
    return result


@dataclass
class Kube:
    """kubectl against the test cluster, in one namespace."""

    kubeconfig: Path
    namespace: str

    def env(self) -> dict[str, str]:
        return dict(os.environ, KUBECONFIG=str(self.kubeconfig))

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> Result:
        return run([KUBECTL, "-n", self.namespace, *args], env=self.env(), check=check, input=input)

    def get(self, kind: str, name: str = "", selector: str = "") -> Json:
        args = ["get", kind, *([name] if name else []), "-o", "json"]
        if selector:
            args += ["-l", selector]
        obj: Json = json.loads(self.kubectl(*args).stdout)
        return obj

    def items(self, kind: str, selector: str = "") -> list[Json]:
        return list(self.get(kind, selector=selector)["items"])

    def apply(self, manifest: str) -> None:
        self.kubectl("apply", "-f", "-", input=manifest)

    def app_pods(self, release: str) -> list[Json]:
        pods = self.items("pods", f"app.kubernetes.io/instance={release}")
        return [
            p
            for p in pods
            if p["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "app"
            and "deletionTimestamp" not in p["metadata"]
        ]

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 90) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.5)


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

    def dump(self, kube: Kube) -> None:
        """Print the namespace's objects, events, pod states and container logs (a failure)."""
        print(f"\n===== diagnostics of namespace {kube.namespace} =====")
        for args in (
            ["get", "all,events", "-o", "wide"],
            [
                "get",
                "pods",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name}: "
                "{.status.phase} init={.status.initContainerStatuses[*].state} "
                "main={.status.containerStatuses[*].state}{'\\n'}{end}",
            ],
        ):
            print(kube.kubectl(*args, check=False))
        for name, text in self.container_logs(kube.namespace).items():
            print(f"----- log {name}\n{text[-4000:]}")
        if self.local is not None:
            agent_log = self.local.workdir / "logs" / "node-agent.log"
            lines = agent_log.read_text(errors="replace").splitlines()
            print("----- node agent (last 30 lines)\n" + "\n".join(lines[-30:]))


def pod_ready(pod: Json) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def pod_image(pod: Json, container: str = "app") -> str:
    return str(next(c["image"] for c in pod["spec"]["containers"] if c["name"] == container))


@dataclass
class Helm:
    """One Helm major (helm3 or helm4) against the test cluster."""

    name: str
    kube: Kube
    home: Path

    @property
    def binary(self) -> Path:
        return HELMS[self.name]

    def env(self) -> dict[str, str]:
        return dict(
            self.kube.env(),
            HELM_CACHE_HOME=str(self.home / "cache"),
            HELM_CONFIG_HOME=str(self.home / "config"),
            HELM_DATA_HOME=str(self.home / "data"),
        )

    def __call__(self, *args: str, check: bool = True, timeout: float = 600) -> Result:
        return run(
            [self.binary, "-n", self.kube.namespace, *args],
            env=self.env(),
            check=check,
            timeout=timeout,
        )

    def upgrade(
        self,
        release: str,
        values: dict[str, Any],
        *extra: str,
        check: bool = True,
        wait: bool = True,
        timeout: str = "3m",
    ) -> Result:
        values_file = self.home / f"values-{release}-{time.monotonic_ns()}.json"
        values_file.write_text(json.dumps(values))
        args = [
            "upgrade",
            "--install",
            release,
            str(CHART),
            "-f",
            str(values_file),
            "--timeout",
            timeout,
            *extra,
        ]
        if wait:
            args.append("--wait")
        return self(*args, check=check)

    def test(self, release: str, check: bool = True) -> Result:
        return self("test", release, "--timeout", "2m", check=check)

    def history(self, release: str) -> list[Json]:
        return list(json.loads(self("history", release, "-o", "json").stdout))


def migrate(
    database: Database, verb: str, *args: str, migrations: Path | None = None, check: bool = True
) -> Result:
    """Run the migrator against ``database``, as an operator would from a laptop or a debug
    pod (the installed ``fast-note-migrate``, configured by the environment)."""
    env = dict(os.environ, DATABASE_URL=database.url())
    if migrations is not None:
        env["MIGRATIONS_DIR"] = str(migrations)
    binary = REPO / ".venv" / "bin" / "fast-note-migrate"
    return run([binary, verb, *args], env=env, check=check)


@dataclass
class Images:
    """The node agent's image table: tests say which migrations an app image tag carries."""

    root: Path
    defined: dict[str, Path] = field(default_factory=dict)

    def app(self, tag: str, migrations: dict[str, str | Path]) -> str:
        """Define ``fast-note:<tag>`` with these migrations (name -> SQL or example folder)."""
        ref = f"{images.APP_IMAGE}:{tag}"
        self.defined[tag] = images.define_image(self.root, ref, migrations)
        return tag

    def examples(
        self, tag: str, count: int | None = None, extra: dict[str, str] | None = None
    ) -> str:
        """``fast-note:<tag>`` with the first ``count`` example migrations (+ extra ones)."""
        names = example_migrations()[:count]
        chosen: dict[str, str | Path] = {n: EXAMPLES / n for n in names}
        chosen.update(extra or {})
        return self.app(tag, chosen)

    def migrations_dir(self, tag: str) -> Path:
        return self.defined[tag]


def release_values(strategy: str, tag: str, replicas: int = 2, **extra: Any) -> dict[str, Any]:
    """Chart values of a test release: the test's database Secret, the given image tag."""
    result: dict[str, Any] = {
        "image": {"repository": APP_REPOSITORY, "tag": tag},
        "replicaCount": replicas,
        "database": {"existingSecret": "fast-note-db", "existingSecretKey": "database-url"},
        "migration": {
            "strategy": strategy,
            "image": {"repository": MIGRATOR_REPOSITORY, "tag": MIGRATOR_TAG},
            "lockTimeout": "1m",
            "connectTimeout": "30s",
            "wait": {"timeout": "2m"},
            # a failed migration fails the Job at once (the default 3 retries cost ~70 s of
            # Job back-off and end the same way: exit 4, the history is blocked)
            "job": {"backoffLimit": 0},
        },
    }
    for key, value in extra.items():
        result[key] = value
    return result


def migration_jobs(kube: Kube, release: str = RELEASE) -> list[dict[str, Any]]:
    return [
        j
        for j in kube.items("jobs", f"app.kubernetes.io/instance={release}")
        if j["metadata"]["labels"].get("app.kubernetes.io/component") == "migration"
    ]
