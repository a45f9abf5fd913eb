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
from pathlib import Path

import pytest

from testkit.pgserver import PostgresServer

from .conftest import (
    CLI,
    REPO,
    Database,
    Migrations,
    Migrator,
    drop_database,
    iterations,
    new_database,
    settle,
)

COUNT = 50


def build(migrations: Migrations) -> list[str]:
    """50 migrations; each creates a table, fills it and logs itself in `applied`."""
    names = [migrations.add("log", "CREATE TABLE applied (name text PRIMARY KEY);",
                            name="20240101000001_log")]
    for i in range(2, COUNT + 1):
        name = f"20240101{i:06d}_m{i:02d}"
        migrations.add("", f"CREATE TABLE t{i:02d} (id int PRIMARY KEY, note text);\n"
                           f"INSERT INTO t{i:02d} SELECT g, 'row ' || g "
                           f"FROM generate_series(1, 200) g;\n"
                           f"SELECT pg_sleep(0.003);\n"
                           f"INSERT INTO applied VALUES ('{name}');\n", name=name)
        names.append(name)
    return names


def spawn(db: Database, folder: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": db.url(), "MIGRATIONS_DIR": str(folder),
           "HOSTNAME": "victim"}
    return subprocess.Popen([*CLI, "deploy"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, cwd=REPO)


def check_consistent(db: Database, names: list[str]) -> int:
    """History and schema agree; returns how many migrations are applied."""
    rows = db.query("SELECT migration_name, finished_at IS NOT NULL, rolled_back_at IS NULL, "
                    "applied_steps_count FROM _prisma_migrations ORDER BY migration_name") \
        if db.scalar("SELECT to_regclass('_prisma_migrations') IS NOT NULL") else []
    recorded = [r[0] for r in rows]
    assert all(r[1] and r[2] and r[3] == 1 for r in rows), f"unfinished or failed rows: {rows}"
    assert len(set(recorded)) == len(recorded), f"a migration recorded twice: {recorded}"
    assert recorded == names[:len(recorded)], "the applied migrations are not a prefix"
    tables = set(db.tables())
    logged = ({r[0] for r in db.query("SELECT name FROM applied")}
              if "applied" in tables else set())
    for i, name in enumerate(names, 1):
        has_table = "applied" in tables if i == 1 else f"t{i:02d}" in tables
        is_recorded = name in recorded
        assert has_table == is_recorded, f"{name}: table {has_table}, recorded {is_recorded}"
        if i > 1:
            assert (name in logged) == is_recorded, f"{name}: its insert does not match"
            if has_table:
                assert db.scalar(f"SELECT count(*) FROM t{i:02d}") == 200
    return len(recorded)


def calibrate(server: PostgresServer, migrations: Migrations) -> float:
    """Seconds a whole deploy takes here, now."""
    scratch = new_database(server)
    try:
        started = time.monotonic()
        assert spawn(scratch, migrations.path).wait(timeout=120) == 0
        return time.monotonic() - started
    finally:
        drop_database(scratch)


def kill_at_random_moments(pg_server: PostgresServer, migrations: Migrations,
                           capsys: pytest.CaptureFixture[str], runs: int) -> Counter[str]:
    names = build(migrations)
    total = calibrate(pg_server, migrations)
    seed = int(os.environ.get("KILL_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    for iteration in range(runs):
        db = new_database(pg_server)
        try:
            delay = rng.uniform(0, total)
            victim = spawn(db, migrations.path)
            time.sleep(delay)
            victim.send_signal(signal.SIGKILL)
            code = victim.wait(timeout=30)
            settle(db)
            applied = check_consistent(db, names)
            outcomes["finished" if code == 0 else
                     "before any" if applied == 0 else
                     "mid-deploy" if applied < COUNT else "after the last"] += 1
            result = Migrator(db, migrations, capsys)("deploy")
            assert result.code == 0, f"iteration {iteration}, seed {seed}: {result.err}"
            assert check_consistent(db, names) == COUNT
            assert db.scalar("SELECT count(*) FROM applied") == COUNT - 1
            assert db.scalar("SELECT count(*) FROM _prisma_migrations") == COUNT
            settle(db)
        except AssertionError as exc:
            raise AssertionError(f"iteration {iteration}, seed {seed}, killed after "
                                 f"{delay:.3f}s: {exc}") from None
        finally:
            drop_database(db)
    print(f"{runs} kills (KILL_SEED={seed}, a whole deploy takes {total:.2f}s): "
          f"{dict(outcomes)}")
    return outcomes


def test_sigkill_at_random_moments(pg_server: PostgresServer, migrations: Migrations,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    outcomes = kill_at_random_moments(pg_server, migrations, capsys,
                                      iterations("KILL_ITERATIONS", 10))
    assert sum(outcomes.values()) == iterations("KILL_ITERATIONS", 10)


@pytest.mark.slow
def test_sigkill_soak(pg_server: PostgresServer, migrations: Migrations,
                      capsys: pytest.CaptureFixture[str]) -> None:
    runs = iterations("SOAK_ITERATIONS", 100)
    outcomes = kill_at_random_moments(pg_server, migrations, capsys, runs)
    assert outcomes["mid-deploy"] >= runs // 10, f"too few kills landed mid-deploy: {outcomes}"
