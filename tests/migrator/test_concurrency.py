"""Many deployers at once, and a deployer killed mid-migration."""

from __future__ import annotations

import signal
import time

from testkit.cli import Migrator
from testkit.database import Database
from testkit.migrations_folder import MigrationsFolder
from testkit.waiting import wait_until


def test_twenty_deployers_apply_thirty_migrations_exactly_once(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """20 processes race on 30 pending migrations: each applied once, every process exits 0."""
    migrations.add("log", "CREATE TABLE applied (name text NOT NULL);")
    for i in range(2, 31):
        migrations.add(
            f"m{i}", f"CREATE TABLE t{i} (id int);\nINSERT INTO applied VALUES ('m{i}');"
        )
    processes = [
        migrate.spawn("deploy", "--lock-timeout", "2m", HOSTNAME=f"web-{n}") for n in range(20)
    ]
    results = [(p.wait(timeout=180), p.stderr.read() if p.stderr else "") for p in processes]
    assert [code for code, _ in results] == [0] * 20, [err for code, err in results if code]
    history = db.history()
    assert len(history) == 30
    assert len({r.name for r in history if r.finished}) == 30
    assert db.scalar("SELECT count(*) FROM applied") == 29
    appliers = [err for _, err in results if "applying" in err]
    assert len(appliers) >= 1


def test_a_deployer_killed_mid_migration_leaves_nothing_half_done(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """SIGKILL during a migration: no half-applied migration, no lock left; the next
    deploy completes everything."""
    first = migrations.add("first", "CREATE TABLE first (id int);")
    slow = migrations.add(
        "slow", "CREATE TABLE slow (id int);\nSELECT pg_sleep(30);\nINSERT INTO slow VALUES (1);"
    )
    migrations.add("last", "CREATE TABLE last (id int);")
    victim = migrate.spawn("deploy")
    wait_until(
        lambda: (
            db.scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%'"
                " AND state = 'active' AND pid <> pg_backend_pid()"
            )
            == 1
        )
    )
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    wait_until(
        lambda: db.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0,
        timeout=10,
    )
    assert [(r.name, r.finished) for r in db.history()] == [(first, True)]
    assert "slow" not in db.tables()
    migrations.script(slow).write_text("CREATE TABLE slow (id int);\nINSERT INTO slow VALUES (1);")
    result = migrate("deploy")
    assert result.code == 0, result.err
    assert db.tables() == ["_prisma_migrations", "first", "last", "slow"]
    assert [r.finished for r in db.history()] == [True, True, True]


def test_waiting_replicas_do_not_hold_the_migration_lock(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """`wait` polls without the advisory lock, so it never delays a deploy."""
    migrations.copy_examples()
    waiters = [migrate.spawn("wait", "--timeout", "60s", "--interval", "100ms") for _ in range(3)]
    time.sleep(0.5)
    assert db.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    assert migrate("deploy", "--lock-timeout", "1s").code == 0
    assert all(w.wait(timeout=30) == 0 for w in waiters)


def test_second_deployer_waits_and_then_finds_nothing_to_do(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """While one deploy holds the lock the other waits, logs the holder, then is a no-op."""
    migrations.add("slow", "CREATE TABLE slow (id int);\nSELECT pg_sleep(1.5);")
    first = migrate.spawn("deploy", HOSTNAME="job-a")
    wait_until(
        lambda: (
            db.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted") == 1
        )
    )
    second = migrate.spawn("deploy", HOSTNAME="job-b")
    _, second_log = second.communicate(timeout=60)
    assert first.wait(timeout=30) == 0
    assert second.returncode == 0, second_log
    assert "got the migration lock after" in second_log
    assert "no pending migrations" in second_log
    assert len(db.history()) == 1
