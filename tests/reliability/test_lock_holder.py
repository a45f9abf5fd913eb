"""Another session holds the migration lock (Prisma's advisory lock 72707369): deploy
and resolve wait for it, change nothing while waiting, and on timeout name the holder."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from testkit.cli import Migrator
from testkit.database import Database
from testkit.migrations_folder import MigrationsFolder
from testkit.waiting import wait_until

LOCK_KEY = 72707369


@pytest.fixture
def holder(db: Database) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """An operator's console holding the lock, idle in a transaction."""
    conn = db.connect(application_name="ops-console")
    conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    conn.execute("BEGIN")
    conn.execute("SELECT 1")
    yield conn
    conn.close()


@pytest.mark.parametrize(
    "argv", [("deploy",), ("resolve", "--applied", "20240101000001_a")], ids=["deploy", "resolve"]
)
def test_waits_then_names_the_holder_and_changes_nothing(
    db: Database,
    migrations: MigrationsFolder,
    migrate: Migrator,
    holder: psycopg.Connection[tuple[Any, ...]],
    argv: tuple[str, ...],
) -> None:
    migrations.add("20240101000001_a", "CREATE TABLE a (id int);")
    before = db.snapshot()
    started = time.monotonic()
    proc = migrate.spawn(*argv, "--lock-timeout", "2s", HOSTNAME="job-7f9c")
    _, err = proc.communicate(timeout=60)
    waited = time.monotonic() - started
    assert proc.returncode == 6, err
    assert waited >= 2.0, f"gave up after {waited:.1f}s"
    assert f"pid {holder.info.backend_pid} (ops-console)" in err
    assert "idle in transaction" in err
    assert "advisory lock 72707369" in err and "pg_terminate_backend" in err
    assert "Traceback" not in err
    assert db.snapshot() == before  # the holder's lock included, nothing else
    holder.close()
    db.settle()


def test_waits_for_the_holder_then_deploys(
    db: Database,
    migrations: MigrationsFolder,
    migrate: Migrator,
    holder: psycopg.Connection[tuple[Any, ...]],
) -> None:
    """The holder lets go after 1.5 s: deploy, which was waiting, takes over and applies."""
    migrations.add("a", "CREATE TABLE a (id int);")
    proc = migrate.spawn("deploy", "--lock-timeout", "30s", HOSTNAME="job-7f9c")
    wait_until(
        lambda: (
            db.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            == 1
        ),
        what="deploy queued on the lock",
    )
    assert db.tables() == []
    release = threading.Timer(1.5, lambda: holder.execute("SELECT pg_advisory_unlock_all()"))
    release.start()
    _, err = proc.communicate(timeout=60)
    release.join()
    assert proc.returncode == 0, err
    assert "got the migration lock after" in err
    assert db.tables() == ["_prisma_migrations", "a"]
    holder.close()
    assert db.advisory_locks() == 0
