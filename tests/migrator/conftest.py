"""Fixtures for the migrator tests: a fresh database per test, a migrations folder
builder, and a runner for the real CLI (in-process, or as a separate process)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fast_note_migrate.cli import main
from testkit.pgserver import PostgresServer

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "prisma" / "migrations"
CLI = [sys.executable, "-m", "fast_note_migrate"]


@dataclass
class Database:
    """A fresh database on the session's PostgreSQL."""

    server: PostgresServer
    name: str

    def url(self, **params: str) -> str:
        return self.server.url(self.name, **params)

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(), autocommit=True)

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            return conn.execute(sql, params or None).fetchall()  # type: ignore[arg-type]

    def run(self, sql: str) -> None:
        """Execute statements that return no rows."""
        with self.connect() as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def scalar(self, sql: str, *params: object) -> Any:
        rows = self.query(sql, *params)
        return rows[0][0] if rows else None

    def tables(self, schema: str = "public") -> list[str]:
        return [r[0] for r in self.query(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", schema)]

    def history(self, schema: str = "public") -> list[tuple[Any, ...]]:
        return self.query(
            f'SELECT migration_name, finished_at IS NOT NULL, rolled_back_at IS NOT NULL, '
            f'logs, applied_steps_count, checksum FROM "{schema}"._prisma_migrations '
            "ORDER BY started_at, migration_name")


@pytest.fixture
def db(pg_server: PostgresServer) -> Database:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    return Database(pg_server, name)


class Migrations:
    """Builds a Prisma migrations folder in a temporary directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def add(self, slug: str, sql: str | bytes, *, name: str | None = None) -> str:
        self.count += 1
        name = name or f"2024010100{self.count:04d}_{slug}"
        folder = self.path / name
        folder.mkdir()
        data = sql.encode() if isinstance(sql, str) else sql
        (folder / "migration.sql").write_bytes(data)
        return name

    def script(self, name: str) -> Path:
        return self.path / name / "migration.sql"

    def copy_examples(self) -> list[str]:
        names = []
        for folder in sorted(p for p in EXAMPLES.iterdir() if p.is_dir()):
            names.append(self.add("", (folder / "migration.sql").read_bytes(), name=folder.name))
        return names


@pytest.fixture
def migrations(tmp_path: Path) -> Migrations:
    return Migrations(tmp_path / "migrations")


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        return self.out + self.err


class Migrator:
    """Runs `fast-note-migrate VERB --database-url … --migrations-dir … ARGS`."""

    def __init__(self, db: Database, migrations: Migrations,
                 capsys: pytest.CaptureFixture[str]) -> None:
        self.url = db.url()
        self.dir = migrations.path
        self.capsys = capsys

    def argv(self, verb: str, *args: str) -> list[str]:
        return [verb, "--database-url", self.url, "--migrations-dir", str(self.dir), *args]

    def __call__(self, verb: str, *args: str) -> Result:
        self.capsys.readouterr()
        code = main(self.argv(verb, *args))
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def spawn(self, verb: str, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*CLI, *self.argv(verb, *args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env={**os.environ, **env}, cwd=REPO)


@pytest.fixture
def migrate(db: Database, migrations: Migrations,
            capsys: pytest.CaptureFixture[str]) -> Iterator[Migrator]:
    yield Migrator(db, migrations, capsys)


def run_cli(*argv: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The CLI as a separate process, with a controlled environment."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "MIGRATIONS_DIR") and not k.startswith("MIGRATE_")}
    return subprocess.run([*CLI, *argv], capture_output=True, text=True, cwd=REPO,
                          env={**base, **(env or {})}, timeout=timeout)
