"""The Kubernetes part of `make demo`: scenarios 1 and 2 of docs/e2e.md on the local control plane.

``python -m tools.demo`` runs it after the embedded demo when it can (see
:func:`unavailable_reason`):

1. an embedded PostgreSQL, the local control plane and node (``testkit.kube.cluster.LocalCluster``:
   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, containerd, runc),
   running the images built from ``hooks/Dockerfile`` and ``examples/app/Dockerfile`` for the
   app image tags of ``testkit/catalogue.py`` (``0.9.0`` = the example migrations but the
   last, ``1.0.0`` = all of them);
2. ``helm upgrade --install --wait`` of the release ``fast-note``, strategy ``hook``, image
   ``0.9.0``, on an empty database: the pre-install hook Job migrates, the pods start;
   ``helm test``;
3. ``helm upgrade --wait`` to ``1.0.0`` (one new migration): the hook Job applies it, the pods
   roll; ``helm test``;
4. ``_prisma_migrations``: every migration exactly once.

While Helm runs, a watcher polls the API server and prints a timeline (seconds since the
Kubernetes part started): the hook Job, its pod and the migrate container's exit, each app
pod Ready, the ``helm test`` pod. The hook Job's migrator log follows each upgrade. Helm 4
by default; ``FAST_NOTE_DEMO_HELM=helm3`` uses Helm 3. Everything is stopped at the end.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import ssl
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testkit.kube.cluster import (
    DEFAULT_CACHE,
    K8S_VERSION,
    REQUIRED_PROGRAMS,
    LocalCluster,
    control_plane_cached,
    control_plane_dir,
)
from tools.demo.output import Out

if TYPE_CHECKING:  # imported when the part runs: testkit.harness needs psycopg
    from testkit.database import Database
    from testkit.harness import Cluster, Helm, Kube

RELEASE = "fast-note"
NAMESPACE = "fast-note-demo"
DATABASE = "fast_note"
REPLICAS = 2
ENABLE_HINT = (
    "`make e2e-images` (builds Kubernetes and the images once, ~8 min) or `make e2e` enables it"
)
Json = dict[str, Any]
SUMMARY_LINE = re.compile(r"^(\d+ pending migration|applied \d+ migration\(s\)|no pending)")


def unavailable_reason(cache: Path = DEFAULT_CACHE) -> str | None:
    """Why the Kubernetes part cannot run here without building anything, or None.

    Mirrors the "already built" tests of ``ensure_control_plane`` and ``images.ensure_images``,
    so that starting the cluster never triggers a build from `make demo`.
    """
    from testkit.harness import HELMS, KUBECTL  # needs psycopg only
    from testkit.kube import images

    if not control_plane_cached(cache):
        return f"Kubernetes is not built in {control_plane_dir(cache)}"
    missing_programs = [p for p in REQUIRED_PROGRAMS if not shutil.which(p)]
    if missing_programs:
        return f"{', '.join(missing_programs)} not installed"
    missing = [p.name for p in (KUBECTL, HELMS[helm_name()]) if not p.exists()]
    if missing:
        return f"{', '.join(missing)} missing in .tools/bin (`make tools`)"
    if os.geteuid() != 0:
        return "the node needs root (namespaces, cgroups)"
    unbuilt = images.unbuilt(demo_images())
    if unbuilt:
        return f"images not built yet: {', '.join(unbuilt)}"
    return None


def demo_images() -> dict[str, Any]:
    from testkit import catalogue

    every = catalogue.app_images()
    return {tag: every[tag] for tag in (catalogue.OLD, catalogue.CURRENT)}


def helm_name() -> str:
    name = os.environ.get("FAST_NOTE_DEMO_HELM", "helm4")
    return name if name in ("helm3", "helm4") else "helm4"


# Timeline -------------------------------------------------------------------------------------


@dataclass
class Timeline:
    """Events with their time since ``t0``, printed as they are recorded (thread-safe)."""

    out: Out
    t0: float = field(default_factory=time.time)
    events: list[tuple[float, str, str, bool]] = field(default_factory=list)  # key: summary
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        return time.time() - self.t0

    def add(
        self, actor: str, what: str, at: float | None = None, show: bool = True, key: bool = True
    ) -> None:
        at = self.now() if at is None else at
        with self.lock:
            self.events.append((at, actor, what, key))
            if show:
                self.out.line(f"      {f'+{at:.1f}s':>8}  {actor:<30} {what}")


class Watcher:
    """Watches the namespace's Jobs and Pods (API watches, one thread each) and records on
    the timeline what changed: a Job that Helm deletes a moment after it completed is
    still seen complete, and its pod's container exit with it."""

    def __init__(self, cluster: LocalCluster, timeline: Timeline) -> None:
        self.cluster, self.timeline = cluster, timeline
        self.stopping = threading.Event()
        self.seen: set[tuple[str, str]] = set()
        self.job_pods: list[str] = []  # names of the Jobs' pods, in order of creation
        self.threads = [
            threading.Thread(
                target=self.follow, args=(path, handle), daemon=True, name=f"demo-watch-{kind}"
            )
            for kind, path, handle in (
                ("jobs", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs", self.job),
                ("pods", f"/api/v1/namespaces/{NAMESPACE}/pods", self.pod),
            )
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(1)  # a blocked read ends with the API server at the latest

    def follow(self, path: str, handle: Callable[[str, Json], None]) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        version = ""
        while not self.stopping.is_set():
            query = f"?watch=1&timeoutSeconds=300&resourceVersion={version}"
            request = urllib.request.Request(
                self.cluster.server + path + query,
                headers={"Authorization": f"Bearer {self.cluster.token}"},
            )
            try:
                with urllib.request.urlopen(request, context=ctx, timeout=5) as resp:
                    for raw in resp:
                        event = json.loads(raw)
                        obj = event["object"]
                        if event["type"] == "ERROR":  # 410 Gone: start over from now
                            version = ""
                            break
                        version = obj["metadata"]["resourceVersion"]
                        if self.stopping.is_set():
                            return
                        handle(event["type"], obj)
            except (OSError, urllib.error.URLError, ValueError, KeyError):
                self.stopping.wait(0.2)  # idle timeout, or the API server is going away

    def once(self, uid: str, fact: str, label: str, what: str, key: bool = True) -> None:
        if (uid, fact) not in self.seen:
            self.seen.add((uid, fact))
            self.timeline.add(label, what, key=key)

    def job(self, kind: str, job: Json) -> None:
        meta, status = job["metadata"], job.get("status", {})
        uid, label = meta["uid"], f"job/{meta['name']}"
        hook = meta.get("annotations", {}).get("helm.sh/hook", "")
        self.once(uid, "created", label, f"created ({hook} hook)" if hook else "created")
        if status.get("startTime"):
            self.once(uid, "started", label, "started")
        for cond in status.get("conditions", []):
            if cond["status"] == "True" and cond["type"] in ("Complete", "Failed"):
                self.once(uid, cond["type"], label, cond["type"].lower())
        if kind == "DELETED":
            self.once(uid, "deleted", label, "deleted")

    def pod(self, kind: str, pod: Json) -> None:
        meta, status = pod["metadata"], pod.get("status", {})
        uid, name = meta["uid"], meta["name"]
        labels = meta.get("labels", {})
        component = labels.get("app.kubernetes.io/component", "")
        label = f"pod/{name}"
        if "job-name" in labels and name not in self.job_pods:
            self.job_pods.append(name)
        image = next((c["image"] for c in pod["spec"]["containers"]), "")
        role = {"app": f"app pod, {image}", "test": "the helm test pod"}.get(
            component,
            f"the pod of job/{labels['job-name']}" if "job-name" in labels else component or "pod",
        )
        self.once(uid, "created", label, f"created ({role})", key=False)
        if component == "app":
            if any(
                c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
            ):
                self.once(uid, "ready", label, "Ready")
        elif status.get("phase") == "Running":
            self.once(uid, "running", label, "running", key=False)
        states = [*status.get("initContainerStatuses", []), *status.get("containerStatuses", [])]
        for c in states:
            done = c.get("state", {}).get("terminated")
            if done and c["name"] != "copy-migrations":  # copying files: not worth a line
                self.once(
                    uid,
                    f"exit-{c['name']}-{c.get('restartCount', 0)}",
                    label,
                    f"container {c['name']} exited {done.get('exitCode')}",
                    key=c["name"] == "migrate" or component == "test",
                )
        if component == "test" and status.get("phase") in ("Succeeded", "Failed"):
            self.once(uid, "phase", label, status["phase"], key=False)
        if meta.get("deletionTimestamp") and kind != "DELETED":
            self.once(uid, "terminating", label, "terminating", key=False)
        if kind == "DELETED":
            self.once(uid, "deleted", label, "deleted", key=component == "app")


# The scenarios --------------------------------------------------------------------------------


class KubeDemo:
    def __init__(self, out: Out) -> None:
        self.out = out
        self.timeline = Timeline(out)
        self.problems: list[str] = []
        self.cluster: Cluster | None = None  # set once the cluster runs

    def check(self, ok: bool, text: str) -> bool:
        return self.out.check(ok, text, self.problems)

    def run(self) -> None:
        from testkit import catalogue
        from testkit.database import Database
        from testkit.harness import Cluster, Helm, Kube, example_migrations
        from testkit.pgserver import PostgresServer

        out = self.out
        with contextlib.ExitStack() as stack:
            out.heading("[K1/4] Start PostgreSQL, the control plane and the node")
            workdir = Path(tempfile.mkdtemp(prefix="fast-note-demo-"))
            stack.callback(shutil.rmtree, workdir, True)
            old, new = catalogue.OLD, catalogue.CURRENT
            stack.callback(out.note, "PostgreSQL stopped.")
            pg = stack.enter_context(PostgresServer())
            import psycopg

            with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
            database = Database(pg.url("postgres"), DATABASE, pg.install / "bin")
            self.timeline.add(
                "postgres", f"started on 127.0.0.1:{pg.port}, database {DATABASE} created"
            )
            local = LocalCluster(app_images=demo_images())
            stack.callback(out.note, "Control plane, node and pods stopped.")
            stack.enter_context(local)
            cluster = self.cluster = Cluster(local.kubeconfig, local)
            cluster.reach_database_from_pods(pg.url("postgres"))
            self.timeline.add(
                "control plane",
                f"Kubernetes {K8S_VERSION}: API server, controller manager, scheduler, "
                "kubelet + containerd Ready",
            )
            kube = Kube(cluster.kubeconfig, NAMESPACE)
            kube.kubectl("create", "namespace", NAMESPACE)
            local.wait_namespace_ready(NAMESPACE)
            kube.kubectl(
                "create",
                "secret",
                "generic",
                "fast-note-db",
                f"--from-literal=database-url={cluster.pod_database_url(database)}",
            )
            out.note(
                f"namespace {NAMESPACE}; Secret fast-note-db holds the DATABASE_URL; "
                f"app image tags {old} ({len(example_migrations()) - 1} migrations) and "
                f"{new} ({len(example_migrations())})"
            )
            out.note(f"KUBECONFIG={cluster.kubeconfig}")
            home = workdir / "helm"
            home.mkdir()
            helm = Helm(helm_name(), kube, home)
            watcher = Watcher(local, self.timeline)
            watcher.start()
            stack.callback(watcher.stop)

            expected = example_migrations()
            out.heading(
                f"[K2/4] Scenario 1: install {old} with the pre-install hook Job "
                "on an empty database"
            )
            self.upgrade(helm, kube, watcher, old, "install", expected[:-1])
            self.app_serving(kube, old)
            self.history(database, expected[:-1])
            self.helm_test(helm)

            out.heading(f"[K3/4] Scenario 2: upgrade to {new}, one new migration")
            before = {p["metadata"]["name"] for p in kube.app_pods(RELEASE)}
            self.upgrade(helm, kube, watcher, new, "upgrade", expected[-1:])
            pods = self.app_serving(kube, new)
            self.check(not before & pods, f"the pods were rolled ({len(before)} old ones gone)")
            self.helm_test(helm)

            out.heading("[K4/4] Read _prisma_migrations, stop everything")
            self.history(database, expected, show=True)
            watcher.stop()
            self.summary()

    # steps ---------------------------------------------------------------------------------

    def upgrade(
        self, helm: Helm, kube: Kube, watcher: Watcher, tag: str, verb: str, applies: list[str]
    ) -> None:
        from testkit.harness import migration_jobs
        from testkit.harness import release_values as values

        chosen = values("hook", tag, replicas=REPLICAS)
        chosen["migration"]["logFormat"] = "json"  # the log lines' times, to the millisecond
        shown = (
            f"$ {helm.name} upgrade --install {RELEASE} charts/fast-note --wait "
            f"-f <migration.strategy=hook, image fast-note:{tag}, {REPLICAS} replicas>"
        )
        self.out.line(f"      {shown}")
        jobs_before = len(watcher.job_pods)
        self.timeline.add(helm.name, f"`helm upgrade --install` ({verb}, {tag}) started")
        result = helm.upgrade(RELEASE, chosen, check=False)
        self.timeline.add(
            helm.name,
            f"`helm upgrade --install` exited {result.returncode} after {result.seconds:.1f}s",
        )
        time.sleep(0.3)  # let the watches deliver the last changes
        if not self.check(result.ok, f"helm upgrade --install ({tag}) succeeded"):
            self.out.block(result.stderr[-3000:] or result.stdout[-3000:])
            self.diagnose(kube)
        pods = watcher.job_pods[jobs_before:]
        self.check(len(pods) == 1, f"one hook Job pod ran ({', '.join(pods) or 'none'})")
        log = self.job_log(kube, pods[-1]) if pods else []
        applied = [m.split()[1] for _, m, _ in log if re.match(r"applied \d+_\w+ in ", m)]
        self.check(
            applied == applies
            and any(m.startswith(f"applied {len(applies)} migration(s)") for _, m, _ in log),
            f"the hook Job applied {len(applies)} migration(s): {', '.join(applied) or 'none'}",
        )
        left = migration_jobs(kube, RELEASE)
        self.check(not left, "the hook Job was deleted after it succeeded (hook-succeeded)")

    def job_log(self, kube: Kube, pod: str) -> list[tuple[float, str, str]]:
        self.out.line()
        self.out.note(f"the migrator's log (pod {pod}, container migrate):")
        node = self.cluster.local.local_node if self.cluster and self.cluster.local else None
        # the hook Job's pod is gone by now: the kubelet's log file is still there
        text = node.container_log(kube.namespace, pod, "migrate") if node else ""
        if not text:
            self.check(False, f"no migrator log for pod {pod}")
            return []
        events = [self.parse(line) for line in text.splitlines() if line.strip()]
        for at, level, message in events:
            mark = "" if level in ("info", "raw") else f"{level.upper()}: "
            self.out.line(f"      {f'+{at:.3f}s':>10} [migrate] {mark}{message}")
            if SUMMARY_LINE.search(message):
                self.timeline.add("migrate", message, at, show=False)
        self.out.line()
        return [(at, message, level) for at, level, message in events]

    def parse(self, line: str) -> tuple[float, str, str]:
        try:
            doc: Json = json.loads(line)
            at = datetime.fromisoformat(str(doc["time"])).timestamp() - self.timeline.t0
            return at, str(doc.get("level", "info")), str(doc.get("message", ""))
        except (ValueError, KeyError, TypeError):
            return self.timeline.now(), "raw", line

    def app_serving(self, kube: Kube, tag: str) -> set[str]:
        from testkit.harness import pod_image, pod_ready

        pods = kube.app_pods(RELEASE)
        ready = [p for p in pods if pod_ready(p) and pod_image(p) == f"fast-note:{tag}"]
        self.check(
            len(ready) == len(pods) == REPLICAS,
            f"{len(ready)} of {REPLICAS} app pods Ready with fast-note:{tag}",
        )
        return {p["metadata"]["name"] for p in pods}

    def helm_test(self, helm: Helm) -> None:
        self.out.line(f"      $ {helm.name} test {RELEASE}")
        self.timeline.add(helm.name, "`helm test` started")
        result = helm.test(RELEASE, check=False)
        self.timeline.add(
            helm.name, f"`helm test` exited {result.returncode} after {result.seconds:.1f}s"
        )
        suite = [
            row.strip()
            for row in result.stdout.splitlines()
            if row.strip().startswith(("TEST SUITE", "Phase", "Last Started", "Last Completed"))
        ]
        if suite:
            self.out.block("\n".join(suite))
        if not self.check(
            result.ok,
            "helm test passed (the verify pod: the database matches the image's migrations)",
        ):
            self.out.block(result.stderr[-3000:] or result.stdout[-3000:])

    def history(self, database: Database, expected: list[str], show: bool = False) -> None:
        rows = database.history(missing_ok=True)
        counts = Counter(r.name for r in rows if r.applied)
        if show:
            self.out.note(f"{'migration':<42} {'rows':>4}")
            for name in sorted(set(expected) | set(counts)):
                self.out.note(f"{name:<42} {counts.get(name, 0):>4}")
        once = [n for n in expected if counts.get(n) == 1]
        self.check(
            len(once) == len(expected) == len(rows),
            f"_prisma_migrations: {len(once)} of {len(expected)} migrations recorded "
            "exactly once, finished and not rolled back",
        )

    def diagnose(self, kube: Kube) -> None:
        result = kube.kubectl("get", "all,events", "-o", "wide", check=False)
        self.out.block(result.stdout[-4000:])
        if self.cluster is not None:
            for name, text in self.cluster.container_logs(kube).items():
                self.out.note(f"--- {name}")
                self.out.block(text[-1500:])

    def summary(self) -> None:
        self.out.heading("Summary: the Kubernetes timeline (seconds since this part started)")
        self.out.note("(the milestones of the lines above, with the migrator's own)")
        for at, actor, what, key in sorted(self.timeline.events, key=lambda e: e[0]):
            if key:
                self.out.note(f"  {at:>6.1f}s  {actor:<30} {what}")


def run_kube_demo(out: Out | None = None) -> int:
    """Scenarios 1 and 2 on the local control plane; returns the exit code."""
    out = out or Out()
    out.line()
    out.line(
        out.style(
            f"fast-note deploy kit demo, part 2: the chart on a local Kubernetes "
            f"{K8S_VERSION} control plane ({helm_name()})",
            "1",
        )
    )
    demo = KubeDemo(out)
    previous = None
    if threading.current_thread() is threading.main_thread():

        def interrupt(signum: int, frame: object) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the harness prints every command
            demo.run()
    except KeyboardInterrupt:
        demo.problems.append("interrupted")
    except Exception as exc:  # a smoke test: report, the ExitStack has cleaned up
        traceback.print_exc()
        demo.problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    out.line()
    out.note(f"Total time of the Kubernetes part: {demo.timeline.now():.1f}s")
    out.line()
    return out.verdict(
        demo.problems,
        "Kubernetes demo",
        "install and upgrade with the hook Job, each migration applied once, helm test passed.",
    )
