"""The embedded demo: one migration Job and three app replicas against an embedded PostgreSQL.

``python -m tools.demo`` runs it first (after ``make venv tools``). It

1. starts a throw-away PostgreSQL (``testkit.pgserver``; under ``.tools/demo``, or as the
   user ``nobody`` under /tmp when run as root, because initdb refuses root),
2. shows ``status`` with every migration of ``examples/app/prisma/migrations`` pending,
3. starts three simulated replicas running ``wait`` and, a moment later, one ``deploy``,
   all as real ``fast-note-migrate`` processes, and streams their logs,
4. shows ``status`` and ``verify``, then a second ``deploy`` that has nothing to do,
5. checks ``_prisma_migrations`` (every migration recorded exactly once), prints a
   summary of who did what when, and stops the database.

:func:`run_embedded_demo` returns 0 only if everything happened as expected, so the demo
doubles as a smoke test.
"""

from __future__ import annotations

import json
import os
import pwd
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from fast_note_migrate.errors import EXIT_CODE_MEANINGS
from testkit.pgserver import REPO, UNPRIVILEGED_USER, PostgresServer
from tools.demo.output import Out

MIGRATIONS_DIR = REPO / "examples" / "app" / "prisma" / "migrations"
DEMO_WORKDIR = REPO / ".tools" / "demo"
DATABASE = "fast_note"
SCHEMA = "app"
REPLICAS = 3
WAIT_TIMEOUT = "60s"
WAIT_INTERVAL = "250ms"
DEPLOY_DELAY = 0.3  # seconds between the last replica waiting and the Job's deploy
PROCESS_TIMEOUT = 90.0


def exit_meaning(code: int) -> str:
    return {int(k): v for k, v in EXIT_CODE_MEANINGS.items()}.get(code, "unknown exit code")


ACTOR_COLOURS = {"replica-1": "36", "replica-2": "35", "replica-3": "34", "migrate-job": "33"}


# Migrator processes ---------------------------------------------------------------


@dataclass
class Event:
    """One log line of a migrator process; ``at`` is seconds since the demo started."""

    at: float
    level: str
    message: str


@dataclass
class Run:
    """One `fast-note-migrate` invocation: who ran it, when, what it logged, how it ended."""

    actor: str
    verb: str
    hostname: str
    expected_exit: int
    started: float = 0.0
    ended: float | None = None
    exit_code: int | None = None
    events: list[Event] = field(default_factory=list)
    stdout: str = ""
    process: subprocess.Popen[str] | None = None

    def first(self, pattern: str) -> Event | None:
        regex = re.compile(pattern)
        return next((e for e in self.events if regex.search(e.message)), None)

    @property
    def as_expected(self) -> bool:
        return self.exit_code == self.expected_exit


class Demo:
    """The state and the steps of one demo run."""

    def __init__(self, out: Out) -> None:
        self.out = out
        self.t0 = time.time()
        self.runs: list[Run] = []
        self.problems: list[str] = []
        self.milestones: list[tuple[float, str, str]] = []
        self.lines: queue.Queue[tuple[Run, str | None]] = queue.Queue()
        self.database_url = ""
        self.pg: PostgresServer | None = None
        self.ready_replicas = 0
        self.applied_once = 0

    # helpers ------------------------------------------------------------------

    def now(self) -> float:
        return time.time() - self.t0

    def milestone(self, actor: str, what: str, at: float | None = None) -> None:
        self.milestones.append((self.now() if at is None else at, actor, what))

    def check(self, ok: bool, text: str) -> bool:
        return self.out.check(ok, text, self.problems)

    def command(self) -> list[str]:
        script = Path(sys.executable).with_name("fast-note-migrate")
        if script.exists():
            return [str(script)]
        return [sys.executable, "-m", "fast_note_migrate"]

    def env(self, hostname: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("MIGRATE_") and k not in ("DATABASE_URL", "MIGRATIONS_DIR")
        }
        env.update(
            DATABASE_URL=self.database_url,
            MIGRATIONS_DIR=str(MIGRATIONS_DIR),
            MIGRATE_LOG_FORMAT="json",
            HOSTNAME=hostname,
            PYTHONUNBUFFERED="1",
        )
        return env

    def parse(self, line: str) -> Event:
        try:
            doc: dict[str, Any] = json.loads(line)
            at = datetime.fromisoformat(str(doc["time"])).timestamp() - self.t0
            return Event(at, str(doc.get("level", "info")), str(doc.get("message", "")))
        except (ValueError, KeyError, TypeError):
            return Event(self.now(), "raw", line)

    def render(self, run: Run, event: Event) -> None:
        actor = self.out.style(f"[{run.actor}]", ACTOR_COLOURS.get(run.actor, "0"))
        level = "" if event.level in ("info", "raw") else f"{event.level.upper()}: "
        message = f"{level}{event.message}"
        if event.level in ("warning", "error", "critical"):
            message = self.out.style(message, "31")
        for i, row in enumerate(message.splitlines() or [""]):
            stamp = f"+{event.at:.3f}s".rjust(9) if i == 0 else " " * 9
            self.out.line(f"      {stamp} {actor} {row}")

    # running the migrator -------------------------------------------------------

    def run(
        self,
        actor: str,
        verb: str,
        *args: str,
        expected_exit: int = 0,
        hostname: str = "fast-note-demo",
    ) -> Run:
        """Run one verb to completion; show its stdout and logs."""
        run = Run(actor, verb, hostname, expected_exit)
        self.runs.append(run)
        self.out.line(f"      $ fast-note-migrate {' '.join((verb, *args))}")
        run.started = self.now()
        result = subprocess.run(
            [*self.command(), verb, *args],
            env=self.env(hostname),
            capture_output=True,
            text=True,
            timeout=PROCESS_TIMEOUT,
            check=False,
        )
        run.ended, run.exit_code, run.stdout = self.now(), result.returncode, result.stdout
        run.events = [self.parse(line) for line in result.stderr.splitlines() if line.strip()]
        if run.stdout.strip():
            self.out.block(run.stdout)
        for event in run.events:
            self.render(run, event)
        self.explain_exit(run)
        return run

    def explain_exit(self, run: Run) -> None:
        code = run.exit_code if run.exit_code is not None else -1
        text = f"{run.actor}: `{run.verb}` exited {code} ({exit_meaning(code)})"
        if code != 0 and run.as_expected:
            text += ", as expected here"
        elif not run.as_expected:
            text += f", expected {run.expected_exit} ({exit_meaning(run.expected_exit)})"
        self.check(run.as_expected, text)

    def spawn(
        self, actor: str, verb: str, *args: str, hostname: str, expected_exit: int = 0
    ) -> Run:
        """Start one verb in the background; its log lines go to ``self.lines``."""
        run = Run(actor, verb, hostname, expected_exit)
        self.runs.append(run)
        run.started = self.now()
        self.milestone(actor, f"started `{verb}` (HOSTNAME={hostname})", run.started)
        run.process = subprocess.Popen(
            [*self.command(), verb, *args],
            env=self.env(hostname),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

        def reader(run: Run = run) -> None:
            assert run.process is not None and run.process.stdout is not None
            for line in run.process.stdout:
                if line.strip():
                    self.lines.put((run, line.rstrip("\n")))
            self.lines.put((run, None))

        threading.Thread(target=reader, name=f"read-{actor}", daemon=True).start()
        return run

    def pump(self, done: Callable[[], bool], timeout: float) -> bool:
        """Print background log lines as they arrive until ``done()`` or the timeout."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() >= deadline:
                return False
            try:
                run, line = self.lines.get(timeout=0.05)
            except queue.Empty:
                continue
            if line is None:
                assert run.process is not None
                run.exit_code = run.process.wait()
                run.ended = self.now()
                continue
            event = self.parse(line)
            run.events.append(event)
            self.render(run, event)
        return True

    def kill_leftovers(self) -> None:
        for run in self.runs:
            if run.process is not None and run.process.poll() is None:
                run.process.kill()
                run.process.wait()

    # the steps ----------------------------------------------------------------

    def start_database(self) -> PostgresServer:
        self.out.heading("[1/7] Start an embedded PostgreSQL")
        kwargs: dict[str, Any] = {}
        if os.geteuid() != 0:
            shutil.rmtree(DEMO_WORKDIR, ignore_errors=True)
            DEMO_WORKDIR.mkdir(parents=True)
            kwargs["workdir"] = DEMO_WORKDIR
        pg = PostgresServer(**kwargs)
        self.pg = pg
        pg.start()
        import psycopg

        with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        self.database_url = pg.url(DATABASE, schema=SCHEMA)
        self.milestone("postgres", f"started, database {DATABASE} created")
        who = (
            f"as user {UNPRIVILEGED_USER} (this demo runs as root and initdb refuses root)"
            if os.geteuid() == 0
            else f"as {pwd.getpwuid(os.geteuid()).pw_name}, not root"
        )
        self.note(
            f"PostgreSQL {version[0] if version else '?'} on 127.0.0.1:{pg.port}, running {who}"
        )
        self.note(f"data directory: {pg.datadir}")
        self.note(f"DATABASE_URL={self.database_url}")
        migrations = sorted(p.name for p in MIGRATIONS_DIR.iterdir() if p.is_dir())
        self.note(
            f"MIGRATIONS_DIR={MIGRATIONS_DIR.relative_to(REPO)} ({len(migrations)} migrations)"
        )
        return pg

    def note(self, text: str) -> None:
        self.out.note(text)

    def status_before(self) -> None:
        self.out.heading("[2/7] `status` before anything is applied")
        self.note("Nothing is applied yet, so status lists every migration as pending and exits 3.")
        self.run("operator", "status", expected_exit=3)

    def rollout(self, expected: int) -> None:
        self.out.heading(
            f"[3/7] {REPLICAS} replicas run `wait` while the migration Job runs `deploy`"
        )
        self.note(
            f"Each replica (an app pod's init container) runs `wait --timeout {WAIT_TIMEOUT}` and"
        )
        self.note("polls until every migration is applied; the Job applies them a moment later.")
        self.note("Times are seconds since the demo started.")
        self.out.line()
        replicas = [
            self.spawn(
                f"replica-{n}",
                "wait",
                "--timeout",
                WAIT_TIMEOUT,
                "--interval",
                WAIT_INTERVAL,
                hostname=f"fast-note-web-{n}",
            )
            for n in range(1, REPLICAS + 1)
        ]

        def all_waiting() -> bool:
            return all(r.first("^waiting for") or r.ended is not None for r in replicas)

        if not self.pump(all_waiting, 30):
            self.problems.append("the replicas did not start waiting within 30s")
        self.show_connections()
        self.pump(lambda: False, DEPLOY_DELAY)
        job = self.spawn("migrate-job", "deploy", hostname="fast-note-migrate-job")
        everyone = [*replicas, job]
        if not self.pump(lambda: all(r.ended is not None for r in everyone), PROCESS_TIMEOUT):
            self.problems.append(f"the processes did not finish within {PROCESS_TIMEOUT:.0f}s")
            self.kill_leftovers()
        self.out.line()
        self.rollout_checks(replicas, job, expected)

    def show_connections(self) -> None:
        import psycopg

        assert self.pg is not None
        with psycopg.connect(self.pg.url(DATABASE), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT application_name FROM pg_stat_activity "
                "WHERE application_name LIKE 'fast-note-migrate %' "
                "ORDER BY application_name"
            ).fetchall()
        at = self.now()
        self.out.line(
            f"      {f'+{at:.3f}s':>9} [demo] pg_stat_activity shows who is connected: "
            + (", ".join(f"'{r[0]}'" for r in rows) or "nobody")
        )
        self.check(
            len(rows) == REPLICAS,
            f"{len(rows)} of {REPLICAS} replicas visible in pg_stat_activity by their pod name",
        )
        self.out.line()

    def rollout_checks(self, replicas: list[Run], job: Run, expected: int) -> None:
        for run in [*replicas, job]:
            self.explain_exit(run)
            if run.ended is not None:
                self.milestone(run.actor, f"`{run.verb}` exited {run.exit_code}", run.ended)
        saw_pending = [r for r in replicas if r.first(rf"^waiting for {expected} pending")]
        self.check(
            len(saw_pending) == REPLICAS,
            f"{len(saw_pending)} of {REPLICAS} replicas found all {expected} migrations "
            "pending before the deploy started",
        )
        for run in saw_pending:
            event = run.first("^waiting for")
            assert event is not None
            self.milestone(run.actor, f"waiting: {expected} pending", event.at)
        applied = job.first(r"^applied \d+ migration\(s\)")
        applied_count = int(re.findall(r"\d+", applied.message)[0]) if applied else 0
        self.check(
            applied_count == expected,
            f"the Job's deploy applied {applied_count} of {expected} migrations",
        )
        first_apply = job.first("^applying ")
        if first_apply:
            self.milestone(
                job.actor, f"applying {first_apply.message.split()[1]} (first)", first_apply.at
            )
        if applied:
            self.milestone(job.actor, applied.message, applied.at)
        last_apply = [e for e in job.events if e.message.startswith("applying ")]
        ready = []
        for run in replicas:
            event = run.first("^the database is up to date")
            if event is None or run.exit_code != 0:
                continue
            self.milestone(run.actor, "schema ready", event.at)
            if last_apply and event.at < last_apply[-1].at:
                self.problems.append(
                    f"{run.actor} saw the schema ready before the Job started its last migration"
                )
                continue
            ready.append(run)
        self.ready_replicas = len(ready)
        self.check(
            len(ready) == REPLICAS,
            f"{len(ready)} of {REPLICAS} replicas saw the schema ready after the "
            "deploy, and only then",
        )

    def status_after(self) -> None:
        self.out.heading("[4/7] `status` after the deploy")
        self.run("operator", "status")

    def verify(self) -> None:
        self.out.heading("[5/7] `verify` (what `helm test` runs)")
        self.run("helm-test", "verify")

    def deploy_again(self) -> None:
        self.out.heading("[6/7] `deploy` again: the next release's Job, nothing to do")
        run = self.run("migrate-job", "deploy", hostname="fast-note-migrate-job-2")
        self.milestone("migrate-job", "second deploy: nothing to apply", run.ended)
        self.check(
            run.first("^no pending migrations") is not None, "the second deploy applied nothing"
        )

    def history_check(self, expected: list[str]) -> list[tuple[str, int, float | None]]:
        self.out.heading(f"[7/7] Read {SCHEMA}._prisma_migrations")
        from testkit.database import Database

        assert self.pg is not None
        found: dict[str, tuple[int, int, datetime | None]] = {}
        for row in Database(self.pg.url(), DATABASE).history(SCHEMA):
            total, good, at = found.get(row.name, (0, 0, None))
            latest = max(filter(None, (at, row.finished_at)), default=None)
            found[row.name] = (total + 1, good + row.applied, latest)
        table = []
        self.note(f"{'migration':<42} {'rows':>4}  {'finished':>9}")
        for name in sorted(set(expected) | set(found)):
            total, good, at = found.get(name, (0, 0, None))
            rel = at.timestamp() - self.t0 if at is not None else None
            shown = f"+{rel * 1000:.0f}ms" if rel is not None else "-"
            self.note(f"{name:<42} {total:>4}  {shown:>9}")
            table.append((name, total if total == good else -total, rel))
        once = [n for n, total, _ in table if total == 1 and n in expected]
        self.applied_once = len(once)
        self.check(
            len(once) == len(expected) == len(table),
            f"{len(once)} of {len(expected)} migrations recorded exactly once, "
            "finished and not rolled back",
        )
        return table

    def summary(self, expected: int) -> None:
        self.out.heading("Summary: who did what, when")
        self.note("Timeline (milliseconds since the demo started)")
        for at, actor, what in sorted(self.milestones, key=lambda m: m[0]):
            self.note(f"  {at * 1000:>7.0f} ms  {actor:<12} {what}")
        self.out.line()
        self.note("Processes")
        self.note(f"  {'who':<12} {'verb':<7} {'HOSTNAME':<24} {'start':>8} {'end':>8}  exit")
        for run in self.runs:
            end = f"{run.ended * 1000:.0f}" if run.ended is not None else "-"
            code = run.exit_code if run.exit_code is not None else -1
            mark = "" if run.as_expected else f"  UNEXPECTED (wanted {run.expected_exit})"
            self.note(
                f"  {run.actor:<12} {run.verb:<7} {run.hostname:<24} "
                f"{run.started * 1000:>8.0f} {end:>8}  {code} {exit_meaning(code)}{mark}"
            )
        self.out.line()
        self.note(
            f"Migrations applied: {self.applied_once} of {expected} exactly once "
            "(one row each in _prisma_migrations)"
        )
        self.note(f"Replicas ready:     {self.ready_replicas} of {REPLICAS} saw the schema ready")
        self.note(f"Total time:         {self.now():.1f}s")


def run_embedded_demo(out: Out | None = None) -> int:
    """The demo on embedded defaults (no Kubernetes): returns the exit code."""
    out = out or Out()
    demo = Demo(out)
    out.line(
        out.style(
            "fast-note deploy kit demo: one migration Job, three app replicas, one PostgreSQL", "1"
        )
    )
    expected = sorted(
        p.name for p in MIGRATIONS_DIR.iterdir() if p.is_dir() and (p / "migration.sql").exists()
    )
    try:
        try:
            demo.start_database()
        except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
            detail = getattr(exc, "stderr", "") or ""
            out.fail(f"could not start PostgreSQL: {exc}")
            if detail:
                out.block(detail)
            return 1
        demo.status_before()
        demo.rollout(len(expected))
        demo.status_after()
        demo.verify()
        demo.deploy_again()
        demo.history_check(expected)
        demo.summary(len(expected))
    except KeyboardInterrupt:
        demo.problems.append("interrupted")
    except Exception as exc:  # the demo is a smoke test: report, then clean up
        traceback.print_exc()
        demo.problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        demo.kill_leftovers()
        if demo.pg is not None:
            try:
                demo.pg.stop()
            finally:
                demo.pg.destroy()
            out.line()
            out.note(f"PostgreSQL stopped; {demo.pg.workdir} removed.")
    out.line()
    return out.verdict(demo.problems, "Demo", "everything happened as expected.")
