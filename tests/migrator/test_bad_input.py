"""Bad input: a clear message that says what to do, a documented exit code, the
database unchanged, and never the password in any output."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from testkit.cli import CliResult, run_cli
from testkit.database import Database
from testkit.migrations_folder import MigrationsFolder
from testkit.pgserver import PostgresServer, free_port

PASSWORD = "s3cr3t-Pa55word"


@pytest.fixture(scope="module")
def password_role(pg_server: PostgresServer) -> Iterator[str]:
    """A role that must log in with a password (the rest of the cluster trusts)."""
    hba = pg_server.datadir / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text("host all app_user 127.0.0.1/32 scram-sha-256\n" + original)
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE app_user LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
        conn.execute("SELECT pg_reload_conf()")
    yield "app_user"
    hba.write_text(original)
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")


def url_with_password(db: Database, password: str = PASSWORD) -> str:
    return f"postgresql://app_user:{password}@127.0.0.1:{db.port}/{db.name}?schema=public"


def deploy(url: str, folder: Path | str, *extra: str) -> CliResult:
    return run_cli("deploy", *extra, env={"DATABASE_URL": url, "MIGRATIONS_DIR": str(folder)})


def assert_clean(result: CliResult, code: int, *phrases: str) -> None:
    output = result.output
    assert result.code == code, output
    for phrase in phrases:
        assert phrase in output, f"{phrase!r} not in:\n{output}"
    assert "what to do:" in output
    assert PASSWORD not in output
    assert "Traceback" not in output


def test_missing_migrations_folder(db: Database, tmp_path: Path) -> None:
    """A folder that does not exist: exit 2, named, and how to point at the right one."""
    result = deploy(db.url(), tmp_path / "nope")
    assert_clean(result, 2, "does not exist", "MIGRATIONS_DIR")
    assert db.tables() == []


def test_migrations_folder_that_is_a_file(db: Database, tmp_path: Path) -> None:
    """A file where the folder should be."""
    (tmp_path / "migrations").write_text("")
    assert_clean(deploy(db.url(), tmp_path / "migrations"), 2, "is not a folder")


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) missing")
def test_unreadable_migrations_folder(db: Database, migrations: MigrationsFolder) -> None:
    """A folder without read permission: exit 2 with the reason (run without root's bypass)."""
    migrations.add("init", "CREATE TABLE a (id int);")
    migrations.path.chmod(0)
    try:
        drop = "-dac_override,-dac_read_search"
        result = run_cli(
            "deploy",
            wrapper=["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}"],
            env={"DATABASE_URL": db.url(), "MIGRATIONS_DIR": str(migrations.path)},
        )
    finally:
        migrations.path.chmod(0o755)
    assert_clean(result, 2, "permission denied")
    assert db.tables() == []


def test_folder_without_migration_sql(db: Database, migrations: MigrationsFolder) -> None:
    """P3015, the folder named, nothing applied."""
    migrations.add("init", "CREATE TABLE a (id int);")
    (migrations.path / "20240101000099_empty").mkdir()
    assert_clean(deploy(db.url(), migrations.path), 2, "P3015", "20240101000099_empty")
    assert db.tables() == []


def test_non_utf8_migration(db: Database, migrations: MigrationsFolder) -> None:
    """A latin-1 file is refused with its line, not run with replacement characters."""
    migrations.add("init", "CREATE TABLE a (id int);")
    migrations.add("latin1", b"-- ok\nINSERT INTO a VALUES (1); -- caf\xe9\n")
    result = deploy(db.url(), migrations.path)
    assert_clean(result, 2, "is not valid UTF-8", "line 2", "save the file as UTF-8")
    assert db.tables() == []


def test_wrong_provider_in_migration_lock(db: Database, migrations: MigrationsFolder) -> None:
    """P3019."""
    migrations.add("init", "CREATE TABLE a (id int);")
    (migrations.path / "migration_lock.toml").write_text('provider = "sqlite"\n')
    assert_clean(deploy(db.url(), migrations.path), 2, "P3019", "sqlite")
    assert db.tables() == []


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        (f"postgresql://app_user:{PASSWORD}@127.0.0.1:notaport/db", "malformed"),
        (f"mysql://app_user:{PASSWORD}@127.0.0.1:3306/db", "must start with postgresql://"),
        (f"postgresql://app_user:{PASSWORD}@/db", "names no host"),
        ("", "no database URL given"),
    ],
)
def test_malformed_urls(url: str, phrase: str, migrations: MigrationsFolder) -> None:
    """Each malformed URL: exit 2, an example of the right form, no password."""
    migrations.add("init", "SELECT 1;")
    assert_clean(deploy(url, migrations.path), 2, phrase)


def test_wrong_password(db: Database, migrations: MigrationsFolder, password_role: str) -> None:
    """Authentication fails at once (no retries), exit 2, the password never shown."""
    migrations.add("init", "CREATE TABLE a (id int);")
    result = deploy(url_with_password(db, "wrong-" + PASSWORD), migrations.path)
    assert_clean(result, 2, "password authentication failed", "check the user, password")
    assert ("wrong-" + PASSWORD) not in result.output
    assert db.tables() == []


def test_right_password_is_redacted_in_every_output(
    db: Database, migrations: MigrationsFolder, password_role: str
) -> None:
    """Logs, status text and status JSON show the URL with ****."""
    migrations.add("init", "CREATE TABLE a (id int);")
    env = {"DATABASE_URL": url_with_password(db), "MIGRATIONS_DIR": str(migrations.path)}
    for argv in (
        ["deploy", "-v"],
        ["status"],
        ["status", "--json"],
        ["verify"],
        ["deploy", "--log-format", "json"],
    ):
        result = run_cli(*argv, env=env)
        output = result.output
        assert result.code == 0, output
        assert PASSWORD not in output
    assert "app_user:****@" in run_cli("status", env=env).out


def test_unreachable_host_retries_then_exits_6(migrations: MigrationsFolder) -> None:
    """Nothing listens: progress lines while retrying, then exit 6 naming the host."""
    migrations.add("init", "SELECT 1;")
    url = f"postgresql://app_user:{PASSWORD}@127.0.0.1:{free_port()}/db"
    result = deploy(url, migrations.path, "--connect-timeout", "1500ms")
    assert_clean(result, 6, "not reachable within 1.5s", "127.0.0.1")
    assert "not reachable yet (attempt 1" in result.err


def test_schema_with_tables_but_no_history(db: Database, migrations: MigrationsFolder) -> None:
    """P3005 with the baseline recipe; the schema is left as it was."""
    migrations.add("init", "CREATE TABLE a (id int);")
    db.run("CREATE TABLE existing (id int)")
    assert_clean(deploy(db.url(), migrations.path), 2, "P3005", "existing", "resolve --applied")
    assert db.tables() == ["existing"]


@pytest.mark.parametrize("flag", ["--lock-timeout", "--connect-timeout"])
def test_invalid_duration(flag: str, db: Database, migrations: MigrationsFolder) -> None:
    """Durations must look like 500ms, 30s, 5m."""
    result = deploy(db.url(), migrations.path, flag, "five minutes")
    assert result.code == 2
    assert "write it like 500ms, 30s, 5m" in result.err


def test_invalid_duration_from_the_environment(db: Database, migrations: MigrationsFolder) -> None:
    """The environment variable is checked like the flag."""
    result = run_cli(
        "wait",
        env={
            "DATABASE_URL": db.url(),
            "MIGRATIONS_DIR": str(migrations.path),
            "MIGRATE_WAIT_TIMEOUT": "soon",
        },
    )
    assert result.code == 2 and "invalid duration 'soon'" in result.err
