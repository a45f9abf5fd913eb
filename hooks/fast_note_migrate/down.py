"""Down migrations: an optional ``down.sql`` beside ``migration.sql``.

``down --to NAME`` undoes every applied migration newer than NAME, newest first: each
down script runs in one transaction together with the UPDATE that sets the row's
``rolled_back_at`` (``status`` and both deploys, ours and Prisma's, then see the
migration as pending; Prisma's ``migrate status`` still counts it as applied). It refuses
before changing anything when a migration in the range has no down.sql.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

from .errors import ConfigError, DatabaseError, HistoryBlocked, MigrationFailed
from .history import History
from .logs import migration_step
from .migrations import DOWN_SCRIPT_NAME, Migration
from .options import Settings
from .runner import Runner, ScriptFailed, SplitBookkeeping
from .state import MigrationState, Report, State
from .statements import needs_split

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

_UNDOABLE = (State.APPLIED, State.EDITED, State.MISSING_LOCALLY)


def plan(report: Report, target: str) -> list[Migration]:
    """The migrations to undo, newest first; ConfigError when one cannot be undone."""
    if report.failed:
        name = report.failed[0].name
        raise HistoryBlocked(
            f"migration {name} failed and blocks the history; down undoes applied migrations only",
            hint=f"resolve it first: `fast-note-migrate resolve --rolled-back {name}`",
            prisma_code="P3009",
        )
    if report.unfinished:
        item = report.unfinished[0]
        raise HistoryBlocked(
            f"migration {item.name} is {item.state.value} (applied statement by statement, "
            "not finished); down undoes applied migrations only",
            hint="let the running deploy finish, or run `fast-note-migrate deploy` to resume "
            "an interrupted one, then go down",
        )
    by_name = {item.name: item for item in report.items}
    found = by_name.get(target)
    if found is None or found.state not in (State.APPLIED, State.EDITED):
        what = "is not applied" if found is not None else "is not a known migration"
        raise ConfigError(
            f"cannot go down to {target}: it {what}",
            hint="pass the name of an applied migration (see "
            "`fast-note-migrate status`); it stays applied, the newer ones "
            "are undone",
        )
    steps: list[MigrationState] = [
        item for item in reversed(report.items) if item.name > target and item.state in _UNDOABLE
    ]
    missing = [
        item.name for item in steps if item.local is None or not item.local.down_path.is_file()
    ]
    if missing:
        raise ConfigError(
            f"cannot go down to {target}: {len(missing)} migration(s) have no {DOWN_SCRIPT_NAME}: "
            + ", ".join(missing)
            + "; nothing was changed",
            hint=f"write a {DOWN_SCRIPT_NAME} beside their migration.sql (e.g. with `prisma "
            "migrate diff --from-migrations … --to-migrations … --script`), or pick a newer "
            "target",
        )
    for item in steps:
        if item.state is State.EDITED:
            log.warning(
                "migration %s was edited after it was applied: its %s may not match "
                "what the database has",
                item.name,
                DOWN_SCRIPT_NAME,
            )
    return [item.local for item in steps if item.local is not None]


def read_down(migration: Migration) -> str:
    try:
        return migration.down_path.read_bytes().decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise ConfigError(
            f"{migration.down_path} is not valid UTF-8", hint="save the file as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read {migration.down_path}: {exc.strerror}",
            hint="check the file's permissions",
        ) from None


def apply(
    conn: psycopg.Connection, schema: str, steps: list[Migration], settings: Settings
) -> None:
    """Run the down scripts newest first, each with its bookkeeping UPDATE."""

    scripts = {m.name: read_down(m) for m in steps}  # every file readable before we start
    history = History(conn, schema)
    runner = Runner(conn, settings)
    for index, migration in enumerate(steps, 1):
        with migration_step(log, "rolling back", "rolled back", migration.name, index, len(steps)):
            _undo(conn, runner, history, migration, scripts[migration.name], steps[: index - 1])


def _undo(
    conn: psycopg.Connection,
    runner: Runner,
    history: History,
    migration: Migration,
    script: str,
    undone_before: list[Migration],
) -> None:
    """Run one down script with the UPDATE that marks its migration rolled back."""
    import psycopg

    after = f"{history.mark_applied_rolled_back(migration.name)};\n{history.notify()}"
    label = f"{migration.name}/{DOWN_SCRIPT_NAME}"
    try:
        if needs_split(script):
            runner.split(label, script, SplitBookkeeping(finish=partial(str, after)))
        else:
            runner.transactional(label, script, after)
    except ScriptFailed as failure:
        if conn.closed or conn.broken:
            raise DatabaseError(
                f"lost the database connection while rolling back {migration.name}",
                hint="run `fast-note-migrate status`, then try again",
            ) from None
        error = failure.error
        detail = (error.diag.message_primary if isinstance(error, psycopg.Error) else None) or str(
            error
        )
        before = ", ".join(m.name for m in undone_before)
        raise MigrationFailed(
            f"the {DOWN_SCRIPT_NAME} of {migration.name} failed: {detail.strip()}; "
            f"{migration.name} stays applied"
            + (f" (rolled back before it: {before})" if before else ""),
            hint=f"fix {migration.down_path} and run down again",
        ) from None
