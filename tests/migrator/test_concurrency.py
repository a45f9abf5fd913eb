"""Many deployers at once, and a deployer killed mid-migration."""

from __future__ import annotations

import signal
import time

from .conftest import Database, Migrations, Migrator


def test_twenty_deployers_apply_thirty_migrations_exactly_once(
        migrate: Migrator, migrations: Migrations, db: Database) -> None:
    """20 processes race on 30 pending migrations: each applied once, every process exits 0."""
    migrations.add("log", "CREATE TABLE applied (name text NOT NULL);")
    for i in range(2, 31):
        migrations.add(f"m{i}", f"CREATE TABLE t{i} (id int);\n"
                                f"INSERT INTO applied VALUES ('m{i}');")
    processes = [migrate.spawn("deploy", "--lock-timeout", "2m", HOSTNAME=f"web-{n}")
                 for n in range(20)]
    results = [(p.wait(timeout=180), p.stderr.read() if p.stderr else "") for p in processes]
    assert [code for code, _ in results] == [0] * 20, [err for code, err in results if code]
    assert db.scalar("SELECT count(*) FROM _prisma_migrations") == 30
    assert db.scalar("SELECT count(DISTINCT migration_name) FROM _prisma_migrations"
                     " WHERE finished_at IS NOT NULL") == 30
    assert db.scalar("SELECT count(*) FROM applied") == 29
    appliers = [err for _, err in results if "applying" in err]
    assert len(appliers) >= 1


def wait_until(check, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_a_deployer_killed_mid_migration_leaves_nothing_half_done(
        migrate: Migrator, migrations: Migrations, db: Database) -> None:
    """SIGKILL during a migration: no half-applied migration, no lock left; the next
    deploy completes everything."""
    first = migrations.add("first", "CREATE TABLE first (id int);")
    slow = migrations.add("slow", "CREATE TABLE slow (id int);\nSELECT pg_sleep(30);\n"
                                  "INSERT INTO slow VALUES (1);")
    migrations.add("last", "CREATE TABLE last (id int);")
    victim = migrate.spawn("deploy")
    wait_until(lambda: db.scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%'"
        " AND state = 'active' AND pid <> pg_backend_pid()") == 1)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    wait_until(lambda: db.scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0, timeout=10)
    assert [(r[0], r[1]) for r in db.history()] == [(first, True)]
    assert "slow" not in db.tables()
    migrations.script(slow).write_text("CREATE TABLE slow (id int);\nINSERT INTO slow VALUES (1);")
    result = migrate("deploy")
    assert result.code == 0, result.err
    assert db.tables() == ["_prisma_migrations", "first", "last", "slow"]
    assert [r[1] for r in db.history()] == [True, True, True]


def test_waiting_replicas_do_not_hold_the_migration_lock(
        migrate: Migrator, migrations: Migrations, db: Database) -> None:
    """`wait` polls without the advisory lock, so it never delays a deploy."""
    migrations.copy_examples()
    waiters = [migrate.spawn("wait", "--timeout", "60s", "--interval", "100ms") for _ in range(3)]
    time.sleep(0.5)
    assert db.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    assert migrate("deploy", "--lock-timeout", "1s").code == 0
    assert all(w.wait(timeout=30) == 0 for w in waiters)


def test_second_deployer_waits_and_then_finds_nothing_to_do(
        migrate: Migrator, migrations: Migrations, db: Database) -> None:
    """While one deploy holds the lock the other waits, logs the holder, then is a no-op."""
    migrations.add("slow", "CREATE TABLE slow (id int);\nSELECT pg_sleep(1.5);")
    first = migrate.spawn("deploy", HOSTNAME="job-a")
    wait_until(lambda: db.scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted") == 1)
    second = migrate.spawn("deploy", HOSTNAME="job-b")
    _, second_log = second.communicate(timeout=60)
    assert first.wait(timeout=30) == 0
    assert second.returncode == 0, second_log
    assert "got the migration lock after" in second_log
    assert "no pending migrations" in second_log
    assert db.scalar("SELECT count(*) FROM _prisma_migrations") == 1
