"""The ``_prisma_migrations`` table: the one place that knows Prisma's bookkeeping."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from psycopg import errors as pg_errors
from psycopg import sql

if TYPE_CHECKING:
    import psycopg

TABLE = "_prisma_migrations"
# While a statement-by-statement migration runs, its row's ``logs`` say how far it got
# (Prisma shows ``logs`` as the failure text of an unfinished row, so it reads well there).
PROGRESS = (
    "fast-note-migrate: applying statement by statement, {done} of {total} "
    "statements done; if no deployer runs, the next deploy resumes at statement "
    "{next}"
)
_PROGRESS = re.compile(
    r"^fast-note-migrate: applying statement by statement, (\d+) of "
    r"(\d+) statements done"
)


def _new_id() -> str:
    """A random UUID v4 as Prisma writes it (uuid, which imports platform, is imported
    only when a row is written: not on a no-op deploy, status or wait)."""
    import uuid

    return str(uuid.uuid4())


CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)"""

# A deployer notifies this channel (payload: the schema) when a migration's row changes, so
# that waiting pods look again at once instead of at their next poll.
CHANNEL = "fast_note_migrate"
COLUMNS = (
    "id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at,"
    " applied_steps_count"
)


@dataclass(frozen=True)
class Row:
    """One row of ``_prisma_migrations``."""

    id: str
    checksum: str
    finished_at: datetime | None
    migration_name: str
    logs: str | None
    rolled_back_at: datetime | None
    started_at: datetime
    applied_steps_count: int

    @property
    def is_applied(self) -> bool:
        return self.finished_at is not None and self.rolled_back_at is None

    @property
    def is_failed(self) -> bool:
        """Prisma's failed state: started, never finished, not rolled back."""
        return self.finished_at is None and self.rolled_back_at is None

    @property
    def is_rolled_back(self) -> bool:
        return self.rolled_back_at is not None

    @property
    def progress(self) -> tuple[int, int] | None:
        """(done, total) statements of an unfinished statement-by-statement run."""
        match = _PROGRESS.match(self.logs or "") if self.is_failed else None
        return (int(match.group(1)), int(match.group(2))) if match else None


def _progress(done: int, total: int) -> str:
    return PROGRESS.format(done=done, total=total, next=done + 1)


class History:
    """Reads and writes ``_prisma_migrations`` in one schema on one connection."""

    def __init__(self, conn: psycopg.Connection, schema: str) -> None:
        self.conn = conn
        self.schema = schema
        self.table = sql.Identifier(schema, TABLE)
        self._started: dict[str, str] = {}  # migration name -> id of its insert_started row

    def _q(self, template: str, **parts: sql.Composable) -> sql.Composed:
        return sql.SQL(template).format(table=self.table, **parts)

    def _text(self, template: str, **parts: sql.Composable) -> str:
        """A bookkeeping statement as text, for the runner to send with a script."""
        return self._q(template, **parts).as_string(self.conn)

    def exists(self) -> bool:
        found = self.conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL",
            (sql.Identifier(self.schema, TABLE).as_string(self.conn),),
        ).fetchone()
        return bool(found and found[0])

    def other_tables(self) -> list[str]:
        """Tables in the schema other than ours: a database that needs baselining (P3005).

        As Prisma decides it: ordinary tables only (no views, materialized views,
        partitioned or foreign tables), and not PostGIS's own ``spatial_ref_sys`` and
        ``geometry_columns``, so ``CREATE EXTENSION postgis`` alone needs no baseline."""
        rows = self.conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname <> %s "
            "AND lower(c.relname) NOT IN ('spatial_ref_sys', 'geometry_columns') ORDER BY 1",
            (self.schema, TABLE),
        ).fetchall()
        return [r[0] for r in rows]

    def create(self) -> None:
        """Create the schema (if missing) and the table, as Prisma does on first deploy."""
        found = self.conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)
        ).fetchone()
        if found is None:  # CREATE SCHEMA needs a privilege an existing schema does not
            self.conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
            )
        self.conn.execute(self._q(CREATE_TABLE))

    def rows(self) -> list[Row]:
        """All rows in start order; none when the table does not exist yet."""
        try:
            cursor = self.conn.execute(
                self._q(f"SELECT {COLUMNS} FROM {{table}} ORDER BY started_at, migration_name")
            )
        except pg_errors.UndefinedTable:
            return []
        return [Row(*r) for r in cursor.fetchall()]

    def fingerprint(self) -> tuple[object, ...] | None:
        """One row that changes whenever a row of the table does (a cheap poll: the rows
        are read again only when it changed); None without the table."""
        try:
            row = self.conn.execute(
                self._q(
                    # every INSERT or UPDATE gives its row a new xmin: cheap to sum, and
                    # a change of any column shows (a re-read after VACUUM FREEZE is harmless)
                    "SELECT count(*), sum(xmin::text::bigint) FROM {table}"
                )
            ).fetchone()
        except pg_errors.UndefinedTable:
            return None
        return tuple(row) if row is not None else None

    def listen(self) -> None:
        """Be told (``Connection.notifies``) when a deployer changes the history."""
        self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))

    def notify(self) -> str:
        """The NOTIFY for waiting pods (returned, not executed; delivered at commit)."""
        return self._text(
            "NOTIFY {channel}, {schema}",
            channel=sql.Identifier(CHANNEL),
            schema=sql.Literal(self.schema),
        )

    # Writes -----------------------------------------------------------------

    def insert_started(self, name: str, checksum: str, total: int) -> str:
        """The INSERT Prisma does before running a script, with the progress of a
        statement-by-statement run of ``total`` statements (returned, not executed)."""
        row_id = self._started[name] = _new_id()
        return self._text(
            "INSERT INTO {table} (id, checksum, migration_name, started_at, logs,"
            " applied_steps_count) VALUES ({id}, {checksum}, {name}, clock_timestamp(),"
            " {logs}, 0)",
            id=sql.Literal(row_id),
            checksum=sql.Literal(checksum),
            name=sql.Literal(name),
            logs=sql.Literal(_progress(0, total)),
        )

    def resume(self, name: str, row_id: str) -> None:
        """Continue the unfinished row ``row_id`` instead of inserting a new one."""
        self._started[name] = row_id

    def progress(self, name: str, done: int, total: int) -> str:
        """Record that the first ``done`` statements committed (returned, not executed)."""
        return self._text(
            "UPDATE {table} SET logs = {logs} WHERE id = {id}",
            logs=sql.Literal(_progress(done, total)),
            id=sql.Literal(self._started[name]),
        )

    def insert_applied(self, name: str, checksum: str) -> str:
        """The finished row in one statement, for a script run in the same transaction
        (returned, not executed): ``started_at`` is the transaction's start, so the row
        reads exactly as Prisma's INSERT-then-UPDATE leaves it."""
        return self._text(
            "INSERT INTO {table} (id, checksum, migration_name, started_at, finished_at,"
            " applied_steps_count) VALUES ({id}, {checksum}, {name}, now(),"
            " clock_timestamp(), 1)",
            id=sql.Literal(_new_id()),
            checksum=sql.Literal(checksum),
            name=sql.Literal(name),
        )

    def mark_finished(self, name: str) -> str:
        """The UPDATE Prisma does after a script succeeded (returned, not executed).

        It finds the row by the id of ``insert_started``: the table has no index on
        migration_name, and a scan per migration made a long deploy quadratic."""
        return self._text(
            "UPDATE {table} SET finished_at = clock_timestamp(), logs = NULL,"
            " applied_steps_count = applied_steps_count + 1"
            " WHERE {where} AND finished_at IS NULL AND rolled_back_at IS NULL",
            where=self._started_row(name),
        )

    def _started_row(self, name: str) -> sql.Composed:
        """The row ``insert_started`` (or ``resume``) is about, by id when known."""
        row_id = self._started.get(name)
        if row_id is not None:
            return self._q("id = {id}", id=sql.Literal(row_id))
        return self._q("migration_name = {name}", name=sql.Literal(name))

    def record_failure(self, name: str, checksum: str, logs: str, started: bool) -> None:
        """Write the failed row: update the started one, or insert it if it rolled back."""
        if started:
            self.conn.execute(
                self._q(
                    "UPDATE {table} SET logs = {logs} WHERE {where}"
                    " AND finished_at IS NULL AND rolled_back_at IS NULL",
                    logs=sql.Literal(logs),
                    where=self._started_row(name),
                )
            )
            return
        self.conn.execute(
            self._q(
                "INSERT INTO {table} (id, checksum, migration_name, logs, applied_steps_count)"
                " VALUES ({id}, {checksum}, {name}, {logs}, 0)",
                id=sql.Literal(_new_id()),
                checksum=sql.Literal(checksum),
                name=sql.Literal(name),
                logs=sql.Literal(logs),
            )
        )

    def mark_applied_without_running(self, name: str, checksum: str) -> None:
        """``resolve --applied``: roll back failed rows, record the migration as applied."""
        with self.conn.transaction():
            self.mark_rolled_back(name)
            self.conn.execute(
                self._q(
                    "INSERT INTO {table} (id, checksum, migration_name, logs, started_at,"
                    " finished_at, applied_steps_count)"
                    " VALUES ({id}, {checksum}, {name}, '', now(), now(), 0)",
                    id=sql.Literal(_new_id()),
                    checksum=sql.Literal(checksum),
                    name=sql.Literal(name),
                )
            )

    def mark_rolled_back(self, name: str) -> int:
        """Set ``rolled_back_at`` on the failed rows of ``name``; returns how many."""
        cursor = self.conn.execute(
            self._q(
                "UPDATE {table} SET rolled_back_at = now() WHERE migration_name = {name}"
                " AND finished_at IS NULL AND rolled_back_at IS NULL",
                name=sql.Literal(name),
            )
        )
        return cursor.rowcount

    def mark_applied_rolled_back(self, name: str) -> str:
        """``down``: mark the applied row of ``name`` rolled back (returned, not executed)."""
        return self._text(
            "UPDATE {table} SET rolled_back_at = now() WHERE migration_name = {name}"
            " AND finished_at IS NOT NULL AND rolled_back_at IS NULL",
            name=sql.Literal(name),
        )
