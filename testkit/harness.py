"""Helpers of the end-to-end tests: the cluster, kubectl, helm, the app images and the database.

The tests run against the local control plane (``testkit/kube/cluster.py``) by default; with
``FAST_NOTE_E2E_KUBECONFIG`` they run against that cluster instead (see docs/e2e.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg.conninfo

from testkit.database import Database
from testkit.kube.cluster import LocalCluster
from testkit.migrations_folder import PRISMA_EXAMPLES

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "fast-note"
TOOLS = REPO / ".tools" / "bin"
KUBECTL = TOOLS / "kubectl"
EXAMPLES = PRISMA_EXAMPLES
HELMS = {"helm3": TOOLS / "helm3", "helm4": TOOLS / "helm4"}
RELEASE = "notes"
POD_DATABASE_PORT = 5432  # where pods of the local node find PostgreSQL (on the bridge)
APP_REPOSITORY = os.environ.get("FAST_NOTE_E2E_APP_REPOSITORY", "fast-note")
MIGRATOR_REPOSITORY = os.environ.get("FAST_NOTE_E2E_MIGRATOR_REPOSITORY", "fast-note-migrate")
MIGRATOR_TAG = os.environ.get("FAST_NOTE_E2E_MIGRATOR_TAG", "")

Json = dict[str, Any]
COPY_WITH_NODE = [
    "node",
    "-e",
    "require('fs').cpSync(process.env.MIGRATIONS_SOURCE, process.env.MIGRATIONS_DIR,"
    " {recursive: true})",
]


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
    """What the tests need from a cluster: a kubeconfig, how pods reach the database, logs."""

    def __init__(self, kubeconfig: Path, local: LocalCluster | None) -> None:
        self.kubeconfig = kubeconfig
        self.local = local
        self.database_address: str | None = None  # host:port of PostgreSQL as pods see it

    def reach_database_from_pods(self, admin_url: str) -> None:
        """Locally, relay the host's PostgreSQL onto the node's bridge for the pods."""
        if self.local is None or self.local.local_node is None:
            return
        port = psycopg.conninfo.conninfo_to_dict(admin_url).get("port") or 5432
        node = self.local.local_node
        self.database_address = node.relay_to_pods("postgres", int(port), POD_DATABASE_PORT)

    def pod_database_url(self, database: Database) -> str:
        """The database's URL as the pods use it (the relay's address on the local node)."""
        url = database.url()
        if self.database_address is None:
            return url
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)
        netloc[-1] = self.database_address
        return urllib.parse.urlunsplit(parts._replace(netloc="@".join(netloc)))

    def container_logs(self, kube: Kube) -> dict[str, str]:
        """``pod/container`` -> log text, for every container of the namespace's pods."""
        logs: dict[str, str] = {}
        for pod in kube.items("pods"):
            name = pod["metadata"]["name"]
            spec = pod["spec"]
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                result = kube.kubectl("logs", name, "-c", container["name"], check=False)
                logs[f"{name}/{container['name']}"] = result.stdout or result.stderr
        return logs

    def container_log(self, kube: Kube, pod: str, container: str) -> str:
        return kube.kubectl("logs", pod, "-c", container).stdout

    def app_get(self, kube: Kube, pod: str, path: str = "/") -> Json:
        """GET ``path`` of the app in ``pod``, from inside the pod (the image has node, no
        shell): the JSON body the app answers, with ``status``."""
        script = (
            f"fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + {json.dumps(path)})"
            ".then(async r => console.log(JSON.stringify({status: r.status, ...(await r.json())})))"
            ".catch(e => { console.error(String(e)); process.exit(1) })"
        )
        out = kube.kubectl("exec", pod, "-c", "app", "--", "node", "-e", script).stdout
        body: Json = json.loads(out)
        return body

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
        for name, text in self.container_logs(kube).items():
            print(f"----- log {name}\n{text[-4000:]}")
        node = self.local.local_node if self.local is not None else None
        if node is not None:
            for proc in node.processes:
                print(f"----- {proc.name} (last 20 lines)\n{proc.tail(20)}")


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

    def test(self, release: str, *extra: str, check: bool = True) -> Result:
        return self("test", release, "--timeout", "2m", *extra, check=check)

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


def release_values(strategy: str, tag: str, replicas: int = 2, **extra: Any) -> dict[str, Any]:
    """Chart values of a test release: the test's database Secret, the given image tag."""
    result: dict[str, Any] = {
        # the images of the run, not the published ones: no registry (the chart's default)
        "image": {"registry": "", "repository": APP_REPOSITORY, "tag": tag},
        "replicaCount": replicas,
        "database": {"existingSecret": "fast-note-db", "existingSecretKey": "database-url"},
        # the example app: ready only once every migration of its image is applied
        "extraEnv": [
            {"name": "FAST_NOTE_IMAGE", "value": f"{APP_REPOSITORY}:{tag}"},
            {"name": "FAST_NOTE_REQUIRE_SCHEMA", "value": "1"},
        ],
        "migration": {
            "strategy": strategy,
            "image": {"registry": "", "repository": MIGRATOR_REPOSITORY, "tag": MIGRATOR_TAG},
            # the app image has no shell and no cp: node copies the migrations out
            "source": {"command": COPY_WITH_NODE},
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
