"""deploy's engine: plan what is pending, then apply it with Prisma's bookkeeping.

The verb (``commands.deploy``) takes the lock and decides between a dry run and a real
one; this module owns the connection's history (``History``) and the ``Runner`` that
sends each script with its bookkeeping statement.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from . import phases
from .durations import format_duration
from .errors import ConfigError, DatabaseError, Drift, HistoryBlocked, MigrationFailed
from .history import History
from .logs import fields, migration_step
from .options import Policy, Settings
from .phases import Phase
from .redaction import redact
from .state import MigrationState, Report, State

if TYPE_CHECKING:
    import psycopg

    from .migrations import Migration
    from .rollout import Target
    from .runner import Runner, SplitBookkeeping

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeployOptions:
    """deploy's safety options (docs/safe-migrations.md); the defaults lint nothing."""

    lint_policy: Policy = Policy.OFF
    execution: Settings = field(default_factory=Settings)
    phase: Phase = Phase.ALL
    rollout: Target | None = None  # wait for this Deployment's rollout first
    allow_drift: bool = False  # apply even though an applied migration was edited


@dataclass(frozen=True)
class Plan:
    """What a deploy would do, after the checks that refuse it before any change."""

    create_table: bool  # the history table does not exist yet
    pending: list[Migration]  # every pending or interrupted migration, readable and UTF-8
    selected: list[Migration]  # those this phase applies, in order
    resume: dict[str, tuple[str, int]] = field(default_factory=dict)  # interrupted runs:
    # migration name -> (id of its unfinished row, statements already done)

    def splits(self, migration: Migration) -> bool:
        """Whether ``migration`` runs statement by statement outside a transaction."""
        return runs_split(migration)


def runs_split(migration: Migration) -> bool:
    """Whether ``migration`` runs statement by statement outside a transaction."""
    from .statements import needs_split

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
        fields={"migration": name},
    )


def failure_logs(exc: Exception, offset: int, script: str, line: int | None = None) -> str:
    """Prisma-style logs text for a failed script: SQLSTATE, message, position."""
    import psycopg

    if not isinstance(exc, psycopg.Error):
        where = f"\n\nStatement at line {line} of migration.sql" if line is not None else ""
        return redact(f"{exc}{where}")
    diag = exc.diag
    lines = [
        f"Database error code: {diag.sqlstate or 'unknown'}",
        "",
        "Database error:",
        f"{diag.severity or 'ERROR'}: {diag.message_primary or str(exc).strip()}",
    ]
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


def _sqlstate(exc: Exception) -> str | None:
    import psycopg

    return exc.diag.sqlstate if isinstance(exc, psycopg.Error) else None


def _check_drift(report: Report, allow: bool) -> None:
    """An edited migration stops a deploy before any change (``wait`` refuses it too);
    a database ahead of the folder is fine (after a rollback)."""
    for item in report.edited:
        if not allow:
            raise Drift(
                f"migration {item.name} was edited after it was applied (its checksum "
                "differs); nothing was changed",
                hint="deploy the migrations the database was migrated with (restore the "
                "file from version control); if the edit is deliberate and changes nothing "
                "in the database (a comment), deploy once with --allow-drift",
            )
        log.warning(
            "migration %s was edited after it was applied (checksum differs): "
            "going on because of --allow-drift",
            item.name,
        )
    for item in report.missing_locally:
        log.warning(
            "migration %s is applied but not in the migrations folder "
            "(the database is ahead of this image)",
            item.name,
        )


def _resume_point(item: MigrationState) -> tuple[str, int]:
    """Where an interrupted statement-by-statement run goes on: its row and progress."""
    row = item.last_row
    assert row is not None and row.progress is not None  # the INTERRUPTED state says so
    if item.local is None or not item.local.matches(row.checksum):
        what = "is not in the migrations folder" if item.local is None else "has changed"
        raise Drift(
            f"migration {item.name} was interrupted after {row.progress[0]} of "
            f"{row.progress[1]} statements, and its file {what} since; nothing was changed",
            hint=f"deploy the migrations it was started with to resume it, or undo its "
            f"first {row.progress[0]} statements by hand and run `fast-note-migrate resolve "
            f"--rolled-back {item.name}`",
        )
    from .statements import split

    total = len(split(item.local.executable_sql()))
    if total != row.progress[1]:  # the same file, split another way (another version)
        raise Drift(
            f"migration {item.name} was interrupted after {row.progress[0]} of "
            f"{row.progress[1]} statements, but this version of the migrator splits it into "
            f"{total}; nothing was changed",
            hint=f"finish it with the migrator version that started it, or complete it by "
            f"hand and run `fast-note-migrate resolve --applied {item.name}`",
        )
    log.info(
        "migration %s was interrupted after %d of %d statements: this deploy resumes it",
        item.name,
        row.progress[0],
        row.progress[1],
    )
    return row.id, row.progress[0]


class Deployer:
    """Plans and applies the pending migrations on one connection."""

    def __init__(self, conn: psycopg.Connection, schema: str, options: DeployOptions) -> None:
        self.conn = conn
        self.options = options
        self.history = History(conn, schema)

    @cached_property
    def runner(self) -> Runner:
        """Made when there is something to apply (a no-op deploy does not load it)."""
        from .runner import Runner

        return Runner(self.conn, self.options.execution)

    # Plan -----------------------------------------------------------------------------

    def plan(self, local: list[Migration]) -> Plan:
        """Refuse before any change: baseline needed (P3005), a failed migration (P3009),
        an applied migration edited since (exit 5, unless allowed), an interrupted one
        whose file changed, a pending file that cannot be read or is not UTF-8."""
        exists = self.history.exists()
        if not exists:
            self._check_baseline()
        report = Report.build(local, self.history.rows() if exists else [])
        if report.failed:
            raise blocked(report.failed)
        _check_drift(report, self.options.allow_drift)
        resume = {item.name: _resume_point(item) for item in report.having(State.INTERRUPTED)}
        pending = [
            item.local
            for item in report.items
            if item.local is not None and (item.state is State.PENDING or item.name in resume)
        ]
        for migration in pending:
            migration.check()
        return Plan(not exists, pending, phases.select(pending, self.options.phase), resume)

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
        """squawk over what this deploy applies; refuses (exit 2) under the block policy.

        A database without history (and so, by the baseline check, without tables in the
        schema) is not linted: every table is created by this deploy and no pod uses it
        yet, so every finding about a table would be exempt anyway."""
        if self.options.lint_policy is Policy.OFF or not plan.selected:
            return
        if plan.create_table:
            log.info(
                "lint skipped: the schema has no migration history yet, so every table "
                "is new and nothing serves from it (the lint guards live tables)"
            )
            return
        from . import lint

        version = self.conn.info.server_version
        lint.check(
            plan.selected,
            self.options.lint_policy,
            pg_version=f"{version // 10000}.{version % 100}",
        )

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
            with migration_step(log, "applying", "applied", migration.name, index, len(pending)):
                last = index == len(pending)
                self._apply_one(migration, plan.resume.get(migration.name), last=last)
        took = time.monotonic() - started
        log.info(
            "applied %d migration(s) in %s",
            len(pending),
            format_duration(took),
            extra=fields(duration_s=round(took, 3)),
        )

    def _bookkeeping(self, name: str, checksum: str | None) -> SplitBookkeeping:
        """How a statement-by-statement run is recorded: the started row (``checksum``;
        None when resuming one), its progress after every statement, the finished row."""
        from .runner import SplitBookkeeping

        history = self.history
        return SplitBookkeeping(
            start=None
            if checksum is None
            else lambda total: history.insert_started(name, checksum, total),
            progress=lambda done, total: history.progress(name, done, total),
            finish=lambda: f"{history.mark_finished(name)};\n{history.notify()}",
        )

    def _apply_one(
        self, migration: Migration, resume: tuple[str, int] | None, *, last: bool = True
    ) -> None:
        """Apply one migration and record it in Prisma's table, or record its failure.

        A script runs as ONE simple-protocol query (SET LOCAL timeouts; script; INSERT the
        finished row), one implicit transaction: the script and its bookkeeping commit
        together or not at all, even if this process is killed, and a try that hit a lock
        timeout leaves no row behind before it is retried. A script with statements that
        cannot run in a transaction block runs statement by statement, in Prisma's three
        steps (INSERT started row, script, UPDATE finished; see runner), and resumes
        (``resume``: its row and the statements done) after an interruption.

        Only the ``last`` migration of a run must wait for its WAL flush, and it tells the
        waiting pods (NOTIFY): the flush of its commit makes every earlier commit durable
        (WAL is flushed in order), so a quick migration before it need not wait
        (``runner.DEFER_FLUSH``). A failure record, a statement-by-statement run and the
        failure record flush too.
        """
        import psycopg

        from .runner import ScriptFailed

        name, checksum = migration.name, migration.checksum
        try:
            if resume is not None:
                self.history.resume(name, resume[0])
                book = self._bookkeeping(name, None)
                self.runner.split(name, migration.executable_sql(), book, resume_at=resume[1])
            elif runs_split(migration):
                book = self._bookkeeping(name, checksum)
                self.runner.split(name, migration.executable_sql(), book)
            else:  # the file's bytes as they are: no decoded copy of a large data migration
                applied = self.history.insert_applied(name, checksum)
                notify = f";\n{self.history.notify()}" if last else ""
                self.runner.transactional(
                    name, migration.executable_bytes(), f"{applied}{notify}", flush=last
                )
        except ScriptFailed as failure:
            script = migration.executable_sql()
            exc = failure.error
            if isinstance(exc, psycopg.OperationalError) and (self.conn.closed or self.conn.broken):
                raise DatabaseError(
                    f"lost the database connection while applying {name}: "
                    f"{redact(str(exc).strip())}",
                    hint="PostgreSQL rolled back the unfinished migration unless it had "
                    "committed (after a crash of the server, also the quick migrations "
                    "committed just before it, each with its history row); run "
                    "`fast-note-migrate status`, then deploy again",
                ) from None
            logs = failure_logs(exc, failure.offset, script, failure.line)
            if failure.line is not None and failure.done:
                logs += f"\n\n{failure.done} statement(s) before it had committed and stay applied"
            self.history.record_failure(
                name, checksum, logs, started=failure.started or resume is not None
            )
            raise MigrationFailed(
                f"migration {name} failed and is recorded as failed:\n{logs}",
                hint=f"fix the migration, then mark it with `fast-note-migrate resolve "
                f"--rolled-back {name}` (if it changed nothing) or `resolve --applied {name}` "
                "(if you finished it by hand), and deploy again",
                prisma_code="P3018",
                fields={"migration": name, "sqlstate": _sqlstate(exc)},
            ) from exc
