"""deploy's engine: plan what is pending, then apply it with Prisma's bookkeeping.

The verb (``commands.deploy``) takes the lock and decides between a dry run and a real
one; this module owns the connection's history (``History``) and the ``Runner`` that
sends each script with its bookkeeping statement.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import phases
from .durations import format_duration
from .errors import ConfigError, DatabaseError, HistoryBlocked, MigrationFailed
from .history import History
from .lint import Policy
from .phases import Phase
from .redaction import redact
from .runner import Runner, ScriptFailed, Settings
from .state import MigrationState, Report
from .statements import needs_split

if TYPE_CHECKING:
    import psycopg

    from .migrations import Migration
    from .rollout import Target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeployOptions:
    """deploy's safety options (docs/safe-migrations.md); the defaults lint nothing."""

    lint_policy: Policy = Policy.OFF
    execution: Settings = field(default_factory=Settings)
    phase: Phase = Phase.ALL
    rollout: Target | None = None  # wait for this Deployment's rollout first


@dataclass(frozen=True)
class Plan:
    """What a deploy would do, after the checks that refuse it before any change."""

    create_table: bool  # the history table does not exist yet
    pending: list[Migration]  # every pending migration, readable and UTF-8
    selected: list[Migration]  # those this phase applies, in order

    def splits(self, migration: Migration) -> bool:
        """Whether ``migration`` runs statement by statement outside a transaction."""
        return needs_split(migration.executable_sql())


def blocked(failed: list[MigrationState]) -> HistoryBlocked:
    """The P3009 error: a failed migration blocks every later one."""
    name = failed[0].name
    return HistoryBlocked(
        f"migration {name} failed earlier and blocks every later migration",
        hint=f"read its logs with `fast-note-migrate status`; undo what it did, then run "
        f"`fast-note-migrate resolve --rolled-back {name}`, or finish it by hand and run "
        f"`fast-note-migrate resolve --applied {name}`",
        prisma_code="P3009",
    )


def failure_logs(exc: Exception, offset: int, script: str, line: int | None = None) -> str:
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
    elif line is not None:  # a statement run on its own (outside a transaction)
        lines += ["", f"Statement at line {line} of migration.sql"]
    return redact("\n".join(lines))


def _warn_drift(report: Report) -> None:
    for item in report.edited:
        log.warning("migration %s was edited after it was applied (checksum differs)", item.name)
    for item in report.missing_locally:
        log.warning("migration %s is applied but not in the migrations folder "
                    "(the database is ahead of this image)", item.name)


class Deployer:
    """Plans and applies the pending migrations on one connection."""

    def __init__(self, conn: psycopg.Connection, schema: str, options: DeployOptions) -> None:
        self.conn = conn
        self.options = options
        self.history = History(conn, schema)
        self.runner = Runner(conn, options.execution)

    # Plan -----------------------------------------------------------------------------

    def plan(self, local: list[Migration]) -> Plan:
        """Refuse before any change: baseline needed (P3005), a failed migration (P3009),
        a pending file that cannot be read or is not UTF-8; drift is logged."""
        exists = self.history.exists()
        if not exists:
            self._check_baseline()
        report = Report.build(local, self.history.rows() if exists else [])
        if report.failed:
            raise blocked(report.failed)
        _warn_drift(report)
        pending = [item.local for item in report.pending if item.local is not None]
        for migration in pending:
            migration.check()
        return Plan(not exists, pending, phases.select(pending, self.options.phase))

    def _check_baseline(self) -> None:
        others = self.history.other_tables()
        if others:
            shown = ", ".join(others[:5]) + (" …" if len(others) > 5 else "")
            raise ConfigError(
                f"schema {self.history.schema!r} already has tables ({shown}) but no "
                "migration history",
                hint="baseline it: for each migration already reflected in the schema, run "
                "`fast-note-migrate resolve --applied <name>`, then deploy",
                prisma_code="P3005",
            )

    def lint(self, plan: Plan) -> None:
        """squawk over what this deploy applies; refuses (exit 2) under the block policy."""
        from . import lint

        version = self.conn.info.server_version
        lint.check(plan.selected, self.options.lint_policy,
                   pg_version=f"{version // 10000}.{version % 100}")

    # Apply ----------------------------------------------------------------------------

    def apply(self, plan: Plan) -> None:
        """Create the history table if needed, then apply the plan's migrations in order."""
        if plan.create_table:
            self.history.create()
        pending = plan.selected
        if not pending:
            log.info("no pending migrations: the database is up to date")
            return
        log.info("%d pending migration(s) to apply", len(pending))
        started = time.monotonic()
        for index, migration in enumerate(pending, 1):
            log.info("applying %s (%d/%d)", migration.name, index, len(pending))
            t0 = time.monotonic()
            self._apply_one(migration)
            log.info("applied %s in %s", migration.name, format_duration(time.monotonic() - t0))
        log.info("applied %d migration(s) in %s", len(pending),
                 format_duration(time.monotonic() - started))

    def _apply_one(self, migration: Migration) -> None:
        """Apply one migration and record it in Prisma's table, or record its failure.

        A script runs as ONE simple-protocol query (SET LOCAL timeouts; script; INSERT the
        finished row), one implicit transaction: the script and its bookkeeping commit
        together or not at all, even if this process is killed, and a try that hit a lock
        timeout leaves no row behind before it is retried. A script with statements that
        cannot run in a transaction block runs statement by statement, in Prisma's three
        steps (INSERT started row, script, UPDATE finished; see runner).
        """
        import psycopg

        script = migration.executable_sql()
        name, checksum = migration.name, migration.checksum
        try:
            if needs_split(script):
                self.runner.split(name, script, self.history.insert_started(name, checksum),
                                  self.history.mark_finished(name))
            else:
                self.runner.transactional(name, script,
                                          self.history.insert_applied(name, checksum))
        except ScriptFailed as failure:
            exc = failure.error
            if isinstance(exc, psycopg.OperationalError) and (self.conn.closed
                                                              or self.conn.broken):
                raise DatabaseError(
                    f"lost the database connection while applying {name}: "
                    f"{redact(str(exc).strip())}",
                    hint="PostgreSQL rolled back the unfinished migration unless it had "
                    "committed; run `fast-note-migrate status`, then deploy again",
                ) from None
            logs = failure_logs(exc, failure.offset, script, failure.line)
            self.history.record_failure(name, checksum, logs, started=failure.started)
            raise MigrationFailed(
                f"migration {name} failed and is recorded as failed:\n{logs}",
                hint=f"fix the migration, then mark it with `fast-note-migrate resolve "
                f"--rolled-back {name}` (if it changed nothing) or `resolve --applied {name}` "
                "(if you finished it by hand), and deploy again",
                prisma_code="P3018",
            ) from exc
