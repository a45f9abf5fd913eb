"""SIGKILL the migrator at random moments during a 50-migration deploy.

After every kill: the history and the schema agree (each migration fully applied and
recorded, or absent), no advisory lock or session is left, and the next deploy
completes, applying each migration exactly once. 10 iterations in the quick run
(``KILL_ITERATIONS``), 100 in the soak (``SOAK_ITERATIONS``, ``make soak``); the seed is
printed and can be fixed with ``KILL_SEED``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from testkit.cli import Migrator
from testkit.database import Database
from testkit.migrations_folder import MigrationsFolder
from testkit.pgserver import PostgresServer

COUNT = 50


def iterations(variable: str, default: int) -> int:
    return int(os.environ.get(variable) or default)


def build(migrations: MigrationsFolder) -> list[str]:
    """50 migrations; each creates a table, fills it and logs itself in `applied`."""
    names = [migrations.add("20240101000001_log", "CREATE TABLE applied (name text PRIMARY KEY);")]
    for i in range(2, COUNT + 1):
        name = f"20240101{i:06d}_m{i:02d}"
        migrations.add(
            name,
            f"CREATE TABLE t{i:02d} (id int PRIMARY KEY, note text);\n"
            f"INSERT INTO t{i:02d} SELECT g, 'row ' || g "
            f"FROM generate_series(1, 200) g;\n"
            f"SELECT pg_sleep(0.003);\n"
            f"INSERT INTO applied VALUES ('{name}');\n",
        )
        names.append(name)
    return names


def spawn(db: Database, folder: Path) -> subprocess.Popen[str]:
    return Migrator(db.url(), folder).spawn("deploy", capture=False, HOSTNAME="victim")


def check_consistent(db: Database, names: list[str]) -> int:
    """History and schema agree; returns how many migrations are applied."""
    rows = sorted(db.history(missing_ok=True), key=lambda r: r.name)
    recorded = [r.name for r in rows]
    assert all(r.finished and not r.rolled_back and r.steps == 1 for r in rows), (
        f"unfinished or failed rows: {rows}"
    )
    assert len(set(recorded)) == len(recorded), f"a migration recorded twice: {recorded}"
    assert recorded == names[: len(recorded)], "the applied migrations are not a prefix"
    tables = set(db.tables())
    logged = {r[0] for r in db.query("SELECT name FROM applied")} if "applied" in tables else set()
    for i, name in enumerate(names, 1):
        has_table = "applied" in tables if i == 1 else f"t{i:02d}" in tables
        is_recorded = name in recorded
        assert has_table == is_recorded, f"{name}: table {has_table}, recorded {is_recorded}"
        if i > 1:
            assert (name in logged) == is_recorded, f"{name}: its insert does not match"
            if has_table:
                assert db.scalar(f"SELECT count(*) FROM t{i:02d}") == 200
    return len(recorded)


def calibrate(server: PostgresServer, migrations: MigrationsFolder) -> float:
    """Seconds a whole deploy takes here, now."""
    scratch = Database.on(server, prefix="r_")
    try:
        started = time.monotonic()
        assert spawn(scratch, migrations.path).wait(timeout=120) == 0
        return time.monotonic() - started
    finally:
        scratch.drop()


def kill_at_random_moments(
    pg_server: PostgresServer,
    migrations: MigrationsFolder,
    runs: int,
    recover: Callable[[Database, int], str],
) -> Counter[str]:
    """``runs`` times: a fresh database, a deploy of ``migrations`` SIGKILLed after a random
    part of a whole deploy's time, then ``recover(db, exit code)``, which checks what the
    kill left, deploys again, checks the result and names the outcome."""
    total = calibrate(pg_server, migrations)
    seed = int(os.environ.get("KILL_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    for iteration in range(runs):
        db = Database.on(pg_server, prefix="r_")
        try:
            delay = rng.uniform(0, total)
            victim = spawn(db, migrations.path)
            time.sleep(delay)
            victim.send_signal(signal.SIGKILL)
            code = victim.wait(timeout=30)
            db.settle()
            outcomes[recover(db, code)] += 1
            db.settle()
        except AssertionError as exc:
            raise AssertionError(
                f"iteration {iteration}, seed {seed}, killed after {delay:.3f}s: {exc}"
            ) from None
        finally:
            db.drop()
    print(f"{runs} kills (KILL_SEED={seed}, a whole deploy takes {total:.2f}s): {dict(outcomes)}")
    return outcomes


def recover_fifty(
    migrations: MigrationsFolder, names: list[str], capsys: pytest.CaptureFixture[str]
) -> Callable[[Database, int], str]:
    """After a kill during the 50-migration deploy: history and schema agree, and the next
    deploy applies the rest, each migration once."""

    def recover(db: Database, code: int) -> str:
        applied = check_consistent(db, names)
        result = Migrator(db.url(), migrations.path, capsys)("deploy")
        assert result.code == 0, result.err
        assert check_consistent(db, names) == COUNT
        assert db.scalar("SELECT count(*) FROM applied") == COUNT - 1
        assert len(db.history()) == COUNT
        if code == 0:
            return "finished"
        return (
            "before any" if applied == 0 else "mid-deploy" if applied < COUNT else "after the last"
        )

    return recover


def test_sigkill_at_random_moments(
    pg_server: PostgresServer, migrations: MigrationsFolder, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = iterations("KILL_ITERATIONS", 10)
    recover = recover_fifty(migrations, build(migrations), capsys)
    outcomes = kill_at_random_moments(pg_server, migrations, runs, recover)
    assert sum(outcomes.values()) == runs


@pytest.mark.slow
def test_sigkill_soak(
    pg_server: PostgresServer, migrations: MigrationsFolder, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = iterations("SOAK_ITERATIONS", 100)
    recover = recover_fifty(migrations, build(migrations), capsys)
    outcomes = kill_at_random_moments(pg_server, migrations, runs, recover)
    assert outcomes["mid-deploy"] >= runs // 10, f"too few kills landed mid-deploy: {outcomes}"


SPLIT_STATEMENTS = 120


def build_split(migrations: MigrationsFolder) -> str:
    """One migration run statement by statement (it builds indexes CONCURRENTLY): 120
    INSERTs into a table whose primary key refuses a statement run twice, two of them
    in a transaction block of the file's own, and an index built mid-way."""
    inserts = [f"INSERT INTO log VALUES ({k}); SELECT pg_sleep(0.002);" for k in range(1, 121)]
    lines = [
        "CREATE TABLE log (k int PRIMARY KEY);",
        "CREATE INDEX CONCURRENTLY log_k_desc ON log (k DESC);",
        *inserts[:60],
        "BEGIN;",
        *inserts[60:62],
        "COMMIT;",
        "CREATE INDEX CONCURRENTLY log_k_hash ON log USING hash (k);",
        *inserts[62:],
    ]
    return migrations.add("20240101000001_split", "\n".join(lines) + "\n")


def test_sigkill_during_a_statement_by_statement_migration_is_resumed_exactly_once(
    pg_server: PostgresServer, migrations: MigrationsFolder, capsys: pytest.CaptureFixture[str]
) -> None:
    """Killed at a random moment (eviction, OOM), the migration is applied, failed or
    interrupted, never half-recorded; the next deploy finishes it, and every statement ran
    exactly once (the primary key would refuse a second INSERT), indexes valid."""
    name = build_split(migrations)

    def recover(db: Database, code: int) -> str:
        row = {r.name: r for r in db.history(missing_ok=True)}.get(name)
        result = Migrator(db.url(), migrations.path, capsys)("deploy")
        assert result.code == 0, result.err
        assert [(r.name, r.applied, r.logs) for r in db.history()] == [(name, True, None)]
        assert db.query("SELECT count(*), min(k), max(k) FROM log") == [
            (SPLIT_STATEMENTS, 1, SPLIT_STATEMENTS)
        ]
        assert db.scalar(
            "SELECT bool_and(indisvalid) FROM pg_index WHERE indrelid = 'log'::regclass"
        )
        return "finished" if code == 0 else "interrupted" if row and not row.finished else "none"

    runs = iterations("KILL_ITERATIONS", 10)
    outcomes = kill_at_random_moments(pg_server, migrations, runs, recover)
    assert sum(outcomes.values()) == runs
