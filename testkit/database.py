"""A database of its own on a PostgreSQL server, and what the tests read from it.

A :class:`Database` needs only an admin URL of the server (any database there, with a role
allowed to create databases) and its name, so it serves a throw-away
:class:`~testkit.pgserver.PostgresServer` as well as a server given by URL. The migration
history, Prisma's ``_prisma_migrations`` table, is read in one place,
:meth:`Database.history`, into :class:`HistoryRow` values.
"""

from __future__ import annotations

import subprocess
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import class_row

from testkit.pgserver import PostgresServer
from testkit.waiting import wait_until

HISTORY_TABLE = "_prisma_migrations"
MIGRATOR_APPLICATION = "fast-note-migrate"  # the migrator's application_name starts so


@dataclass(frozen=True)
class HistoryRow:
    """One row of ``_prisma_migrations`` (``migration_name`` is ``name``,
    ``applied_steps_count`` is ``steps``)."""

    name: str
    checksum: str
    started_at: datetime
    finished_at: datetime | None
    rolled_back_at: datetime | None
    logs: str | None
    steps: int
    id: str

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @property
    def rolled_back(self) -> bool:
        return self.rolled_back_at is not None

    @property
    def applied(self) -> bool:
        """Finished and not rolled back: the migration is part of the schema."""
        return self.finished and not self.rolled_back


_HISTORY = (
    "SELECT migration_name AS name, checksum, started_at, finished_at, rolled_back_at, "
    "logs, applied_steps_count AS steps, id FROM {} "
    "ORDER BY started_at, migration_name"
)


@dataclass(frozen=True)
class Database:
    """One database, reached with the credentials and parameters of ``admin_url``."""

    admin_url: str
    name: str
    bin_dir: Path | None = None  # where pg_dump is; None: from PATH

    @classmethod
    def create(cls, admin_url: str, *, prefix: str = "t_", bin_dir: Path | None = None) -> Database:
        """A new, empty database (from template0) with a unique name starting with ``prefix``."""
        database = cls(admin_url, f"{prefix}{uuid.uuid4().hex[:12]}", bin_dir)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                pgsql.SQL("CREATE DATABASE {} TEMPLATE template0").format(
                    pgsql.Identifier(database.name)
                )
            )
        return database

    @classmethod
    def on(cls, server: PostgresServer, *, prefix: str = "t_") -> Database:
        """A new, empty database on ``server``."""
        return cls.create(server.url(), prefix=prefix, bin_dir=server.install / "bin")

    def drop(self) -> None:
        """Drop the database, ending the sessions still connected to it."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    pgsql.Identifier(self.name)
                )
            )

    # Connecting ---------------------------------------------------------------------------

    def url(self, **params: str) -> str:
        """The admin URL with this database, plus ``params`` as query parameters."""
        parts = urlsplit(self.admin_url)
        query = "&".join(filter(None, [parts.query, *(f"{k}={v}" for k, v in params.items())]))
        return urlunsplit(parts._replace(path=f"/{self.name}", query=query))

    @property
    def host(self) -> str:
        return urlsplit(self.admin_url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.admin_url).port or 5432

    def connect(self, application_name: str = "testkit") -> psycopg.Connection[tuple[Any, ...]]:
        """An autocommit connection; ``application_name`` is what pg_stat_activity shows."""
        return psycopg.connect(self.url(), autocommit=True, application_name=application_name)

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """The rows of one statement (``%s`` placeholders take ``params``)."""
        with self.connect() as conn:
            return conn.execute(sql, params or None).fetchall()

    def scalar(self, sql: str, *params: object) -> Any:
        """The first column of the first row, or None without rows."""
        rows = self.query(sql, *params)
        return rows[0][0] if rows else None

    def run(self, sql: str, *params: object) -> None:
        """Execute statements that return no rows."""
        with self.connect() as conn:
            conn.execute(sql, params or None)

    # The schema ---------------------------------------------------------------------------

    def tables(self, schema: str = "public") -> list[str]:
        return [
            r[0]
            for r in self.query(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", schema
            )
        ]

    def columns(self, table: str, schema: str = "public") -> list[str]:
        return [
            r[0]
            for r in self.query(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s"
                " AND table_name = %s ORDER BY ordinal_position",
                schema,
                table,
            )
        ]

    def schema_dump(self) -> str:
        """``pg_dump --schema-only`` without the history table, owners and the dump's
        random ``\\restrict`` key, so two dumps of the same schema are equal."""
        pg_dump = str(self.bin_dir / "pg_dump") if self.bin_dir else "pg_dump"
        done = subprocess.run(
            [
                pg_dump,
                "--schema-only",
                "--no-owner",
                f"--exclude-table={HISTORY_TABLE}",
                "-d",
                self.url(),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return "\n".join(
            line
            for line in done.stdout.splitlines()
            if not line.startswith(("\\restrict", "\\unrestrict"))
        )

    # The migration history ----------------------------------------------------------------

    def has_history_table(self, schema: str = "public") -> bool:
        """Whether ``_prisma_migrations`` exists in ``schema``."""
        return bool(
            self.scalar("SELECT to_regclass(%s) IS NOT NULL", f'"{schema}".{HISTORY_TABLE}')
        )

    def history(self, schema: str = "public", *, missing_ok: bool = False) -> list[HistoryRow]:
        """Every row of ``_prisma_migrations`` in ``schema``, oldest first. Without the table
        this fails, or with ``missing_ok`` returns no rows."""
        if missing_ok and not self.has_history_table(schema):
            return []
        with self.connect() as conn:
            cursor = conn.cursor(row_factory=class_row(HistoryRow))
            return cursor.execute(
                pgsql.SQL(_HISTORY).format(pgsql.Identifier(schema, HISTORY_TABLE))
            ).fetchall()

    def applied(self, schema: str = "public", *, missing_ok: bool = False) -> list[str]:
        """The names of the applied migrations (finished, not rolled back), oldest first."""
        return [r.name for r in self.history(schema, missing_ok=missing_ok) if r.applied]

    # Locks and sessions -------------------------------------------------------------------

    def advisory_locks(self) -> int:
        """Advisory locks held or awaited in this database."""
        return int(
            self.scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        )

    def migrator_sessions(self, verb: str = "") -> int:
        """Sessions of fast-note-migrate (running ``verb``, or any) connected to this database."""
        prefix = f"{MIGRATOR_APPLICATION} {verb}" if verb else MIGRATOR_APPLICATION
        return int(
            self.scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name LIKE %s",
                f"{prefix}%",
            )
        )

    def settle(self, timeout: float = 15.0) -> None:
        """Wait until no migrator session is left on the database, then check that no
        advisory lock is left either."""
        wait_until(
            lambda: self.migrator_sessions() == 0, timeout, "the killed migrator's session to end"
        )
        assert self.advisory_locks() == 0, "an advisory lock is left behind"

    def snapshot(self) -> tuple[object, ...]:
        """Everything a refused command must leave as it was: relations, schemas, the
        history table's columns and rows, advisory locks."""
        relations = self.query(
            "SELECT n.nspname, c.relname, c.relkind FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
            "ORDER BY 1, 2"
        )
        schemas = self.query("SELECT nspname FROM pg_namespace ORDER BY 1")
        history: list[HistoryRow] = []
        columns: list[str] = []
        if self.has_history_table():
            columns = self.columns(HISTORY_TABLE)
            history = sorted(self.history(), key=lambda row: row.id)
        return relations, schemas, columns, history, self.advisory_locks()


class LockHolder:
    """Another session that holds a table lock in an open transaction until released."""

    def __init__(
        self,
        db: Database,
        table: str,
        mode: str = "ACCESS SHARE",
        application_name: str = "report-job",
    ) -> None:
        self.conn = db.connect(application_name=application_name)
        self.conn.execute("BEGIN")
        self.conn.execute(f'LOCK TABLE "{table}" IN {mode} MODE')
        self.pid = self.conn.info.backend_pid

    def release_after(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(seconds, self.release)
        timer.start()
        return timer

    def release(self) -> None:
        if not self.conn.closed:
            self.conn.execute("ROLLBACK")
            self.conn.close()
