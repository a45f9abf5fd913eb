"""Database URLs (Prisma style) and connections with retries."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

from .durations import format_duration
from .errors import ConfigError, ConnectTimeout, DatabaseError
from .logs import pod_name
from .redaction import mask_userinfo, redact

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

# Prisma URL parameters that libpq understands and that we pass on as they are.
LIBPQ_PARAMS = frozenset(
    {
        "sslmode",
        "sslcert",
        "sslkey",
        "sslrootcert",
        "sslpassword",
        "connect_timeout",
        "application_name",
        "options",
        "target_session_attrs",
        "host",
        "port",
        "user",
        "password",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "gssencmode",
        "channel_binding",
    }
)
# Prisma-only parameters: accepted, and not used by a single migrating connection.
PRISMA_ONLY_PARAMS = frozenset(
    {
        "schema",
        "connection_limit",
        "pool_timeout",
        "pgbouncer",
        "socket_timeout",
        "statement_cache_size",
        "sslidentity",
        "sslaccept",
        "single_use_connections",
        "max_connection_lifetime",
        "max_idle_connection_lifetime",
    }
)
# TCP keepalives on our side: a peer that vanishes without a FIN or RST (a lost node, a
# failover) is noticed within about 90 s instead of the kernel's default two hours, so a
# wait or a lock wait does not hang on a dead socket. The URL's own keepalives_* win.
TCP_KEEPALIVES = {
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "6",
}
URL_EXAMPLE = "postgresql://USER:PASSWORD@HOST:5432/DATABASE?schema=public"


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed Prisma-style PostgreSQL URL."""

    conninfo: dict[str, str]
    schema: str = "public"
    ignored: tuple[str, ...] = field(default=())
    display: str = ""

    @classmethod
    def parse(cls, url: str | None) -> DatabaseUrl:
        if not url:
            raise ConfigError(
                "no database URL given",
                hint=f"set DATABASE_URL or pass --database-url, e.g. {URL_EXAMPLE}",
            )
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:  # the parser's text may quote a piece of the password
            raise ConfigError(
                f"the database URL is malformed: {mask_userinfo(url)}",
                hint=f"write it like {URL_EXAMPLE}; in the user and password, percent-encode "
                "/ ? # @ and : (as %2F %3F %23 %40 %3A)",
            ) from None
        if parts.scheme not in ("postgresql", "postgres"):
            raise ConfigError(
                f"the database URL must start with postgresql:// (got {parts.scheme or 'no'} "
                f"scheme): {redact(url)}",
                hint=f"only PostgreSQL is supported; write it like {URL_EXAMPLE}",
            )
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        conninfo = {k: v for k, v in params.items() if k in LIBPQ_PARAMS}
        ignored = tuple(sorted(k for k in params if k not in LIBPQ_PARAMS | {"schema"}))
        host = unquote(parts.hostname or "") or conninfo.pop("host", "")
        if not host and not conninfo.get("host"):
            raise ConfigError(
                f"the database URL names no host: {redact(url)}",
                hint=f"write it like {URL_EXAMPLE}",
            )
        if host:
            conninfo["host"] = host
        if port:
            conninfo["port"] = str(port)
        if parts.username:
            conninfo["user"] = unquote(parts.username)
        if parts.password:
            conninfo["password"] = unquote(parts.password)
        database = unquote(parts.path.lstrip("/"))
        if database:
            conninfo["dbname"] = database
        schema = params.get("schema") or "public"
        return cls(conninfo=conninfo, schema=schema, ignored=ignored, display=redact(url))


def application_name(verb: str) -> str:
    """Identify the pod and the verb in pg_stat_activity (at most 63 bytes)."""
    return f"fast-note-migrate {verb} {pod_name()}"[:63]


def _connect_once(url: DatabaseUrl, verb: str, connect_timeout: float) -> psycopg.Connection:
    import psycopg

    kwargs: dict[str, str | int] = dict(url.conninfo)
    kwargs.setdefault("application_name", application_name(verb))
    kwargs.setdefault("connect_timeout", max(2, int(min(connect_timeout, 10) or 10)))
    for name, value in TCP_KEEPALIVES.items():
        kwargs.setdefault(name, value)
    conn = psycopg.connect(autocommit=True, **kwargs)  # type: ignore[arg-type]
    # Prisma runs migrations with the URL's schema as search_path.
    conn.execute("SELECT set_config('search_path', quote_ident(%s), false)", (url.schema,))
    if conn.info.server_version >= 140000:
        # A migrator killed mid-migration must not keep its transaction (and the lock)
        # running until the statement ends: the server checks for the lost client.
        conn.execute("SET client_connection_check_interval = 1000")
    return conn


def _is_permanent(message: str) -> bool:
    """Errors that retrying cannot fix: authentication, unknown database or role."""
    lowered = message.lower()
    return any(
        marker in lowered
        for marker in (
            "password authentication failed",
            "authentication failed",
            "does not exist",
            "no password supplied",
            "no pg_hba.conf entry",
            "invalid sslmode",
            "invalid connection option",
            "invalid port",
        )
    )


def connect(url: DatabaseUrl, verb: str, connect_timeout: float) -> psycopg.Connection:
    """Connect, retrying with backoff until ``connect_timeout`` seconds have passed."""
    import psycopg

    deadline = time.monotonic() + connect_timeout
    delay, attempt = 0.25, 0
    while True:
        attempt += 1
        try:
            return _connect_once(url, verb, connect_timeout)
        except psycopg.OperationalError as exc:
            message = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
            if _is_permanent(str(exc)):
                raise ConfigError(
                    f"cannot connect to {url.display}: {message}",
                    hint="check the user, password and database name in DATABASE_URL",
                ) from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectTimeout(
                    f"the database at {url.display} was not reachable within "
                    f"{format_duration(connect_timeout)} ({attempt} attempts): {message}",
                    hint="check the host and port in DATABASE_URL and that the database is up,"
                    " or raise --connect-timeout",
                ) from None
            log.warning(
                "database not reachable yet (attempt %d, %s left): %s",
                attempt,
                format_duration(remaining),
                message,
            )
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 5.0)
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot connect to {url.display}: {redact(str(exc))}") from None
