"""Running a migration script safely on a live database.

- every migration runs under ``lock_timeout`` (and optionally ``statement_timeout``), set
  with ``SET LOCAL`` inside its transaction so that nothing leaks to the session (the
  advisory-lock wait in ``lock`` keeps its own timeout);
- a migration that hits SQLSTATE 55P03 (lock not available) is retried with backoff, and
  each retry names the sessions that blocked it (``blockers``);
- a script with statements that cannot run in a transaction block (``CREATE INDEX
  CONCURRENTLY`` …) runs statement by statement (``statements``); an INVALID index left by
  an earlier try of a ``CREATE INDEX CONCURRENTLY`` is dropped first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from psycopg import errors as pg_errors

from .blockers import BlockerWatch, describe_blockers
from .durations import format_duration
from .errors import DatabaseError
from .options import Settings
from .statements import Statement, split, units

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

_TIMEOUTS = ("lock_timeout", "statement_timeout")
_CURRENT_TIMEOUTS = b"SELECT current_setting('lock_timeout'), current_setting('statement_timeout')"
INDEX_QUERY = """
SELECT n.nspname, c.relname, i.indisvalid FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = %s AND n.nspname = coalesce(%s, current_schema())
"""


# How long a migration's script may run and still commit without waiting for its WAL flush
# (a longer one pays the flush, which is then a small part of its time). See ``DEFER_FLUSH``.
QUICK_SCRIPT_MS = 50
# Sent after a quick script, inside its transaction: its commit does not wait for the flush.
# PostgreSQL writes WAL in order and flushes it in order, so the next commit that waits for
# its flush (the run's last migration, a failure record, a statement-by-statement run)
# makes every earlier one durable too: a deploy that exits 0 has flushed everything. Until
# then a crash of the server can undo a suffix of these commits, each with its history row
# (never one without the other); the next deploy applies them again.
DEFER_FLUSH = (
    "SELECT set_config('synchronous_commit', 'off', true) "
    f"WHERE clock_timestamp() - statement_timestamp() < interval '{QUICK_SCRIPT_MS} ms'"
)


class ScriptFailed(Exception):
    """A script failed for good: ``error`` is the psycopg error; ``offset`` maps its
    position into the migration file (see ``deploy.failure_logs``)."""

    def __init__(
        self, error: Exception, offset: int, started: bool, line: int | None = None, done: int = 0
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.offset = offset
        self.started = started  # a started row was committed and is still unfinished
        self.line = line  # the failing statement's line, when run statement by statement
        self.done = done  # statements that committed before the failure (split scripts)


class OpenTransaction(Exception):
    """The script leaves its own transaction open (a BEGIN without COMMIT)."""


@dataclass(frozen=True)
class SplitBookkeeping:
    """What records a statement-by-statement run in the history, as SQL text."""

    start: Callable[[int], str] | None = None  # (total) -> committed before the first
    finish: Callable[[], str] | None = None  # after the last statement: one row changes
    progress: Callable[[int, int], str] | None = None  # (done, total) -> records progress


@dataclass
class Runner:
    """Runs scripts with timeouts and lock retries on one autocommit connection."""

    conn: psycopg.Connection
    settings: Settings = field(default_factory=Settings)
    sleep: Callable[[float], None] = time.sleep
    _current: Statement | None = field(default=None, init=False, repr=False)

    def _retrying(
        self,
        label: str,
        attempt: Callable[[], None],
        before_retry: Callable[[], None] | None = None,
    ) -> None:
        """Run ``attempt``; on 55P03 log the blockers, back off and run it again."""
        timeout = self.settings.lock_timeout
        # Watch only while a lock timeout can fire, and often enough to see the blocker
        # before it does; without a lock timeout there is nothing to explain.
        watch = BlockerWatch(
            self.conn,
            grace=min(1.0, timeout / 2) if timeout else float("inf"),
            interval=min(1.0, max(0.05, timeout / 5)),
        )
        try:
            for retry in range(self.settings.lock_retries + 1):
                with watch:
                    try:
                        attempt()
                        return
                    except pg_errors.LockNotAvailable:
                        if retry >= self.settings.lock_retries:
                            log.error(
                                "%s: lock not available, blocked by %s; %d retries spent",
                                label,
                                describe_blockers(watch.blockers),
                                self.settings.lock_retries,
                            )
                            raise
                delay = self.settings.backoff(retry + 1)
                log.warning(
                    "%s: lock not available within %s, blocked by %s; retry %d/%d in %s",
                    label,
                    format_duration(self.settings.lock_timeout),
                    describe_blockers(watch.blockers),
                    retry + 1,
                    self.settings.lock_retries,
                    format_duration(delay),
                )
                self.sleep(delay)
                if before_retry is not None:
                    before_retry()
        finally:
            watch.close()

    def transactional(
        self, label: str, script: str | bytes, after: str, *, flush: bool = True
    ) -> None:
        """``script; after`` (the bookkeeping) as one simple query: one implicit transaction.

        A failed try leaves nothing behind (no bookkeeping row either), so a retry
        starts clean. Without ``flush`` a quick script commits without waiting for the
        WAL flush (``DEFER_FLUSH``): a later flushing commit must follow. Raises
        ScriptFailed when it fails for good.
        """
        prefix = self.settings.set_local()
        deferred = "" if flush else f";\n{DEFER_FLUSH}"
        body = script if isinstance(script, bytes) else script.encode()
        query = b"".join((prefix.encode(), body, f"\n;\n{after}{deferred}".encode()))
        import psycopg

        def attempt() -> None:
            self.conn.execute(query)

        try:
            self._retrying(label, attempt)
        except psycopg.Error as exc:
            raise ScriptFailed(exc, len(prefix), started=False) from exc

    def split(self, label: str, script: str, book: SplitBookkeeping, resume_at: int = 0) -> None:
        """Statement by statement outside a transaction; ``book.start`` commits first.

        Each statement commits together with the progress record, except those that
        cannot run in a transaction block (they commit alone, then the progress); a
        transaction block of the file's own commits with the progress inside it. So a
        run that is killed resumes (``resume_at``) at the first statement whose work did
        not commit. A unit that hits 55P03 is retried (a block from its BEGIN); the units
        before it stay done. Raises ScriptFailed (``started``: ``book.start`` committed).
        """
        import psycopg

        statements = split(script)
        if resume_at:
            log.info(
                "%s resumes at statement %d of %d (line %d): the first %d committed "
                "before the run was interrupted",
                label,
                resume_at + 1,
                len(statements),
                statements[resume_at].line if resume_at < len(statements) else 0,
                resume_at,
            )
        else:
            log.info(
                "%s runs statement by statement outside a transaction (%d statements)",
                label,
                len(statements),
            )
        started = False
        done = resume_at
        self._current = None
        try:
            if book.start is not None:
                self.conn.execute(book.start(len(statements)).encode())
                started = True
            ours = self._set_session_timeouts()
            for unit in units(statements):
                if unit.start < resume_at:
                    continue
                self._unit(
                    label,
                    [statements[i] for i in unit],
                    book.progress(unit.stop, len(statements)) if book.progress else "",
                    resuming=bool(resume_at) and unit.start == resume_at,
                )
                done = unit.stop
            self._current = None
            self._refuse_open_transaction(statements)
            self._reset_session_timeouts(ours)
            if book.finish is not None:
                self._finish(label, book.finish())
        except (psycopg.Error, OpenTransaction) as exc:
            current = self._current
            if not self.conn.closed and not self.conn.broken:
                self._rollback_if_in_transaction()
                self._reset_session_timeouts()
            raise ScriptFailed(
                exc,
                -current.offset if current else 0,
                started=started,
                line=current.line if current else None,
                done=done,
            ) from exc

    def _finish(self, label: str, finish: str) -> None:
        changed = self.conn.execute(finish.encode()).rowcount
        if changed != 1:
            raise DatabaseError(
                f"{label}: its statements ran, but recording it in _prisma_migrations "
                f"changed {changed} rows instead of 1: its row was changed by someone else "
                "meanwhile",
                hint="check the history with `fast-note-migrate status`; mark the migration "
                "with `resolve --applied` if its work is complete",
            )

    def _unit(self, label: str, block: list[Statement], record: str, resuming: bool) -> None:
        """One statement, or a transaction block of the file's own, and its progress."""
        if resuming and len(block) == 1 and self._index_already_built(block[0]):
            if record:
                self.conn.execute(record.encode())
            return

        def attempt() -> None:
            for statement in block:
                self._current = statement
                last = statement is block[-1]
                if not last or not record:
                    self.conn.execute(statement.text.encode())
                elif statement.commits:  # the progress commits with the file's COMMIT
                    self.conn.execute(record.encode())
                    self.conn.execute(statement.text.encode())
                elif statement.needs_no_transaction:  # commits alone: progress after it
                    self.conn.execute(statement.text.encode())
                    self.conn.execute(record.encode())
                else:  # one simple query: one implicit transaction
                    self.conn.execute(f"{statement.text}\n;\n{record}".encode())

        def before_retry() -> None:
            self._rollback_if_in_transaction()
            for statement in block:
                self._drop_invalid_index(statement)

        before_retry()
        self._retrying(f"{label} (line {block[0].line})", attempt, before_retry)

    def _refuse_open_transaction(self, statements: list[Statement]) -> None:
        """A file that ends inside its own transaction must not count as applied: what
        it did would roll back when the connection closes."""
        from psycopg.pq import TransactionStatus

        if self.conn.info.transaction_status is TransactionStatus.IDLE:
            return
        opened = [s for s in statements if s.opens_transaction]
        self._current = opened[-1] if opened else None
        where = f" at line {opened[-1].line}" if opened else ""
        raise OpenTransaction(
            f"the script leaves a transaction open: the BEGIN{where} has "
            "no COMMIT; everything since it was rolled back"
        )

    def _set_session_timeouts(self) -> tuple[str, str]:
        """Our timeouts for the session of a statement-by-statement run; returns them as
        the server shows them."""
        self.conn.execute(
            f"SET lock_timeout = '{int(self.settings.lock_timeout * 1000)}ms'; "
            f"SET statement_timeout = '{int(self.settings.statement_timeout * 1000)}ms'".encode()
        )
        return self._session_timeouts()

    def _session_timeouts(self) -> tuple[str, str]:
        row = self.conn.execute(_CURRENT_TIMEOUTS).fetchone()
        assert row is not None
        return row[0], row[1]

    def _reset_session_timeouts(self, ours: tuple[str, str] | None = None) -> None:
        """RESET the timeouts this runner set. With ``ours`` (after a run that went
        through), a timeout the script SET itself stays on the session, as Prisma leaves
        a migration's session settings."""
        names = list(_TIMEOUTS)
        if ours is not None:
            now = self._session_timeouts()
            for name, mine, current in zip(_TIMEOUTS, ours, now, strict=True):
                if current != mine:
                    log.info(
                        "the migration set %s = %s itself: it stays for this session, as in Prisma",
                        name,
                        current,
                    )
                    names.remove(name)
        if names:
            self.conn.execute("; ".join(f"RESET {name}" for name in names).encode())

    def _rollback_if_in_transaction(self) -> None:
        from psycopg.pq import TransactionStatus

        if self.conn.info.transaction_status in (
            TransactionStatus.INTRANS,
            TransactionStatus.INERROR,
        ):
            self.conn.execute(b"ROLLBACK")  # a script's own BEGIN must not stay open

    def _index(self, statement: Statement) -> tuple[str, str, bool] | None:
        """(schema, name, valid) of the index a CREATE INDEX CONCURRENTLY builds, if it
        exists."""
        target = statement.concurrent_index()
        if target is None:
            return None
        schema, index = target
        row = self.conn.execute(INDEX_QUERY, (index, schema)).fetchone()
        return (row[0], row[1], row[2]) if row is not None else None

    def _index_already_built(self, statement: Statement) -> bool:
        """On resume: the interrupted run built this index but was stopped before it
        recorded the progress."""
        found = self._index(statement)
        if found is None or not found[2]:
            return False
        log.info(
            "index %s.%s was built by the interrupted run: not building it again",
            found[0],
            found[1],
        )
        return True

    def _drop_invalid_index(self, statement: Statement) -> None:
        """Drop an INVALID index an earlier failed CREATE INDEX CONCURRENTLY left."""
        row = self._index(statement)
        if row is None or row[2]:
            return
        from psycopg import sql

        log.warning(
            "dropping the INVALID index %s.%s left by an earlier failed try, "
            "before creating it again",
            row[0],
            row[1],
        )
        self.conn.execute(
            sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(row[0], row[1]))
        )
