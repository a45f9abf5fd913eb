"""PostgreSQL restarts in the middle of a deploy (a failover, a crash): the migrator
exits with a clear error, or resumes, and never records a migration that did not
commit. Runs on its own PostgreSQL (fsync on, as in production), not the session one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit.cli import Migrator
from testkit.database import Database
from testkit.migrations_folder import MigrationsFolder
from testkit.pgserver import PostgresServer
from testkit.waiting import wait_until

COUNT = 12


@pytest.fixture(scope="module")
def own_server() -> Iterator[PostgresServer]:
    with PostgresServer(fsync=True) as server:
        yield server


def build(migrations: MigrationsFolder) -> list[str]:
    names = []
    for i in range(1, COUNT + 1):
        name = f"20240101{i:06d}_slow{i:02d}"
        migrations.add(
            name,
            f"CREATE TABLE s{i:02d} (id int);\n"
            f"INSERT INTO s{i:02d} VALUES ({i});\nSELECT pg_sleep(0.1);\n",
        )
        names.append(name)
    return names


def consistent(db: Database, names: list[str]) -> list[str]:
    """Every recorded migration finished and its table holds its row; every other one
    left nothing. Returns the recorded names."""
    rows = sorted(db.history(), key=lambda r: r.name)
    assert all(r.finished and not r.rolled_back for r in rows), rows
    recorded = [r.name for r in rows]
    assert recorded == names[: len(recorded)]
    tables = set(db.tables())
    for i, name in enumerate(names, 1):
        assert (f"s{i:02d}" in tables) == (name in recorded), name
    return recorded


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restart_mid_deploy(
    own_server: PostgresServer, migrations: MigrationsFolder, mode: str
) -> None:
    """`fast` ends every session (a planned restart); `immediate` is a crash with
    recovery. The migration in flight is rolled back by PostgreSQL, and not recorded."""
    names = build(migrations)
    db = Database.on(own_server, prefix="r_")
    migrator = Migrator(db.url(), migrations.path)
    deployer = migrator.spawn("deploy", MIGRATE_CONNECT_TIMEOUT="20s")
    wait_until(
        lambda: sum(r.finished for r in db.history(missing_ok=True)) >= 3,
        timeout=60,
        what="3 migrations applied",
    )
    own_server.stop(mode)
    own_server.start()
    out, err = deployer.communicate(timeout=120)
    output = out + err
    print(f"exit {deployer.returncode}: {err.strip().splitlines()[-2:]}")
    assert "Traceback" not in output
    if deployer.returncode == 0:  # the migrator reconnected and resumed
        assert consistent(db, names) == names
    else:
        assert deployer.returncode in (1, 6), output
        assert "lost the database connection" in err or "not reachable" in err, err
        assert "what to do:" in err
        recorded = consistent(db, names)
        assert 3 <= len(recorded) < COUNT
        in_flight = names[len(recorded)]
        assert in_flight in err, f"the error does not name {in_flight}:\n{err}"
    done = migrator.run("deploy", timeout=120, MIGRATE_CONNECT_TIMEOUT="20s")
    assert done.code == 0, done.err
    assert consistent(db, names) == names
    assert len(db.history()) == COUNT


# Quick migrations commit without waiting for their WAL flush; the run's last commit waits
# for it, which flushes every earlier one (runner.DEFER_FLUSH).
TINY = 200


def build_tiny(migrations: MigrationsFolder, count: int = TINY) -> list[str]:
    names = []
    for i in range(1, count + 1):
        name = f"20240101{i:06d}_tiny{i:03d}"
        migrations.add(
            name, f"CREATE TABLE s{i:02d} (id int);\nINSERT INTO s{i:02d} VALUES ({i});\n"
        )
        names.append(name)
    return names


def wal_flushes(db: Database) -> int:
    """WAL fsyncs of the whole server so far (pg_stat_io from PostgreSQL 18, pg_stat_wal
    before)."""
    if db.scalar("SELECT current_setting('server_version_num')::int") >= 180000:
        return int(db.scalar("SELECT sum(fsyncs) FROM pg_stat_io WHERE object = 'wal'") or 0)
    return int(db.scalar("SELECT wal_sync FROM pg_stat_wal"))


def test_exit_0_means_every_migration_survives_a_crash(
    own_server: PostgresServer, migrations: MigrationsFolder
) -> None:
    """The moment deploy exits 0, PostgreSQL crashes (no shutdown checkpoint): every quick
    migration committed without waiting for the flush is still applied after recovery."""
    names = build_tiny(migrations)
    db = Database.on(own_server, prefix="d_")
    done = Migrator(db.url(), migrations.path).run("deploy", "--lint-policy", "off", timeout=120)
    assert done.code == 0, done.err
    own_server.stop("immediate")
    own_server.start()
    assert consistent(db, names) == names


def test_quick_migrations_do_not_wait_for_a_flush_each(
    own_server: PostgresServer, migrations: MigrationsFolder
) -> None:
    """What makes a deploy of many small migrations faster than psql's one commit per
    statement: far fewer WAL flushes than migrations (each one waited for its flush)."""
    names = build_tiny(migrations)
    db = Database.on(own_server, prefix="f_")
    db.run("SELECT pg_stat_force_next_flush()")
    before = wal_flushes(db)
    done = Migrator(db.url(), migrations.path).run("deploy", "--lint-policy", "off", timeout=120)
    assert done.code == 0, done.err
    wait_until(lambda: wal_flushes(db) > before, timeout=10, what="the WAL statistics")
    flushes = wal_flushes(db) - before
    print(f"{len(names)} migrations, {flushes} WAL flushes")
    assert flushes < len(names) / 2
    assert consistent(db, names) == names


def test_crash_mid_deploy_of_quick_migrations_leaves_a_consistent_history(
    own_server: PostgresServer, migrations: MigrationsFolder
) -> None:
    """A crash while quick migrations are applied may undo the last of them: always a
    migration together with its history row, a suffix of the run; deploy then completes."""
    names = build_tiny(migrations, 1000)
    db = Database.on(own_server, prefix="q_")
    migrator = Migrator(db.url(), migrations.path)
    deployer = migrator.spawn("deploy", "--lint-policy", "off", MIGRATE_CONNECT_TIMEOUT="20s")
    wait_until(
        lambda: sum(r.finished for r in db.history(missing_ok=True)) >= 50,
        timeout=60,
        what="50 migrations applied",
    )
    own_server.stop("immediate")
    own_server.start()
    out, err = deployer.communicate(timeout=120)
    assert "Traceback" not in out + err
    recorded = consistent(db, names)
    print(f"exit {deployer.returncode}, {len(recorded)} of {len(names)} recorded after the crash")
    if deployer.returncode != 0:
        assert deployer.returncode in (1, 6), out + err
        assert "what to do:" in err
    done = migrator.run(
        "deploy", "--lint-policy", "off", timeout=120, MIGRATE_CONNECT_TIMEOUT="20s"
    )
    assert done.code == 0, done.err
    assert consistent(db, names) == names
