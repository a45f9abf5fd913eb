"""Fixtures for the safety tests: one PostgreSQL for the session, a fresh database per
test, a migrations folder to build, and the real CLI run in-process."""

from __future__ import annotations

import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fast_note_migrate.cli import main
from testkit.pgserver import PostgresServer

REPO = Path(__file__).resolve().parents[2]
PRISMA_EXAMPLES = REPO / "examples" / "prisma" / "migrations"
SAFETY_EXAMPLES = REPO / "examples" / "safety" / "migrations"
PRISMA_LAST = "20240301120000_index_notes_updated_at"  # last of examples/prisma
RELEASE_N = "20240401090400_validate_user_email_address"  # last expand step of the rename


def example_folders() -> list[Path]:
    """Every example migration folder, in name order."""
    return sorted((p for base in (PRISMA_EXAMPLES, SAFETY_EXAMPLES) for p in base.iterdir()
                   if p.is_dir()), key=lambda p: p.name)


@dataclass
class Database:
    server: PostgresServer
    name: str

    def url(self) -> str:
        return self.server.url(self.name)

    def connect(self, application_name: str = "safety-test") -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(), autocommit=True, application_name=application_name)

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            return conn.execute(sql, params or None).fetchall()  # type: ignore[arg-type]

    def scalar(self, sql: str, *params: object) -> Any:
        rows = self.query(sql, *params)
        return rows[0][0] if rows else None

    def columns(self, table: str) -> list[str]:
        return [r[0] for r in self.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'"
            " AND table_name = %s ORDER BY ordinal_position", table)]

    def history(self) -> list[tuple[str, bool, bool, str | None]]:
        """(name, finished, rolled back, logs) per row, in start order."""
        return [tuple(r) for r in self.query(  # type: ignore[misc]
            "SELECT migration_name, finished_at IS NOT NULL, rolled_back_at IS NOT NULL, logs"
            " FROM _prisma_migrations ORDER BY started_at, migration_name")]

    def schema_dump(self) -> str:
        done = subprocess.run(
            [str(self.server.binary("pg_dump")), "--schema-only", "--no-owner",
             "--exclude-table=_prisma_migrations", "-d", self.url()],
            check=True, capture_output=True, text=True)
        return "\n".join(line for line in done.stdout.splitlines()
                         if not line.startswith(("\\restrict", "\\unrestrict")))


@pytest.fixture
def db(pg_server: PostgresServer) -> Database:
    name = f"s_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')  # type: ignore[arg-type]
    return Database(pg_server, name)


class Folder:
    """A Prisma migrations folder in a temporary directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def add(self, name: str, sql: str, down: str | None = None) -> str:
        folder = self.path / name
        folder.mkdir()
        (folder / "migration.sql").write_text(sql)
        if down is not None:
            (folder / "down.sql").write_text(down)
        return name

    def copy(self, *, since: str = "", upto: str = "~") -> list[str]:
        """Copy the example migrations (examples/prisma, then the email rename of
        examples/safety) named after ``since``, up to ``upto``."""
        names = []
        for source in example_folders():
            if since < source.name <= upto:
                shutil.copytree(source, self.path / source.name)
                names.append(source.name)
        return names

    def remove_down(self, name: str) -> None:
        (self.path / name / "down.sql").unlink()


@pytest.fixture
def folder(tmp_path: Path) -> Folder:
    return Folder(tmp_path / "migrations")


@dataclass
class Result:
    code: int
    out: str
    err: str


class Cli:
    def __init__(self, db: Database, folder: Folder, capsys: pytest.CaptureFixture[str]) -> None:
        self.db = db
        self.folder = folder
        self.capsys = capsys

    def __call__(self, verb: str, *args: str) -> Result:
        self.capsys.readouterr()
        code = main([verb, "--database-url", self.db.url(), "--migrations-dir",
                     str(self.folder.path), *args])
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)


@pytest.fixture
def cli(db: Database, folder: Folder, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Cli:
    for name in ("MIGRATE_LINT_POLICY", "MIGRATE_STATEMENT_LOCK_TIMEOUT", "MIGRATE_LOCK_RETRIES",
                 "MIGRATE_PHASE", "MIGRATE_WAIT_FOR_ROLLOUT"):
        monkeypatch.delenv(name, raising=False)
    return Cli(db, folder, capsys)


class LockHolder:
    """Another session that holds a table lock in an open transaction until released."""

    def __init__(self, db: Database, table: str, mode: str = "ACCESS SHARE") -> None:
        self.conn = db.connect(application_name="report-job")
        self.conn.execute("BEGIN")
        self.conn.execute(f'LOCK TABLE "{table}" IN {mode} MODE')  # type: ignore[arg-type]
        self.pid = self.conn.info.backend_pid

    def release_after(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(seconds, self.release)
        timer.start()
        return timer

    def release(self) -> None:
        if not self.conn.closed:
            self.conn.execute("ROLLBACK")
            self.conn.close()


@pytest.fixture
def hold_lock(db: Database) -> Iterator[Callable[..., LockHolder]]:
    """``hold_lock(table, mode)``: a session named report-job holding a table lock."""
    holders: list[LockHolder] = []

    def hold(table: str, mode: str = "ACCESS SHARE") -> LockHolder:
        holder = LockHolder(db, table, mode)
        holders.append(holder)
        return holder

    yield hold
    for holder in holders:
        holder.release()
