"""Who blocks a migration: a watch on ``pg_blocking_pids`` while an attempt runs.

When a statement hits its lock timeout, the runner names the sessions that held it up
(application, state, query), so the log says what to stop instead of only "55P03".
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

BLOCKERS_QUERY = """
SELECT a.pid, coalesce(nullif(a.application_name, ''), '(no application_name)'),
       a.state, a.query_start, a.xact_start, left(a.query, 120)
FROM unnest(pg_blocking_pids(%s)) AS b(pid) JOIN pg_stat_activity a ON a.pid = b.pid
ORDER BY a.pid
"""


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
        return psycopg.connect(
            dsn,
            password=password or None,
            autocommit=True,
            application_name="fast-note-migrate lock watch",
        )

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


_params: weakref.WeakKeyDictionary[Any, tuple[int, str, str | None]] = weakref.WeakKeyDictionary()


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
                self.thread = threading.Thread(
                    target=self._run, daemon=True, name="fast-note-migrate lock watch"
                )
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
