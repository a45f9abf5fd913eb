"""One function per CLI verb; each returns an exit code or raises a MigrateError."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import lock
from .db import DatabaseUrl, connect
from .durations import format_duration
from .errors import ConfigError, DatabaseError, Drift, ExitCode, NotUpToDate
from .history import History
from .migrations import Migration, MigrationsDir
from .options import Policy, Settings
from .phases import Phase
from .redaction import redact
from .state import MigrationState, Report, State

if TYPE_CHECKING:
    import psycopg

    from .deploy import Deployer, DeployOptions
    from .lint import Finding

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What every verb needs: where the database and the migrations are."""

    url: DatabaseUrl
    migrations: MigrationsDir
    connect_timeout: float

    @contextmanager
    def connection(self, verb: str) -> Iterator[psycopg.Connection]:
        """A connection for the verb; losing it (a restart, a failover, a terminated
        backend) is reported as such (exit 1), never as an unexpected error."""
        import psycopg

        conn = connect(self.url, verb, self.connect_timeout)
        try:
            yield conn
        except psycopg.OperationalError as exc:
            if not (conn.closed or conn.broken):
                raise
            raise DatabaseError(
                f"lost the database connection during {verb}: {_first_line(exc)}",
                hint="the database restarted or the connection was cut; run the command "
                "again (what a deploy had not committed was rolled back; a statement-by-"
                "statement migration resumes)",
            ) from exc
        finally:
            conn.close()

    def refuse_pooler(self, verb: str) -> None:
        """deploy, resolve and down need the database itself: the migration lock is a
        session-level advisory lock, and a migration's session settings (lock_timeout,
        search_path, its own SETs) hold for its session; a transaction pooler hands each
        transaction to any server connection. Refused before anything touches the database."""
        if self.url.pgbouncer:
            raise ConfigError(
                f"{verb} does not run through PgBouncer (the URL says pgbouncer=true): the "
                "migration lock and the migration's session settings do not survive a "
                "transaction pooler",
                hint="give this command a URL of the database itself, not of the pooler "
                "(Prisma's directUrl); if this URL does reach the database directly, drop "
                "pgbouncer=true. status, wait, verify and lint work through PgBouncer",
            )

    def history(self, conn: psycopg.Connection) -> History:
        return History(conn, self.url.schema)

    def report(self, conn: psycopg.Connection, local: list[Migration]) -> Report:
        """The folder against the history; an unfinished row is *running* while another
        session holds the migration lock (asked only when there is such a row)."""
        rows = self.history(conn).rows()
        running = any(row.is_failed for row in rows) and lock.held_elsewhere(conn)
        return Report.build(local, rows, lock_held_elsewhere=running)


def out(text: str = "") -> None:
    print(text, file=sys.stdout, flush=True)


# deploy ---------------------------------------------------------------------------


def _wait_for_rollout(ctx: Context, local: list[Migration], options: DeployOptions) -> None:
    """Before a contract run: wait until no pod of the old release serves any more."""
    if options.rollout is None:
        if options.phase is Phase.CONTRACT:
            log.warning(
                "contract phase without --wait-for-rollout: make sure no pod of the "
                "previous release still serves"
            )
        return
    with ctx.connection("deploy") as conn:
        pending = ctx.report(conn, local).pending
    if not pending:
        log.info("nothing pending: not waiting for the rollout")
        return
    from . import rollout

    rollout.wait(options.rollout)


def deploy(
    ctx: Context,
    *,
    lock_timeout: float,
    dry_run: bool = False,
    options: DeployOptions | None = None,
) -> ExitCode:
    """Apply every pending migration, in order, under Prisma's advisory lock."""
    from .deploy import Deployer, DeployOptions

    ctx.refuse_pooler("deploy")
    options = options or DeployOptions()
    local = ctx.migrations.list()
    if not dry_run:
        _wait_for_rollout(ctx, local, options)
    with ctx.connection("deploy") as conn:
        deployer = Deployer(conn, ctx.url.schema, options)
        if dry_run:
            return _print_plan(ctx, deployer, local)
        waited = lock.acquire(conn, lock_timeout)
        if waited > 0.5:
            log.info("got the migration lock after %s", format_duration(waited))
        plan = deployer.plan(local)
        deployer.lint(plan)  # refuses (exit 2) before any change
        deployer.apply(plan)
        return ExitCode.OK


def _print_plan(ctx: Context, deployer: Deployer, local: list[Migration]) -> ExitCode:
    plan = deployer.plan(local)
    out(f"Dry run: nothing is changed in {ctx.url.display}")
    if plan.create_table:
        out(f"would create the table {ctx.url.schema}._prisma_migrations")
    deployer.lint(plan)
    for migration in plan.pending:
        if migration.name in plan.resume and migration in plan.selected:
            how = f" (resuming at statement {plan.resume[migration.name][1] + 1})"
            out(f"would finish {migration.name}{how}")
        elif migration in plan.selected:
            how = " (statement by statement)" if plan.splits(migration) else ""
            out(f"would apply {migration.name}{how}")
        else:
            out(f"would leave {migration.name} for the contract phase (deploy --phase contract)")
    out(f"{len(plan.selected)} migration(s) would be applied")
    return ExitCode.OK


# status / wait / verify -----------------------------------------------------------


def _local_with_scripts(ctx: Context) -> list[Migration]:
    local = ctx.migrations.list()
    for migration in local:
        migration.check_exists()
    return local


_STATE_LABELS = {
    State.APPLIED: "applied",
    State.PENDING: "PENDING",
    State.FAILED: "FAILED",
    State.RUNNING: "RUNNING (being applied)",
    State.INTERRUPTED: "INTERRUPTED (deploy resumes)",
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
        label = _STATE_LABELS[item.state]
        if item.state is State.PENDING and item.is_contract:
            label = "PENDING (contract)"
        out(f"  {label:<26} {item.name}{note}")
    counts = report.counts()
    out("Summary:    " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()))


def status(ctx: Context, *, as_json: bool = False) -> ExitCode:
    """Report every migration's state; exit code by the worst finding."""
    local = _local_with_scripts(ctx)
    with ctx.connection("status") as conn:
        report = ctx.report(conn, local)
    code = report.exit_code(strict_missing=True)
    if as_json:
        import json

        out(
            json.dumps(
                {
                    "database": ctx.url.display,
                    "schema": ctx.url.schema,
                    "migrations_dir": str(ctx.migrations.path),
                    "up_to_date": code is ExitCode.OK,
                    "exit_code": int(code),
                    "summary": report.counts(),
                    "migrations": [item.to_json() for item in report.items],
                },
                indent=2,
            )
        )
    else:
        _print_report(ctx, report)
        for item in report.failed + report.unfinished:
            row = item.last_row
            what = "Failed" if item.state is State.FAILED else item.state.value.capitalize()
            out(f"\n{what} migration {item.name}:\n{(row.logs if row else '') or '(no logs)'}")
    return code


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else repr(exc))


def _raise_unless_connection_lost(conn: psycopg.Connection, exc: Exception) -> None:
    """Raise ``exc`` again unless it lost the connection (a restart, a failover, a
    terminated backend), which is logged."""
    import psycopg

    if not isinstance(exc, psycopg.OperationalError) or not (conn.closed or conn.broken):
        raise exc
    log.warning("lost the database connection (%s): reconnecting", _first_line(exc))


def _still_required(report: Report) -> list[MigrationState]:
    """What an app pod still waits for; raises when waiting cannot help (a failed
    migration, exit 4; a migration in this image that differs from the applied one, 5)."""
    if report.failed:
        from .deploy import blocked

        raise blocked(report.failed)
    if report.edited:
        raise Drift(
            f"migration {report.edited[0].name} in this image differs from the one "
            "applied to the database",
            hint="the image and the database disagree: deploy the image the database "
            "was migrated with, or fix the migration history",
            fields={"migration": report.edited[0].name},
        )
    return report.required_pending  # pending contract steps are fine


class _HistoryWatch:
    """What ``wait`` sees of the history: told at once by a deployer's NOTIFY, polled as
    the fallback with a one-row query; the rows are read only when that row changed. A
    lost connection is made again (within --connect-timeout)."""

    def __init__(self, ctx: Context, local: list[Migration]) -> None:
        self.ctx = ctx
        self.local = local
        self.listening = not ctx.url.pgbouncer  # LISTEN is session state: not via a pooler
        self.conn = self._connect()
        self.seen: tuple[object, ...] | None = None
        self.report: Report | None = None

    def _connect(self) -> psycopg.Connection:
        conn = connect(self.ctx.url, "wait", self.ctx.connect_timeout)
        if self.listening:
            self.ctx.history(conn).listen()
        return conn

    def current(self) -> Report:
        while True:
            try:
                fingerprint = self.ctx.history(self.conn).fingerprint()
                if self.report is None or fingerprint != self.seen:
                    self.report = self.ctx.report(self.conn, self.local)
                    self.seen = fingerprint
                return self.report
            except Exception as exc:
                _raise_unless_connection_lost(self.conn, exc)
                self.conn.close()
                self.conn, self.report = self._connect(), None

    def sleep(self, seconds: float) -> None:
        """Until a deployer's NOTIFY, or ``seconds`` at the most."""
        import psycopg

        if not self.listening:
            time.sleep(seconds)
            return
        try:
            for _ in self.conn.notifies(timeout=seconds, stop_after=1):
                pass
        except psycopg.OperationalError:
            if not (self.conn.closed or self.conn.broken):
                raise  # else the next look connects again

    def close(self) -> None:
        self.conn.close()


def wait(ctx: Context, *, timeout: float, interval: float = 2.0) -> ExitCode:
    """Wait until every local migration is applied with a matching checksum: woken by the
    deployer's NOTIFY, polling every ``interval`` as the fallback."""
    local = _local_with_scripts(ctx)
    started = time.monotonic()
    deadline = started + timeout
    last_logged = 0.0
    watch = _HistoryWatch(ctx, local)
    try:
        while True:
            report = watch.current()
            required = _still_required(report)
            if not required:
                if report.pending:
                    log.info(
                        "%d contract migration(s) pending: fine for this image (the "
                        "post-upgrade run applies them)",
                        len(report.pending),
                    )
                log.info(
                    "the database is up to date (%d migrations) after %s",
                    len(local),
                    format_duration(time.monotonic() - started),
                )
                return ExitCode.OK
            now = time.monotonic()
            if now >= deadline:
                raise NotUpToDate(
                    f"timed out after {format_duration(timeout)}: {len(required)} "
                    f"migration(s) still pending, first {required[0].name}",
                    hint="check the migration Job's logs; raise --timeout if migrations are slow",
                    fields={"migration": required[0].name},
                )
            if now - last_logged >= 10 or last_logged == 0:
                doing = {
                    State.RUNNING: ", being applied now",
                    State.INTERRUPTED: ", interrupted: the next deploy resumes it",
                }
                log.info(
                    "waiting for %d pending migration(s), first %s%s",
                    len(required),
                    required[0].name,
                    doing.get(required[0].state, ""),
                )
                last_logged = now
            watch.sleep(min(interval, max(0.0, deadline - now)))
    finally:
        watch.close()


def verify(ctx: Context, *, as_json: bool = False) -> ExitCode:
    """The strict check `helm test` runs: reachable, nothing failed, pending or edited."""
    local = _local_with_scripts(ctx)
    with ctx.connection("verify") as conn:
        report = ctx.report(conn, local)
    code = report.exit_code(strict_missing=False, contract_ok=True)
    if as_json:
        from . import reports

        document = reports.verify_document(
            database=ctx.url.display,
            schema=ctx.url.schema,
            migrations_dir=ctx.migrations.path,
            report=report,
            code=code,
        )
        out(reports.dump(document))
        return code
    _print_report(ctx, report)
    checks = [
        ("database reachable", True),
        ("no failed migration", not report.failed),
        ("no edited migration", not report.edited),
        ("no pending migration", not report.required_pending),
    ]
    for label, ok in checks:
        out(f"  [{'ok' if ok else 'FAIL'}] {label}")
    contract = len(report.pending) - len(report.required_pending)
    if contract:
        out(
            f"  [note] {contract} contract migration(s) pending: applied by the post-upgrade "
            "run once the old pods are gone"
        )
    if report.missing_locally:
        out(
            f"  [note] the database is ahead by {len(report.missing_locally)} migration(s): "
            "fine after a rollback"
        )
    out("verify: OK" if code is ExitCode.OK else f"verify: FAILED (exit {int(code)})")
    return code


# resolve --------------------------------------------------------------------------


def resolve(
    ctx: Context, *, applied: str | None, rolled_back: str | None, lock_timeout: float
) -> ExitCode:
    """Mark a migration applied (baselining) or rolled back, as Prisma does."""
    ctx.refuse_pooler("resolve")
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
                raise ConfigError(
                    f"migration {name} is already recorded as applied",
                    hint="nothing to do",
                    prisma_code="P3008",
                )
            history.create()
            history.mark_applied_without_running(name, checksum)
            conn.execute(history.notify().encode())
            log.info("migration %s is recorded as applied (no SQL was run)", name)
            return ExitCode.OK
        if not rows:
            raise ConfigError(
                f"migration {name} cannot be rolled back: it was never applied",
                hint="check the name with `fast-note-migrate status`",
                prisma_code="P3011",
            )
        if not any(r.is_failed for r in rows):
            raise ConfigError(
                f"migration {name} cannot be rolled back: it is not in a failed state",
                hint="only failed migrations can be marked rolled back; "
                "to undo an applied one use `down`",
                prisma_code="P3012",
            )
        history.mark_rolled_back(name)
        conn.execute(history.notify().encode())
        log.info("migration %s is recorded as rolled back; the next deploy applies it again", name)
        return ExitCode.OK


# lint / down ----------------------------------------------------------------------


def _lint_status(finding: Finding) -> str:
    if finding.new_table is not None:
        return f"fine: table {finding.new_table} is created earlier in this deploy"
    if finding.acknowledged is not None:
        return f"acknowledged{': ' + finding.acknowledged if finding.acknowledged else ''}"
    return finding.kind


def _print_lint(targets: list[Migration], found: list[Finding], policy: Policy) -> None:
    shown = [f for f in found if f.kind != "advice"]
    for finding in shown:
        out(f"{finding.describe()} [{_lint_status(finding)}]")
    unacknowledged = [f for f in found if f.guarded]
    dangerous = [f for f in found if f.kind in ("destructive", "locking")]
    unparsed = len(shown) - len(dangerous)
    out(
        f"lint: {len(targets)} migration(s), {len(dangerous)} destructive or locking "
        f"operation(s), {len(unacknowledged)} not acknowledged (policy {policy.value})"
        + (f"; {unparsed} syntax error(s): those statements are not checked" if unparsed else "")
    )


def _lint_targets(ctx: Context, all_migrations: bool) -> list[Migration]:
    """Every migration of the folder, or those a deploy would apply now."""
    local = _local_with_scripts(ctx)
    if all_migrations:
        return local
    with ctx.connection("lint") as conn:
        return [i.local for i in ctx.report(conn, local).pending if i.local is not None]


def lint(
    ctx: Context,
    *,
    policy: Policy,
    all_migrations: bool = False,
    as_json: bool = False,
    sarif: str | None = None,
) -> ExitCode:
    """squawk over the pending migrations (or all); exit 2 when the policy blocks.
    ``as_json``: one JSON document on stdout instead of the text; ``sarif``: a SARIF log
    into that file (``-``: stdout)."""
    from . import lint as squawk
    from . import reports

    targets = _lint_targets(ctx, all_migrations)
    found = (
        (squawk.run(targets, new_tables=not all_migrations, required=True) or []) if targets else []
    )
    for finding in found:
        if finding.kind == "advice":
            log.debug("lint advice: %s: %s: %s", finding.location(), finding.rule, finding.message)
    unacknowledged = [f for f in found if f.guarded]
    blocks = bool(unacknowledged) and policy is Policy.BLOCK
    code = ExitCode.USAGE if blocks else ExitCode.OK
    if sarif is not None:
        document = reports.sarif_log(
            migrations_dir=ctx.migrations.path, findings=found, policy=policy, code=code
        )
        reports.write(reports.dump(document), sarif)
    if as_json:
        document = reports.lint_document(
            migrations_dir=ctx.migrations.path,
            linted=[m.name for m in targets],
            findings=found,
            policy=policy,
            all_migrations=all_migrations,
            code=code,
        )
        out(reports.dump(document))
    elif sarif != "-":
        if targets:
            _print_lint(targets, found, policy)
        else:
            out("lint: no pending migrations (use --all to lint every migration)")
    if blocks:
        raise squawk.blocked_error(unacknowledged)
    return code


def down(
    ctx: Context,
    *,
    to: str,
    lock_timeout: float,
    dry_run: bool = False,
    settings: Settings | None = None,
) -> ExitCode:
    """Undo the applied migrations newer than ``to`` with their down.sql, newest first."""
    from . import down as downs

    ctx.refuse_pooler("down")
    local = ctx.migrations.list()
    with ctx.connection("down") as conn:
        if not dry_run:
            lock.acquire(conn, lock_timeout)
        steps = downs.plan(ctx.report(conn, local), to)
        if dry_run:
            out(f"Dry run: nothing is changed in {ctx.url.display}")
            for migration in steps:
                out(f"would roll back {migration.name} with {migration.down_path}")
            out(f"{len(steps)} migration(s) would be rolled back; {to} stays applied")
            return ExitCode.OK
        if not steps:
            log.info("nothing to roll back: %s is the newest applied migration", to)
            return ExitCode.OK
        downs.apply(conn, ctx.url.schema, steps, settings or Settings())
        log.info("rolled back %d migration(s); %s is now the newest applied", len(steps), to)
        return ExitCode.OK
