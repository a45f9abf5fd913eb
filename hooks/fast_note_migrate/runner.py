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
from .statements import Statement, split

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

INVALID_INDEX_QUERY = """
SELECT n.nspname, c.relname FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid AND c.relname = %s
  AND n.nspname = coalesce(%s, current_schema())
"""


@dataclass(frozen=True)
class Settings:
    """How carefully migrations run: timeouts and retries (all seconds)."""

    lock_timeout: float = 5.0  # 0 = wait forever, as PostgreSQL does by default
    statement_timeout: float = 0.0  # 0 = off
    lock_retries: int = 3
    retry_delay: float = 1.0  # first backoff; doubles each retry, at most 60s

    def backoff(self, retry: int) -> float:
        return float(min(60.0, self.retry_delay * 2 ** (retry - 1)))

    def set_local(self) -> str:
        """``SET LOCAL`` lines for the start of a transaction (nothing outlives it)."""
        return "".join(
            f"SET LOCAL {name} = '{int(value * 1000)}ms';\n"
            for name, value in (("lock_timeout", self.lock_timeout),
                                ("statement_timeout", self.statement_timeout)))


class ScriptFailed(Exception):
    """A script failed for good: ``error`` is the psycopg error; ``offset`` maps its
    position into the migration file (see ``deploy.failure_logs``)."""

    def __init__(self, error: Exception, offset: int, started: bool,
                 line: int | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.offset = offset
        self.started = started  # a started row was committed and is still unfinished
        self.line = line  # the failing statement's line, when run statement by statement


@dataclass
class Runner:
    """Runs scripts with timeouts and lock retries on one autocommit connection."""

    conn: psycopg.Connection
    settings: Settings = field(default_factory=Settings)
    sleep: Callable[[float], None] = time.sleep

    def _retrying(self, label: str, attempt: Callable[[], None],
                  before_retry: Callable[[], None] | None = None) -> None:
        """Run ``attempt``; on 55P03 log the blockers, back off and run it again."""
        timeout = self.settings.lock_timeout
        # Watch only while a lock timeout can fire, and often enough to see the blocker
        # before it does; without a lock timeout there is nothing to explain.
        watch = BlockerWatch(self.conn, grace=min(1.0, timeout / 2) if timeout else float("inf"),
                             interval=min(1.0, max(0.05, timeout / 5)))
        try:
            for retry in range(self.settings.lock_retries + 1):
                with watch:
                    try:
                        attempt()
                        return
                    except pg_errors.LockNotAvailable:
                        if retry >= self.settings.lock_retries:
                            log.error("%s: lock not available, blocked by %s; %d retries spent",
                                      label, describe_blockers(watch.blockers),
                                      self.settings.lock_retries)
                            raise
                delay = self.settings.backoff(retry + 1)
                log.warning("%s: lock not available within %s, blocked by %s; retry %d/%d "
                            "in %s", label, format_duration(self.settings.lock_timeout),
                            describe_blockers(watch.blockers), retry + 1,
                            self.settings.lock_retries, format_duration(delay))
                self.sleep(delay)
                if before_retry is not None:
                    before_retry()
        finally:
            watch.close()

    def transactional(self, label: str, script: str, after: str) -> None:
        """``script; after`` (the bookkeeping) as one simple query: one implicit transaction.

        A failed try leaves nothing behind (no bookkeeping row either), so a retry
        starts clean. Raises ScriptFailed when it fails for good.
        """
        prefix = self.settings.set_local()
        query = f"{prefix}{script}\n;\n{after}".encode()
        import psycopg

        def attempt() -> None:
            self.conn.execute(query)

        try:
            self._retrying(label, attempt)
        except psycopg.Error as exc:
            raise ScriptFailed(exc, len(prefix), started=False) from exc

    def split(self, label: str, script: str, before: str, after: str) -> None:
        """Statement by statement outside a transaction; ``before`` commits first.

        A statement that hits 55P03 is retried (the statements before it stay done).
        Raises ScriptFailed (``started`` tells whether ``before`` committed).
        """
        import psycopg

        statements = split(script)
        log.info("%s runs statement by statement outside a transaction (%d statements)",
                 label, len(statements))
        started = False
        current: Statement | None = None
        try:
            if before:
                self.conn.execute(before.encode())
                started = True
            self._set_session_timeouts()
            for statement in statements:
                current = statement
                self._statement(label, statement)
            current = None
            self._reset_session_timeouts()
            self.conn.execute(after.encode())
        except psycopg.Error as exc:
            if not self.conn.closed and not self.conn.broken:
                self._rollback_if_in_transaction()
                self._reset_session_timeouts()
            raise ScriptFailed(exc, -current.offset if current else 0, started=started,
                               line=current.line if current else None) from exc

    def _statement(self, label: str, statement: Statement) -> None:
        def attempt() -> None:
            self.conn.execute(statement.text.encode())

        def before_retry() -> None:
            self._drop_invalid_index(statement)

        before_retry()
        self._retrying(f"{label} (line {statement.line})", attempt, before_retry)

    def _set_session_timeouts(self) -> None:
        self.conn.execute(
            f"SET lock_timeout = '{int(self.settings.lock_timeout * 1000)}ms'; "
            f"SET statement_timeout = '{int(self.settings.statement_timeout * 1000)}ms'".encode())

    def _reset_session_timeouts(self) -> None:
        self.conn.execute(b"RESET lock_timeout; RESET statement_timeout")

    def _rollback_if_in_transaction(self) -> None:
        from psycopg.pq import TransactionStatus

        if self.conn.info.transaction_status in (TransactionStatus.INTRANS,
                                                 TransactionStatus.INERROR):
            self.conn.execute(b"ROLLBACK")  # a script's own BEGIN must not stay open

    def _drop_invalid_index(self, statement: Statement) -> None:
        """Drop an INVALID index an earlier failed CREATE INDEX CONCURRENTLY left."""
        target = statement.concurrent_index()
        if target is None:
            return
        schema, index = target
        row = self.conn.execute(INVALID_INDEX_QUERY, (index, schema)).fetchone()
        if row is None:
            return
        from psycopg import sql

        log.warning("dropping the INVALID index %s.%s left by an earlier failed try, "
                    "before creating it again", row[0], row[1])
        self.conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
            sql.Identifier(row[0], row[1])))
