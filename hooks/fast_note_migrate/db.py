"""Database URLs (Prisma style) and connections with retries.

The URL is read as Prisma reads it (quaint's ``postgres/url.rs``), for libpq: the ``host``
query parameter (a socket folder, Cloud SQL's ``/cloudsql/…``) wins over the host of the
authority; the TLS parameters are mapped in ``tls``; ``pgbouncer=true`` (a transaction
pooler between us and the database) turns prepared statements and session settings off,
and the verbs that migrate refuse it (``commands``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from . import tls
from .durations import format_duration
from .errors import ConfigError, ConnectTimeout, DatabaseError
from .logs import pod_name
from .redaction import mask_userinfo, redact
from .tls import Identity, TlsSettings

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

# URL parameters that libpq understands and that we pass on as they are (the TLS ones, some
# of which Prisma reads differently, are in tls.LIBPQ_TLS_PARAMS).
LIBPQ_PARAMS = frozenset(
    {
        "connect_timeout",
        "application_name",
        "options",
        "target_session_attrs",
        "host",
        "hostaddr",
        "port",
        "user",
        "password",
        "passfile",
        "requirepeer",
        "krbsrvname",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
    }
    | tls.LIBPQ_TLS_PARAMS
)
# Prisma's parameters for its connection pool and query engine: accepted, and of no use to
# a single migrating connection.
PRISMA_POOL_PARAMS = frozenset(
    {
        "schema",
        "connection_limit",
        "pool_timeout",
        "socket_timeout",
        "statement_cache_size",
        "single_use_connections",
        "max_connection_lifetime",
        "max_idle_connection_lifetime",
    }
)
PRISMA_ONLY_PARAMS = PRISMA_POOL_PARAMS | {"pgbouncer"} | tls.PRISMA_TLS_PARAMS
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


def _authority_host(parts: SplitResult) -> str:
    """The host of the URL's authority, percent-decoded (a socket folder may be written
    %2Fvar%2Frun%2Fpostgresql), brackets of an IPv6 address removed, case kept."""
    hostport = parts.netloc.rpartition("@")[2]
    if hostport.startswith("["):
        return hostport[1 : hostport.find("]")]
    return unquote(hostport.partition(":")[0])


def _pgbouncer(params: dict[str, str], url: str) -> bool:
    """Prisma's ``pgbouncer`` parameter: ``true`` or ``false``, as Prisma parses it."""
    value = params.get("pgbouncer", "false")
    if value not in ("true", "false"):
        raise ConfigError(
            f"the URL parameter pgbouncer must be true or false, not {value!r}: {redact(url)}",
            hint="write pgbouncer=true when the URL points at PgBouncer in transaction mode, "
            "else leave it out (Prisma refuses other values too)",
        )
    return value == "true"


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed Prisma-style PostgreSQL URL."""

    conninfo: dict[str, str]
    schema: str = "public"
    ignored: tuple[str, ...] = field(default=())
    display: str = ""
    pgbouncer: bool = False  # a transaction pooler: no prepared statements, no session state
    tls: TlsSettings = field(default_factory=TlsSettings)

    @classmethod
    def parse(cls, url: str | None, *, config_dir: Path | None = None) -> DatabaseUrl:
        """Parse ``url``; ``config_dir`` is where relative paths of Prisma's certificate
        parameters start (Prisma: the ``prisma`` folder, the migrations folder's parent)."""
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
        ignored = tuple(sorted(k for k in params if k not in LIBPQ_PARAMS | PRISMA_ONLY_PARAMS))
        if ignored:
            log.warning(
                "ignoring the URL parameter(s) %s: neither Prisma nor libpq knows them",
                ", ".join(ignored),
            )
        # As in Prisma and libpq, the host parameter wins over the host of the authority.
        host = params.get("host") or _authority_host(parts)
        if not host:
            raise ConfigError(
                f"the database URL names no host: {redact(url)}",
                hint=f"write it like {URL_EXAMPLE}, or for a Unix socket "
                "postgresql://USER@localhost/DATABASE?host=/path/to/socket/folder",
            )
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
        return cls(
            conninfo=conninfo,
            schema=schema,
            ignored=ignored,
            display=redact(url.strip()),
            pgbouncer=_pgbouncer(params, url),
            tls=tls.settings(params, conninfo, config_dir),
        )


def application_name(verb: str) -> str:
    """Identify the pod and the verb in pg_stat_activity (at most 63 bytes)."""
    return f"fast-note-migrate {verb} {pod_name()}"[:63]


def _connect_once(
    url: DatabaseUrl, verb: str, connect_timeout: float, identity: Identity | None
) -> psycopg.Connection:
    import psycopg

    kwargs: dict[str, str | int | None] = dict(url.conninfo)
    kwargs.setdefault("application_name", application_name(verb))
    kwargs.setdefault("connect_timeout", max(2, int(min(connect_timeout, 10) or 10)))
    for name, value in TCP_KEEPALIVES.items():
        kwargs.setdefault(name, value)
    # No prepared statements: the migrator's queries are one-offs (each migration's text is
    # its own), and psycopg's bookkeeping of candidates costs at every query. Through
    # PgBouncer in transaction mode they would break anyway: a statement prepared by one
    # client is there for the next (DuplicatePreparedStatement) or missing for its own
    # next query (Prisma's pgbouncer=true turns them off too).
    kwargs["prepare_threshold"] = None
    with tls.identity_files(identity) as files:  # libpq reads them during the handshake
        conn = psycopg.connect(autocommit=True, **{**kwargs, **files})  # type: ignore[arg-type]
    if url.pgbouncer:
        # Session settings would stick to a pooled server connection, for whichever client
        # gets it next, and not follow ours: the verbs allowed through PgBouncer (status,
        # wait, verify, lint) name the schema in every query instead.
        return conn
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
            "invalid integer value",
        )
    )


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else repr(exc))


def connect(url: DatabaseUrl, verb: str, connect_timeout: float) -> psycopg.Connection:
    """Connect, retrying with backoff until ``connect_timeout`` seconds have passed; a
    configuration error (a certificate file, TLS, a wrong password) is not retried."""
    import psycopg

    tls.check_files(url.tls)
    identity = tls.load_identity(url.tls)
    deadline = time.monotonic() + connect_timeout
    delay, attempt = 0.25, 0
    while True:
        attempt += 1
        try:
            return _connect_once(url, verb, connect_timeout, identity)
        except psycopg.OperationalError as exc:
            message = _first_line(exc)
            parameter = tls.failed_parameter(str(exc))
            if parameter is not None:
                raise tls.config_error(url.tls, parameter, url.display, message) from None
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
