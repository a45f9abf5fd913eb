"""Prisma's URL semantics (quaint's ``postgres/url.rs``) on libpq: the ``host`` parameter wins
over the authority's host; ``sslcert`` is the CA to trust, ``sslidentity`` + ``sslpassword``
a PKCS#12 client identity, ``sslaccept`` the verification; ``pgbouncer`` is true or false;
a TLS or certificate mistake exits 2 at once, naming the URL parameter."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fast_note_migrate.db import DatabaseUrl, connect
from fast_note_migrate.errors import ConfigError
from testkit.certificates import Authority
from testkit.cli import CliResult, Migrator
from testkit.database import Database
from testkit.migrations_folder import MigrationsFolder
from testkit.pgserver import PostgresServer
from testkit.tlsproxy import TlsProxy

BASE = "postgresql://app:Pa55-w0rd@db.example:5433/fast_note"
P12_PASSWORD = "p12-Pa55-never-shown"
CERT_USER = "cert-user"


@pytest.fixture
def logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> pytest.LogCaptureFixture:
    """The migrator's warnings, also after an in-process CLI run set up its own handler."""
    logger = logging.getLogger("fast_note_migrate")
    monkeypatch.setattr(logger, "propagate", True)
    monkeypatch.setattr(logger, "handlers", [])
    caplog.set_level(logging.WARNING, logger="fast_note_migrate")
    return caplog


def parse(query: str, config_dir: Path | None = None) -> DatabaseUrl:
    return DatabaseUrl.parse(f"{BASE}?{query}", config_dir=config_dir)


# The host ------------------------------------------------------------------------------


def test_the_host_parameter_wins_over_the_authority() -> None:
    """Cloud SQL's socket folder in ?host= is where we connect, with the URL's port."""
    url = parse("host=/cloudsql/project:region:instance&schema=app")
    assert url.conninfo["host"] == "/cloudsql/project:region:instance"
    assert (url.conninfo["port"], url.conninfo["dbname"], url.schema) == (
        "5433",
        "fast_note",
        "app",
    )
    encoded = DatabaseUrl.parse("postgresql://app@localhost/db?host=%2Fvar%2Frun%2Fpostgresql")
    assert encoded.conninfo["host"] == "/var/run/postgresql"


def test_the_authority_host_without_a_host_parameter() -> None:
    """Its case kept, an IPv6 address without brackets, a percent-encoded socket folder
    decoded; none at all is an error."""
    assert parse("").conninfo["host"] == "db.example"
    assert DatabaseUrl.parse("postgresql://u@DB.Example/d").conninfo["host"] == "DB.Example"
    assert DatabaseUrl.parse("postgresql://u@[2001:db8::1]:5432/d").conninfo["host"] == (
        "2001:db8::1"
    )
    socket_url = DatabaseUrl.parse("postgresql://u@%2Ftmp%2FPG/d")
    assert socket_url.conninfo["host"] == "/tmp/PG"
    with pytest.raises(ConfigError, match="names no host"):
        DatabaseUrl.parse("postgresql:///d?schema=public")


def test_a_connection_over_the_socket_folder_of_the_host_parameter(
    pg_server: PostgresServer, db: Database, migrations: MigrationsFolder
) -> None:
    """The authority names a host that does not resolve: the ?host= socket folder is used
    (a Unix socket: no client address), and the CLI works through it."""
    url = (
        f"postgresql://postgres@nowhere.invalid:{pg_server.port}/{db.name}"
        f"?host={pg_server.workdir}&schema=public"
    )
    conn = connect(DatabaseUrl.parse(url), "status", 5)
    try:
        assert conn.execute("SELECT inet_client_addr()").fetchone() == (None,)
        assert conn.info.host == str(pg_server.workdir)
    finally:
        conn.close()
    migrations.add("init", "CREATE TABLE account (id int);")
    result = Migrator(url, migrations.path).run("deploy")
    assert result.code == 0, result.output
    assert db.applied() == [m.name for m in sorted(migrations.path.iterdir())]


# TLS parameters, mapped ------------------------------------------------------------------


def test_prisma_sslcert_is_the_ca_to_trust_and_strict_is_verify_full() -> None:
    url = parse("sslmode=require&sslaccept=strict&sslcert=/certs/ca.pem&sslpassword=x")
    assert url.conninfo["sslmode"] == "verify-full"
    assert url.conninfo["sslrootcert"] == "/certs/ca.pem"
    assert "sslcert" not in url.conninfo  # not a client certificate
    assert "sslpassword" not in url.conninfo
    assert url.tls.files == (("sslcert", Path("/certs/ca.pem")),)
    assert url.tls.origin("sslrootcert") == "sslcert"


def test_strict_without_sslcert_trusts_the_system_cas() -> None:
    url = parse("sslmode=require&sslaccept=strict")
    assert (url.conninfo["sslmode"], url.conninfo["sslrootcert"]) == ("verify-full", "system")
    assert parse("sslmode=verify-ca&sslaccept=strict").conninfo["sslmode"] == "verify-full"


def test_accept_invalid_certs_verifies_nothing_as_prisma_does(
    logged: pytest.LogCaptureFixture,
) -> None:
    """Prisma's default: encrypted, the certificate not verified; sslcert is checked to be
    there but not used for verification, and a warning says so."""
    for accept in ("", "&sslaccept=accept_invalid_certs"):
        url = parse(f"sslmode=require&sslcert=/certs/ca.pem{accept}")
        assert url.conninfo["sslmode"] == "require"
        assert "sslrootcert" not in url.conninfo
        assert url.tls.files == (("sslcert", Path("/certs/ca.pem")),)
    assert "not used to verify the server" in logged.text


def test_strict_where_tls_is_optional_is_a_warning(logged: pytest.LogCaptureFixture) -> None:
    url = parse("sslaccept=strict")
    assert "sslmode" not in url.conninfo
    assert "only when TLS is required" in logged.text


def test_an_unknown_sslaccept_is_strict_as_in_prisma(logged: pytest.LogCaptureFixture) -> None:
    assert parse("sslmode=require&sslaccept=yes").conninfo["sslmode"] == "verify-full"
    assert "sslaccept=yes is neither strict nor accept_invalid_certs" in logged.text


def test_a_libpq_style_url_keeps_libpq_meanings() -> None:
    """With sslrootcert or sslkey the URL is libpq's: sslcert is the client certificate."""
    url = parse(
        "sslmode=verify-full&sslrootcert=/c/ca.crt&sslcert=/c/client.crt&sslkey=/c/client.key"
        "&sslpassword=secret"
    )
    assert {k: url.conninfo[k] for k in ("sslrootcert", "sslcert", "sslkey", "sslpassword")} == {
        "sslrootcert": "/c/ca.crt",
        "sslcert": "/c/client.crt",
        "sslkey": "/c/client.key",
        "sslpassword": "secret",
    }
    assert url.conninfo["sslmode"] == "verify-full"
    assert [name for name, _ in url.tls.files] == ["sslrootcert", "sslcert", "sslkey"]
    assert parse("sslmode=verify-full&sslrootcert=system").tls.files == ()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("sslidentity=/c/id.p12&sslkey=/c/client.key", "mixes Prisma's sslidentity"),
        ("sslmode=verify-full&sslaccept=accept_invalid_certs", "sslaccept=accept_invalid_certs"),
        ("sslrootcert=/c/ca.crt&sslaccept=accept_invalid_certs", "and sslrootcert (verify it)"),
        ("pgbouncer=1", "pgbouncer must be true or false, not '1'"),
        ("pgbouncer=True", "pgbouncer must be true or false"),
    ],
)
def test_contradictory_or_invalid_parameters_are_configuration_errors(
    query: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        parse(query)
    assert caught.value.exit_code == 2
    assert "Pa55-w0rd" not in str(caught.value)


def test_pgbouncer_is_true_or_false() -> None:
    assert parse("pgbouncer=true").pgbouncer is True
    assert parse("pgbouncer=false").pgbouncer is False
    assert parse("schema=app").pgbouncer is False


def test_relative_paths_start_where_prisma_starts_them(tmp_path: Path) -> None:
    """Prisma's certificate parameters: at the prisma folder (the migrations folder's
    parent); libpq's: at the working directory, as libpq does."""
    prisma = tmp_path / "prisma"
    url = parse("sslcert=certs/ca.pem&sslidentity=../id.p12", config_dir=prisma)
    assert dict(url.tls.files) == {
        "sslcert": prisma / "certs/ca.pem",
        "sslidentity": prisma / "../id.p12",
    }
    assert parse("sslrootcert=certs/ca.pem", config_dir=prisma).tls.files == (
        ("sslrootcert", Path("certs/ca.pem")),
    )


def test_unknown_parameters_are_named_in_a_warning(logged: pytest.LogCaptureFixture) -> None:
    url = parse("schema=app&connection_limit=5&sslmode=prefer&frobnicate=1")
    assert url.ignored == ("frobnicate",)
    assert "ignoring the URL parameter(s) frobnicate" in logged.text
    assert "connection_limit" not in logged.text


# TLS mistakes: exit 2 at once, naming the parameter ---------------------------------------


def run_status(url: str, folder: MigrationsFolder, **env: str) -> tuple[CliResult, float]:
    started = time.monotonic()
    result = Migrator(url, folder.path).run("status", MIGRATE_CONNECT_TIMEOUT="1m", **env)
    return result, time.monotonic() - started


def assert_config_error(result: CliResult, elapsed: float, *phrases: str) -> None:
    assert result.code == 2, result.output
    assert elapsed < 10, f"took {elapsed:.1f}s: retried?\n{result.output}"
    for phrase in phrases:
        assert phrase in result.output, f"{phrase!r} not in:\n{result.output}"
    assert "not reachable" not in result.output
    assert "what to do:" in result.output
    assert "Traceback" not in result.output


def test_a_missing_root_certificate_exits_2_at_once(
    db: Database, migrations: MigrationsFolder
) -> None:
    result, elapsed = run_status(
        db.url(sslmode="verify-full", sslrootcert="/nonexistent/ca.pem"), migrations
    )
    assert_config_error(result, elapsed, "the file of the URL parameter sslrootcert does not exist")


def test_tls_required_of_a_server_without_tls_exits_2_at_once(
    db: Database, migrations: MigrationsFolder
) -> None:
    """Before: retried for --connect-timeout (a minute), then exit 6 "not reachable"."""
    result, elapsed = run_status(db.url(sslmode="require"), migrations)
    assert_config_error(
        result, elapsed, "TLS configuration error (URL parameter sslmode)", "does not support SSL"
    )


# Against a server that speaks TLS ---------------------------------------------------------


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority.create(tmp_path_factory.mktemp("certificates"))


def _front(pg_server: PostgresServer, authority: Authority, client_ca: bool) -> TlsProxy:
    cert, key = authority.server_pem(f"server-{client_ca}", ("localhost", "127.0.0.1"))
    return TlsProxy(pg_server.port, cert, key, authority.path if client_ca else None)


@pytest.fixture(scope="module")
def tls_front(pg_server: PostgresServer, authority: Authority) -> Iterator[TlsProxy]:
    """The session's PostgreSQL behind TLS, with a certificate of ``authority`` for
    localhost and 127.0.0.1 (the embedded PostgreSQL is built without OpenSSL)."""
    with _front(pg_server, authority, client_ca=False) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def mtls_front(pg_server: PostgresServer, authority: Authority) -> Iterator[TlsProxy]:
    """The same, demanding a client certificate signed by ``authority``."""
    with _front(pg_server, authority, client_ca=True) as proxy:
        yield proxy


def tls_url(db: Database, front: TlsProxy, host: str = "127.0.0.1", **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"postgresql://postgres@{host}:{front.port}/{db.name}?{query}"


def session_uses_tls(url: str) -> bool:
    conn = connect(DatabaseUrl.parse(url), "status", 5)
    try:
        return bool(conn.pgconn.ssl_in_use)
    finally:
        conn.close()


def test_strict_verifies_the_server_against_sslcert(
    db: Database, tls_front: TlsProxy, authority: Authority, migrations: MigrationsFolder
) -> None:
    url = tls_url(db, tls_front, sslmode="require", sslaccept="strict", sslcert=str(authority.path))
    assert session_uses_tls(url)
    migrations.add("init", "CREATE TABLE account (id int);")
    result = Migrator(url, migrations.path).run("deploy")
    assert result.code == 0, result.output
    assert len(db.applied()) == 1


def test_strict_with_another_ca_exits_2_naming_sslcert(
    db: Database, tls_front: TlsProxy, migrations: MigrationsFolder, tmp_path: Path
) -> None:
    other = Authority.create(tmp_path, "another-ca")
    url = tls_url(db, tls_front, sslmode="require", sslaccept="strict", sslcert=str(other.path))
    result, elapsed = run_status(url, migrations)
    assert_config_error(
        result, elapsed, "TLS configuration error (URL parameter sslcert)", "certificate verify"
    )


def test_strict_with_a_host_not_in_the_certificate_exits_2_naming_the_host(
    db: Database, tls_front: TlsProxy, authority: Authority, migrations: MigrationsFolder
) -> None:
    """hostaddr reaches the server; the URL's host is not a name in its certificate."""
    url = tls_url(
        db,
        tls_front,
        host="db.other.internal",
        hostaddr="127.0.0.1",
        sslmode="require",
        sslaccept="strict",
        sslcert=str(authority.path),
    )
    result, elapsed = run_status(url, migrations)
    assert_config_error(result, elapsed, "(URL parameter host)", "does not match host name")


def test_accept_invalid_certs_connects_to_a_server_of_another_ca(
    db: Database, tls_front: TlsProxy, migrations: MigrationsFolder, tmp_path: Path
) -> None:
    """As in Prisma: encrypted, not verified, and a warning that sslcert is not used."""
    other = Authority.create(tmp_path, "another-ca")
    url = tls_url(db, tls_front, sslmode="require", sslcert=str(other.path))
    assert session_uses_tls(url)
    result = Migrator(url, migrations.path).run("status")
    assert result.code == 0, result.output
    assert "not used to verify the server" in result.err


def test_a_pkcs12_identity_is_presented_as_the_client_certificate(
    db: Database,
    mtls_front: TlsProxy,
    authority: Authority,
    migrations: MigrationsFolder,
    tmp_path: Path,
) -> None:
    """sslidentity + sslpassword: the server, which demands a client certificate of the CA,
    gets the one in the PKCS#12 file; the PEM files are gone once connected; the password
    is never shown."""
    identity = authority.client_pkcs12(CERT_USER, P12_PASSWORD)
    url = tls_url(
        db,
        mtls_front,
        sslmode="require",
        sslaccept="strict",
        sslcert=str(authority.path),
        sslidentity=str(identity),
        sslpassword=P12_PASSWORD,
    )
    migrations.add("init", "CREATE TABLE account (id int);")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    mtls_front.client_names.clear()
    result = Migrator(url, migrations.path).run("deploy", "-v", TMPDIR=str(scratch))
    assert result.code == 0, result.output
    assert mtls_front.client_names == [CERT_USER]
    assert P12_PASSWORD not in result.output
    assert list(scratch.iterdir()) == []
    assert len(db.applied()) == 1


def test_a_relative_sslidentity_starts_at_the_prisma_folder(
    db: Database, mtls_front: TlsProxy, authority: Authority, tmp_path: Path
) -> None:
    """As Prisma resolves it: prisma/id.p12 for sslidentity=id.p12 and the migrations in
    prisma/migrations, whatever the working directory."""
    prisma = tmp_path / "project" / "prisma"
    folder = MigrationsFolder(prisma / "migrations")
    folder.add("init", "CREATE TABLE account (id int);")
    (prisma / "id.p12").write_bytes(authority.client_pkcs12(CERT_USER, P12_PASSWORD).read_bytes())
    (prisma / "ca.crt").write_bytes(authority.path.read_bytes())
    url = tls_url(
        db,
        mtls_front,
        sslmode="require",
        sslaccept="strict",
        sslcert="ca.crt",
        sslidentity="id.p12",
        sslpassword=P12_PASSWORD,
    )
    result = Migrator(url, folder.path).run("status")
    assert result.code == 3, result.output  # connected: one migration pending


def test_a_wrong_pkcs12_password_exits_2(
    db: Database, mtls_front: TlsProxy, authority: Authority, migrations: MigrationsFolder
) -> None:
    identity = authority.client_pkcs12(CERT_USER, P12_PASSWORD)
    wrong = "Wr0ng-p12-Pa55"
    url = tls_url(db, mtls_front, sslmode="require", sslidentity=str(identity), sslpassword=wrong)
    result, elapsed = run_status(url, migrations)
    assert_config_error(result, elapsed, "sslpassword is not its password")
    assert wrong not in result.output


def test_no_client_certificate_where_the_server_demands_one_names_sslidentity(
    db: Database, mtls_front: TlsProxy, migrations: MigrationsFolder
) -> None:
    """Before: "not reachable" after a minute of retries (exit 6)."""
    result, elapsed = run_status(tls_url(db, mtls_front, sslmode="require"), migrations)
    assert_config_error(result, elapsed, "(URL parameter sslidentity)")


def test_without_cryptography_sslidentity_is_refused_with_the_libpq_way_out(
    migrate: Migrator,
    db: Database,
    authority: Authority,
    migrations: MigrationsFolder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    identity = authority.client_pkcs12(CERT_USER, P12_PASSWORD)
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives", None)
    url = db.url(sslidentity=str(identity), sslpassword=P12_PASSWORD)
    migrations.add("init", "CREATE TABLE account (id int);")
    result = Migrator(url, migrations.path, capsys)("status")
    assert result.code == 2, result.output
    assert "needs the Python package cryptography" in result.output
    assert "sslcert=client.crt&sslkey=client.key" in result.output
    assert P12_PASSWORD not in result.output
