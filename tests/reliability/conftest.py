"""Reliability tests: the migrator tests' fixtures, helpers that check the history
against the schema, and the soak switch.

The soak tests are marked ``slow``: they run with ``pytest -m slow`` (``make soak``) and
are skipped otherwise, so a plain ``pytest`` (``make test``) stays quick.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from testkit.pgserver import PostgresServer
from tests.migrator.conftest import (  # noqa: F401 - fixtures re-exported for these tests
    REPO,
    Database,
    Migrations,
    Migrator,
    db,
    migrate,
    migrations,
)

HERE = Path(__file__).parent
CLI = [sys.executable, "-m", "fast_note_migrate"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="soak test: run `make soak` (pytest -m slow)")
    for item in items:
        if HERE in item.path.parents and item.get_closest_marker("slow"):
            item.add_marker(skip)


def iterations(variable: str, default: int) -> int:
    return int(os.environ.get(variable) or default)


def new_database(server: PostgresServer) -> Database:
    name = f"r_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')  # type: ignore[arg-type]
    return Database(server, name)


def drop_database(database: Database) -> None:
    with psycopg.connect(database.server.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')  # type: ignore[arg-type]


def wait_until(check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not reached in {timeout}s: {what}"
        time.sleep(0.05)


ADVISORY_LOCKS = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                  "(SELECT oid FROM pg_database WHERE datname = current_database())")
MIGRATOR_SESSIONS = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                     " AND application_name LIKE 'fast-note-migrate%'")


def settle(database: Database, timeout: float = 15.0) -> None:
    """Wait until no migrator session is left on the database, then no advisory lock."""
    wait_until(lambda: database.scalar(MIGRATOR_SESSIONS) == 0, timeout,
               "the killed migrator's session to end")
    assert database.scalar(ADVISORY_LOCKS) == 0, "an advisory lock is left behind"


def snapshot(database: Database) -> tuple[object, ...]:
    """Everything a bad input must leave as it was: relations, history rows, locks."""
    relations = database.query(
        "SELECT n.nspname, c.relname, c.relkind FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
        "ORDER BY 1, 2")
    schemas = database.query("SELECT nspname FROM pg_namespace ORDER BY 1")
    history: list[tuple[object, ...]] = []
    if database.scalar("SELECT to_regclass('public._prisma_migrations') IS NOT NULL"):
        history = database.query("SELECT * FROM public._prisma_migrations ORDER BY id")
    return relations, schemas, history, database.scalar(ADVISORY_LOCKS)


def run(argv: list[str], env: dict[str, str], cwd: Path,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The CLI as a separate process with exactly this environment (no DATABASE_URL etc.
    inherited)."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "MIGRATIONS_DIR") and not k.startswith("MIGRATE_")}
    return subprocess.run([*CLI, *argv], capture_output=True, text=True, cwd=cwd,
                          env={**base, **env}, timeout=timeout)
