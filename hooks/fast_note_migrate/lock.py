"""Prisma's advisory lock (key 72707369), with a bounded and explained wait."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from psycopg import errors as pg_errors

from .durations import format_duration
from .errors import LockTimeout

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

LOCK_KEY = 72707369  # the key `prisma migrate` uses: Prisma and this migrator exclude each other
PROGRESS_EVERY = 10.0  # seconds between "still waiting" lines

HOLDER_QUERY = """
SELECT a.pid, coalesce(nullif(a.application_name, ''), '(no application_name)'),
       coalesce(host(a.client_addr), 'local socket'), a.backend_start, a.state,
       a.query_start, left(a.query, 120)
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.classid = (%(key)s::bigint >> 32)::oid AND l.objid = (%(key)s::bigint & 4294967295)::oid
  AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


HELD_ELSEWHERE_QUERY = """
SELECT EXISTS (SELECT 1 FROM pg_locks l
WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()
  AND l.classid = (%(key)s::bigint >> 32)::oid AND l.objid = (%(key)s::bigint & 4294967295)::oid
  AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))
"""


def held_elsewhere(conn: psycopg.Connection) -> bool:
    """Whether another session holds the migration lock (a deploy is running)."""
    row = conn.execute(HELD_ELSEWHERE_QUERY, {"key": LOCK_KEY}).fetchone()
    return bool(row and row[0])


def describe_holder(conn: psycopg.Connection) -> str:
    """Who holds the migration lock, from pg_stat_activity, in one line."""
    row = conn.execute(HOLDER_QUERY, {"key": LOCK_KEY}).fetchone()
    if row is None:
        return "no session holds it any more"
    pid, app, client, since, state, query_start, query = row
    text = f"pid {pid} ({app}) from {client}, connected since {since:%Y-%m-%d %H:%M:%S %Z}"
    if state == "active" and query_start is not None:
        text += f", running since {query_start:%H:%M:%S}: {query!r}"
    elif state:
        text += f", {state}"
    return text


def acquire(conn: psycopg.Connection, timeout: float) -> float:
    """Take the session-level advisory lock, waiting at most ``timeout`` seconds.

    Waits in PostgreSQL's lock queue (pg_advisory_lock under lock_timeout), in slices
    so that progress and the current holder are logged. Returns the seconds waited.
    """
    started = time.monotonic()
    deadline = started + timeout
    while True:
        remaining = deadline - time.monotonic()
        slice_ms = max(1, int(min(remaining, PROGRESS_EVERY) * 1000))
        conn.execute(f"SET lock_timeout = {slice_ms}")
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
            return time.monotonic() - started
        except pg_errors.LockNotAvailable:
            holder = describe_holder(conn)
            waited = time.monotonic() - started
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    f"timed out after {format_duration(waited)} waiting for the migration lock "
                    f"(advisory lock {LOCK_KEY}); it is held by {holder}",
                    hint="another deploy is running: wait for it, or if that session is stuck, "
                    "end it with SELECT pg_terminate_backend(<pid>); raise --lock-timeout to "
                    "wait longer",
                ) from None
            log.info(
                "waiting for the migration lock (%s so far), held by %s",
                format_duration(waited),
                holder,
            )
        finally:
            conn.execute("RESET lock_timeout")


def release(conn: psycopg.Connection) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
