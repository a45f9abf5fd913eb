"""One function per CLI verb; each returns an exit code or raises a MigrateError."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import lock
from .db import DatabaseUrl, connect, redact
from .durations import format_duration
from .errors import (
    ConfigError,
    DatabaseError,
    ExitCode,
    HistoryBlocked,
    MigrationFailed,
    NotUpToDate,
)
from .migrations import Migration, MigrationsDir
from .state import MigrationState, Report, State

if TYPE_CHECKING:
    import psycopg

    from .history import History

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What every verb needs: where the database and the migrations are."""

    url: DatabaseUrl
    migrations: MigrationsDir
    connect_timeout: float

    @contextmanager
    def connection(self, verb: str) -> Iterator[psycopg.Connection]:
        conn = connect(self.url, verb, self.connect_timeout)
        try:
            yield conn
        finally:
            conn.close()

    def history(self, conn: psycopg.Connection) -> History:
        from .history import History

        return History(conn, self.url.schema)

    def report(self, conn: psycopg.Connection, local: list[Migration]) -> Report:
        return Report.build(local, self.history(conn).rows())


def out(text: str = "") -> None:
    print(text, file=sys.stdout, flush=True)


# deploy ---------------------------------------------------------------------------

# Statements that manage their own transaction or cannot run inside one: such a file
# runs as Prisma runs it (INSERT, script, UPDATE as three steps), not wrapped in one.
_NEEDS_OWN_TRANSACTION = re.compile(
    r"\b(BEGIN|COMMIT|ROLLBACK|START\s+TRANSACTION|END\s*;|SAVEPOINT|CONCURRENTLY|"
    r"VACUUM|ALTER\s+SYSTEM|CREATE\s+DATABASE|DROP\s+DATABASE|ALTER\s+TYPE\s+\S+\s+ADD\s+VALUE)",
    re.IGNORECASE,
)


def _failure_logs(exc: Exception, offset: int, script: str) -> str:
    """Prisma-style logs text for a failed script: SQLSTATE, message, position."""
    import psycopg

    if not isinstance(exc, psycopg.Error):
        return str(exc)
    diag = exc.diag
    lines = [f"Database error code: {diag.sqlstate or 'unknown'}", "", "Database error:",
             f"{diag.severity or 'ERROR'}: {diag.message_primary or str(exc).strip()}"]
    for label, value in (("DETAIL", diag.message_detail), ("HINT", diag.message_hint)):
        if value:
            lines.append(f"{label}: {value}")
    if diag.statement_position:
        position = max(1, int(diag.statement_position) - offset)
        line = script.count("\n", 0, position - 1) + 1
        lines += ["", f"Position: character {position}, line {line} of migration.sql"]
    return redact("\n".join(lines))


def _apply_one(conn: psycopg.Connection, history: History, migration: Migration) -> None:
    """Apply one migration and record it in Prisma's table, or record its failure."""
    import psycopg

    script = migration.executable_sql()
    insert = history.insert_started(migration.name, migration.checksum).as_string(conn)
    finish = history.mark_finished(migration.name).as_string(conn)
    wrapped = not _NEEDS_OWN_TRANSACTION.search(script)
    try:
        if wrapped:
            # One simple-protocol query is one implicit transaction: the script and its
            # bookkeeping commit together or not at all, even if this process is killed.
            prefix = f"{insert};\n"
            conn.execute(f"{prefix}{script}\n;\n{finish}")
        else:
            prefix = ""
            conn.execute(insert)
            conn.execute(script)
            conn.execute(finish)
    except psycopg.OperationalError as exc:
        if conn.closed or conn.broken:
            raise DatabaseError(
                f"lost the database connection while applying {migration.name}: "
                f"{redact(str(exc).strip())}",
                hint="PostgreSQL rolled back the unfinished migration unless it had committed; "
                "run `fast-note-migrate status`, then deploy again",
            ) from None
        _record_and_raise(conn, history, migration, exc, len(prefix), script, started=not wrapped)
    except psycopg.Error as exc:
        _record_and_raise(conn, history, migration, exc, len(prefix), script, started=not wrapped)


def _record_and_raise(conn: psycopg.Connection, history: History, migration: Migration,
                      exc: Exception, offset: int, script: str, *, started: bool) -> None:
    logs = _failure_logs(exc, offset, script)
    history.record_failure(migration.name, migration.checksum, logs, started=started)
    raise MigrationFailed(
        f"migration {migration.name} failed and is recorded as failed:\n{logs}",
        hint=f"fix the migration, then mark it with `fast-note-migrate resolve --rolled-back "
        f"{migration.name}` (if it changed nothing) or `resolve --applied {migration.name}` "
        "(if you finished it by hand), and deploy again",
        prisma_code="P3018",
    )


def _blocked(failed: list[MigrationState]) -> HistoryBlocked:
    name = failed[0].name
    return HistoryBlocked(
        f"migration {name} failed earlier and blocks every later migration",
        hint=f"read its logs with `fast-note-migrate status`; undo what it did, then run "
        f"`fast-note-migrate resolve --rolled-back {name}`, or finish it by hand and run "
        f"`fast-note-migrate resolve --applied {name}`",
        prisma_code="P3009",
    )


def _check_baseline(history: History) -> None:
    others = history.other_tables()
    if others:
        shown = ", ".join(others[:5]) + (" …" if len(others) > 5 else "")
        raise ConfigError(
            f"schema {history.schema!r} already has tables ({shown}) but no migration history",
            hint="baseline it: for each migration already reflected in the schema, run "
            "`fast-note-migrate resolve --applied <name>`, then deploy",
            prisma_code="P3005",
        )


def _warn_drift(report: Report) -> None:
    for item in report.edited:
        log.warning("migration %s was edited after it was applied (checksum differs)", item.name)
    for item in report.missing_locally:
        log.warning("migration %s is applied but not in the migrations folder "
                    "(the database is ahead of this image)", item.name)


def deploy(ctx: Context, *, lock_timeout: float, dry_run: bool = False) -> ExitCode:
    """Apply every pending migration, in order, under Prisma's advisory lock."""
    local = ctx.migrations.list()
    with ctx.connection("deploy") as conn:
        history = ctx.history(conn)
        if dry_run:
            return _plan(ctx, conn, local)
        waited = lock.acquire(conn, lock_timeout)
        if waited > 0.5:
            log.info("got the migration lock after %s", format_duration(waited))
        exists = history.exists()
        if not exists:
            _check_baseline(history)
        report = Report.build(local, history.rows() if exists else [])
        if report.failed:
            raise _blocked(report.failed)
        _warn_drift(report)
        pending = [item.local for item in report.pending if item.local is not None]
        for migration in pending:  # every pending file must be readable before we start
            migration.executable_sql()
        if not exists:
            history.create()
        return _apply_all(conn, history, pending)


def _apply_all(conn: psycopg.Connection, history: History, pending: list[Migration]) -> ExitCode:
    if not pending:
        log.info("no pending migrations: the database is up to date")
        return ExitCode.OK
    log.info("%d pending migration(s) to apply", len(pending))
    started = time.monotonic()
    for index, migration in enumerate(pending, 1):
        log.info("applying %s (%d/%d)", migration.name, index, len(pending))
        t0 = time.monotonic()
        _apply_one(conn, history, migration)
        log.info("applied %s in %s", migration.name, format_duration(time.monotonic() - t0))
    log.info("applied %d migration(s) in %s", len(pending),
             format_duration(time.monotonic() - started))
    return ExitCode.OK


def _plan(ctx: Context, conn: psycopg.Connection, local: list[Migration]) -> ExitCode:
    history = ctx.history(conn)
    exists = history.exists()
    if not exists:
        _check_baseline(history)
    report = Report.build(local, history.rows() if exists else [])
    if report.failed:
        raise _blocked(report.failed)
    _warn_drift(report)
    out(f"Dry run: nothing is changed in {ctx.url.display}")
    if not exists:
        out(f"would create the table {ctx.url.schema}._prisma_migrations")
    for item in report.pending:
        assert item.local is not None
        item.local.executable_sql()
        out(f"would apply {item.name}")
    out(f"{len(report.pending)} migration(s) would be applied")
    return ExitCode.OK


# status / wait / verify -----------------------------------------------------------

def _local_with_scripts(ctx: Context) -> list[Migration]:
    local = ctx.migrations.list()
    for migration in local:
        if not migration.has_script:
            migration.raw  # noqa: B018 - raises the P3015 error with its hint
    return local


_STATE_LABELS = {
    State.APPLIED: "applied",
    State.PENDING: "PENDING",
    State.FAILED: "FAILED",
    State.EDITED: "EDITED after applied",
    State.MISSING_LOCALLY: "applied, MISSING locally",
    State.ROLLED_BACK: "rolled back",
}


def _print_report(ctx: Context, report: Report) -> None:
    out(f"Database:   {ctx.url.display} (schema {ctx.url.schema})")
    out(f"Migrations: {ctx.migrations.path}")
    for item in report.items:
        rolled_back_before = item.was_rolled_back and item.state is not State.ROLLED_BACK
        note = " (rolled back before)" if rolled_back_before else ""
        out(f"  {_STATE_LABELS[item.state]:<26} {item.name}{note}")
    counts = report.counts()
    out("Summary:    " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()))


def status(ctx: Context, *, as_json: bool = False) -> ExitCode:
    """Report every migration's state; exit code by the worst finding."""
    local = _local_with_scripts(ctx)
    with ctx.connection("status") as conn:
        report = ctx.report(conn, local)
    code = report.exit_code(strict_missing=True)
    if as_json:
        out(json.dumps({
            "database": ctx.url.display,
            "schema": ctx.url.schema,
            "migrations_dir": str(ctx.migrations.path),
            "up_to_date": code is ExitCode.OK,
            "exit_code": int(code),
            "summary": report.counts(),
            "migrations": [item.to_json() for item in report.items],
        }, indent=2))
    else:
        _print_report(ctx, report)
        for item in report.failed:
            row = item.last_row
            out(f"\nFailed migration {item.name}:\n{(row.logs if row else '') or '(no logs)'}")
    return code


def wait(ctx: Context, *, timeout: float, interval: float = 2.0) -> ExitCode:
    """Poll until every local migration is applied with a matching checksum."""
    local = _local_with_scripts(ctx)
    started = time.monotonic()
    deadline = started + timeout
    last_logged = 0.0
    with ctx.connection("wait") as conn:
        history = ctx.history(conn)
        while True:
            report = Report.build(local, history.rows())
            if report.failed:
                raise _blocked(report.failed)
            if report.edited:
                from .errors import Drift

                raise Drift(
                    f"migration {report.edited[0].name} in this image differs from the one "
                    "applied to the database",
                    hint="the image and the database disagree: deploy the image the database "
                    "was migrated with, or fix the migration history",
                )
            if not report.pending:
                log.info("the database is up to date (%d migrations) after %s",
                         len(local), format_duration(time.monotonic() - started))
                return ExitCode.OK
            now = time.monotonic()
            if now >= deadline:
                raise NotUpToDate(
                    f"timed out after {format_duration(timeout)}: {len(report.pending)} "
                    f"migration(s) still pending, first {report.pending[0].name}",
                    hint="check the migration Job's logs; raise --timeout if migrations are "
                    "slow",
                )
            if now - last_logged >= 10 or last_logged == 0:
                log.info("waiting for %d pending migration(s), first %s",
                         len(report.pending), report.pending[0].name)
                last_logged = now
            time.sleep(min(interval, max(0.0, deadline - now)))


def verify(ctx: Context) -> ExitCode:
    """The strict check `helm test` runs: reachable, nothing failed, pending or edited."""
    local = _local_with_scripts(ctx)
    with ctx.connection("verify") as conn:
        report = ctx.report(conn, local)
    _print_report(ctx, report)
    code = report.exit_code(strict_missing=False)
    checks = [
        ("database reachable", True),
        ("no failed migration", not report.failed),
        ("no edited migration", not report.edited),
        ("no pending migration", not report.pending),
    ]
    for label, ok in checks:
        out(f"  [{'ok' if ok else 'FAIL'}] {label}")
    if report.missing_locally:
        out(f"  [note] the database is ahead by {len(report.missing_locally)} migration(s): "
            "fine after a rollback")
    out("verify: OK" if code is ExitCode.OK else f"verify: FAILED (exit {int(code)})")
    return code


# resolve --------------------------------------------------------------------------

def resolve(ctx: Context, *, applied: str | None, rolled_back: str | None,
            lock_timeout: float) -> ExitCode:
    """Mark a migration applied (baselining) or rolled back, as Prisma does."""
    name = applied or rolled_back
    assert name is not None
    local = {m.name: m for m in ctx.migrations.list()}
    if applied and applied not in local:
        raise ConfigError(
            f"migration {applied} is not in {ctx.migrations.path}",
            hint="pass the folder name of a local migration, e.g. 20240101000000_init",
            prisma_code="P3017",
        )
    checksum = local[applied].checksum if applied else ""
    with ctx.connection("resolve") as conn:
        lock.acquire(conn, lock_timeout)
        history = ctx.history(conn)
        rows = [r for r in history.rows() if r.migration_name == name]
        if applied:
            if any(r.is_applied for r in rows):
                raise ConfigError(f"migration {name} is already recorded as applied",
                                  hint="nothing to do", prisma_code="P3008")
            history.create()
            history.mark_applied_without_running(name, checksum)
            log.info("migration %s is recorded as applied (no SQL was run)", name)
            return ExitCode.OK
        if not rows:
            raise ConfigError(f"migration {name} cannot be rolled back: it was never applied",
                              hint="check the name with `fast-note-migrate status`",
                              prisma_code="P3011")
        if not any(r.is_failed for r in rows):
            raise ConfigError(f"migration {name} cannot be rolled back: it is not in a failed "
                              "state", hint="only failed migrations can be marked rolled back; "
                              "to undo an applied one use `down`", prisma_code="P3012")
        history.mark_rolled_back(name)
        log.info("migration %s is recorded as rolled back; the next deploy applies it again",
                 name)
        return ExitCode.OK
