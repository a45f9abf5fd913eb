"""Another session holds the migration lock (Prisma's advisory lock 72707369): deploy
and resolve wait for it, change nothing while waiting, and on timeout name the holder."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from .conftest import (
    ADVISORY_LOCKS,
    CLI,
    REPO,
    Database,
    Migrations,
    settle,
    snapshot,
    wait_until,
)

LOCK_KEY = 72707369


@pytest.fixture
def holder(db: Database) -> Iterator[psycopg.Connection]:
    """An operator's console holding the lock, idle in a transaction."""
    conn = psycopg.connect(db.url(), autocommit=True, application_name="ops-console")
    conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    conn.execute("BEGIN")
    conn.execute("SELECT 1")
    yield conn
    conn.close()


def cli(db: Database, migrations: Migrations, *argv: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": db.url(), "MIGRATIONS_DIR": str(migrations.path),
           "HOSTNAME": "job-7f9c"}
    return subprocess.Popen([*CLI, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=REPO)


@pytest.mark.parametrize("argv", [("deploy",), ("resolve", "--applied", "20240101000001_a")],
                         ids=["deploy", "resolve"])
def test_waits_then_names_the_holder_and_changes_nothing(
        db: Database, migrations: Migrations, holder: psycopg.Connection,
        argv: tuple[str, ...]) -> None:
    migrations.add("a", "CREATE TABLE a (id int);", name="20240101000001_a")
    before = snapshot(db)
    started = time.monotonic()
    proc = cli(db, migrations, *argv, "--lock-timeout", "2s")
    _, err = proc.communicate(timeout=60)
    waited = time.monotonic() - started
    assert proc.returncode == 6, err
    assert waited >= 2.0, f"gave up after {waited:.1f}s"
    assert f"pid {holder.info.backend_pid} (ops-console)" in err
    assert "idle in transaction" in err
    assert "advisory lock 72707369" in err and "pg_terminate_backend" in err
    assert "Traceback" not in err
    assert snapshot(db) == before  # the holder's lock included, nothing else
    holder.close()
    settle(db)


def test_waits_for_the_holder_then_deploys(db: Database, migrations: Migrations,
                                           holder: psycopg.Connection) -> None:
    """The holder lets go after 1.5 s: deploy, which was waiting, takes over and applies."""
    migrations.add("a", "CREATE TABLE a (id int);")
    proc = cli(db, migrations, "deploy", "--lock-timeout", "30s")
    wait_until(lambda: db.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                 "AND NOT granted") == 1, what="deploy queued on the lock")
    assert db.tables() == []
    release = threading.Timer(1.5, lambda: holder.execute("SELECT pg_advisory_unlock_all()"))
    release.start()
    _, err = proc.communicate(timeout=60)
    release.join()
    assert proc.returncode == 0, err
    assert "got the migration lock after" in err
    assert db.tables() == ["_prisma_migrations", "a"]
    holder.close()
    assert db.scalar(ADVISORY_LOCKS) == 0
