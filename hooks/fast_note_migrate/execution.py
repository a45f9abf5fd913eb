"""Running a migration script safely on a live database.

- every migration runs under ``lock_timeout`` (and optionally ``statement_timeout``), set
  with ``SET LOCAL`` inside its transaction so that nothing leaks to the session (the
  advisory-lock wait in ``lock`` keeps its own timeout);
- a migration that hits SQLSTATE 55P03 (lock not available) is retried with backoff, and
  each retry names the sessions that blocked it;
- a script with statements that cannot run in a transaction block (``CREATE INDEX
  CONCURRENTLY`` …) is split with sqlparse and run statement by statement; an INVALID
  index left by an earlier try of a ``CREATE INDEX CONCURRENTLY`` is dropped first.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg import errors as pg_errors

from .durations import format_duration

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

# Statements that manage their own transaction or cannot run inside a transaction block.
_NON_TRANSACTIONAL = re.compile(
    r"^\s*(BEGIN|COMMIT|ROLLBACK|START\s+TRANSACTION|END|ABORT|SAVEPOINT|RELEASE|VACUUM|"
    r"ALTER\s+SYSTEM|(CREATE|DROP)\s+DATABASE|(CREATE|DROP)\s+TABLESPACE|"
    r"CREATE\s+(UNIQUE\s+)?INDEX\s+CONCURRENTLY|DROP\s+INDEX\s+CONCURRENTLY|"
    r"REINDEX\s+(\(.*?\)\s*)?\w+\s+CONCURRENTLY|DETACH\s+PARTITION.*\bCONCURRENTLY|"
    r"ALTER\s+TABLE\b.*\bDETACH\s+PARTITION\b.*\bCONCURRENTLY)\b",
    re.IGNORECASE | re.DOTALL,
)
# Cheap test before splitting: a script without any of these words runs as one query.
_MAYBE_NON_TRANSACTIONAL = re.compile(
    r"\b(BEGIN|COMMIT|ROLLBACK|START|END|ABORT|SAVEPOINT|RELEASE|VACUUM|SYSTEM|DATABASE|"
    r"TABLESPACE|CONCURRENTLY)\b", re.IGNORECASE)
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_CREATE_INDEX_CONCURRENTLY = re.compile(
    rf"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    rf"(?P<index>{_IDENT})\s+ON\s+(?:ONLY\s+)?(?:(?P<schema>{_IDENT})\s*\.\s*)?{_IDENT}",
    re.IGNORECASE,
)

BLOCKERS_QUERY = """
SELECT a.pid, coalesce(nullif(a.application_name, ''), '(no application_name)'),
       a.state, a.query_start, a.xact_start, left(a.query, 120)
FROM unnest(pg_blocking_pids(%s)) AS b(pid) JOIN pg_stat_activity a ON a.pid = b.pid
ORDER BY a.pid
"""

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


# Splitting -------------------------------------------------------------------------

@dataclass(frozen=True)
class Statement:
    """One statement of a script: its text (comments included) and where it starts."""

    text: str
    offset: int  # character offset of ``text`` in the script
    code: str  # the statement without comments, for matching
    line: int  # 1-based line of the statement's first keyword

    @property
    def needs_no_transaction(self) -> bool:
        return bool(_NON_TRANSACTIONAL.match(self.code))


def split(script: str) -> list[Statement]:
    """Split a script into statements (dollar quotes, strings and comments respected)."""
    from sqlparse import tokens
    from sqlparse.engine import FilterStack

    result: list[Statement] = []
    cursor = 0
    stack = FilterStack()  # type: ignore[no-untyped-call]  # sqlparse ships no annotations
    for parsed in stack.run(script):  # type: ignore[no-untyped-call]  # (ditto)
        text = str(parsed)
        offset = script.find(text, cursor)
        if offset < 0:  # sqlparse keeps the text intact; this is a safety net
            offset = cursor
        cursor = offset + len(text)
        code_parts: list[str] = []
        first_at: int | None = None
        position = offset
        for token in parsed.flatten():
            is_comment = token.ttype in tokens.Comment
            if not is_comment and not token.is_whitespace and first_at is None:
                first_at = position
            if not is_comment:
                code_parts.append(token.value)
            position += len(token.value)
        code = "".join(code_parts).strip()
        if not code or code == ";":
            continue
        start = first_at if first_at is not None else offset
        result.append(Statement(text, offset, code, script.count("\n", 0, start) + 1))
    return result


def needs_split(script: str) -> bool:
    """Whether a script must run statement by statement outside one transaction."""
    if not _MAYBE_NON_TRANSACTIONAL.search(script):  # cheap test first: most scripts
        return False
    return any(s.needs_no_transaction for s in split(script))


# Blocking sessions -------------------------------------------------------------------

def describe_blockers(rows: list[tuple[Any, ...]]) -> str:
    parts = []
    for pid, app, state, query_start, xact_start, query in rows:
        since = query_start or xact_start
        when = f", query started {since:%H:%M:%S}" if since is not None else ""
        parts.append(f"pid {pid} ({app}, {state}{when}: {query!r})")
    return "; ".join(parts) if parts else "a session that ended before it could be named"


class BlockerWatch:
    """While an attempt runs, remember who blocks our backend (pg_blocking_pids).

    A second connection is opened only when an attempt runs longer than ``grace``
    seconds, so quick migrations cost nothing: one daemon thread per process does the
    watching (started on first use), and entering or leaving a watch only arms or
    disarms it under a lock, with no thread start or join per migration (which cost
    milliseconds of scheduling each on a busy machine; see docs/benchmarks.md).
    """

    def __init__(self, conn: psycopg.Connection, grace: float, interval: float = 0.2) -> None:
        self.conn = conn
        self.grace = grace
        self.interval = interval
        self.blockers: list[tuple[Any, ...]] = []
        self._watcher: psycopg.Connection | None = None
        self._next_poll = float("inf")  # guarded by _WATCHER.cond
        self._polling = False  # guarded by _WATCHER.cond

    def _connect(self) -> psycopg.Connection:
        import psycopg

        _, dsn, password = _conn_params(self.conn)
        return psycopg.connect(dsn, password=password or None, autocommit=True,
                               application_name="fast-note-migrate lock watch")

    def _poll(self) -> None:
        """One look at who blocks us (in the watcher thread; the watch is armed)."""
        if self._watcher is None:
            self._watcher = self._connect()
        rows = self._watcher.execute(BLOCKERS_QUERY, (_conn_params(self.conn)[0],)).fetchall()
        if rows:
            self.blockers = rows

    def __enter__(self) -> BlockerWatch:
        self.blockers = []
        if self.grace != float("inf"):
            # Read here, in the migrating thread: libpq objects are not shared across threads.
            _conn_params(self.conn)
            _WATCHER.arm(self, time.monotonic() + self.grace)
        return self

    def __exit__(self, *exc: object) -> None:
        _WATCHER.disarm(self)  # waits only for a look at the blockers in progress

    def close(self) -> None:
        _WATCHER.disarm(self)
        if self._watcher is not None:
            self._watcher.close()


_params: weakref.WeakKeyDictionary[Any, tuple[int, str, str | None]] = (
    weakref.WeakKeyDictionary())


def _conn_params(conn: psycopg.Connection) -> tuple[int, str, str | None]:
    """Backend pid, dsn and password of a connection, read once (the dsn costs ~0.4 ms)."""
    found = _params.get(conn)
    if found is None:
        found = _params[conn] = (conn.info.backend_pid, conn.info.dsn, conn.info.password)
    return found


class _Watcher:
    """The one thread that looks at the blockers of the armed watch, if any.

    Arming and disarming do not wake the thread (a wake-up per migration costs a GIL
    hand-off): it sleeps until the armed watch's next look is due, and on waking
    re-reads which watch is armed. Only an earlier deadline than the one it sleeps
    until wakes it.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.current: BlockerWatch | None = None
        self.thread: threading.Thread | None = None
        self.wake_at = float("inf")  # when the sleeping thread wakes by itself

    def arm(self, watch: BlockerWatch, first_poll: float) -> None:
        with self.cond:
            watch._next_poll = first_poll
            self.current = watch
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, daemon=True,
                                               name="fast-note-migrate lock watch")
                self.thread.start()
            elif first_poll < self.wake_at:
                self.cond.notify_all()

    def disarm(self, watch: BlockerWatch) -> None:
        with self.cond:
            if self.current is watch:
                self.current = None
            while watch._polling:  # a look in progress: wait for its end (slow attempts only)
                self.cond.wait()

    def _next(self) -> BlockerWatch:
        with self.cond:
            while True:
                watch = self.current
                due = watch._next_poll if watch is not None else float("inf")
                delay = due - time.monotonic()
                if watch is not None and delay <= 0:
                    watch._polling = True
                    self.wake_at = float("inf")
                    return watch
                self.wake_at = due
                self.cond.wait(None if due == float("inf") else delay)
                self.wake_at = float("inf")

    def _run(self) -> None:
        while True:
            watch = self._next()
            next_poll = time.monotonic() + watch.interval
            try:
                watch._poll()
            except Exception as exc:  # watching is best effort; the migration goes on
                log.debug("could not watch for blocking sessions: %s", exc)
                next_poll = float("inf")  # not again during this attempt
            with self.cond:
                watch._polling = False
                watch._next_poll = next_poll
                self.cond.notify_all()


_WATCHER = _Watcher()


# Running -------------------------------------------------------------------------------

class ScriptFailed(Exception):
    """A script failed for good: ``error`` is the psycopg error; ``offset`` maps its
    position into the migration file (see ``commands._failure_logs``)."""

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
        match = _CREATE_INDEX_CONCURRENTLY.match(statement.code)
        if match is None:
            return
        index = _unquote(match.group("index"))
        schema = _unquote(match.group("schema")) if match.group("schema") else None
        row = self.conn.execute(INVALID_INDEX_QUERY, (index, schema)).fetchone()
        if row is None:
            return
        from psycopg import sql

        log.warning("dropping the INVALID index %s.%s left by an earlier failed try, "
                    "before creating it again", row[0], row[1])
        self.conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
            sql.Identifier(row[0], row[1])))


def _unquote(identifier: str) -> str:
    if identifier.startswith('"'):
        return identifier[1:-1].replace('""', '"')
    return identifier.lower()
