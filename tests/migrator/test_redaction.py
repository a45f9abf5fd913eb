"""Passwords are masked where they stand as secrets, and nowhere else."""

from __future__ import annotations

from urllib.parse import urlsplit

from fast_note_migrate.redaction import redact
from testkit.cli import run_cli
from testkit.database import Database
from testkit.migrations_folder import MigrationsFolder


def test_a_password_equal_to_other_text_hides_only_itself(
    db: Database, migrations: MigrationsFolder
) -> None:
    """With the password ``public`` the schema is still shown as ``public``."""
    migrations.add("20240101000000_init", "CREATE TABLE a (x int);")
    parts = urlsplit(db.url(schema="public"))
    url = parts._replace(netloc=f"postgres:public@{parts.hostname}:{parts.port}").geturl()

    result = run_cli("status", "--database-url", url, "--migrations-dir", str(migrations.path))

    assert result.code == 3, result.output
    assert "postgres:****@" in result.out and "?schema=public" in result.out
    assert "(schema public)" in result.out
    assert ":public@" not in result.output


def test_a_malformed_url_shows_no_piece_of_the_password(migrations: MigrationsFolder) -> None:
    """An unencoded / or # in the password breaks the URL apart; the message masks the
    whole userinfo instead of quoting what the parser made of it."""
    url = "postgresql://app:se/cr#et@db.example:5432/app?schema=public"

    result = run_cli("status", "--database-url", url, "--migrations-dir", str(migrations.path))

    assert result.code == 2, result.output
    assert "postgresql://****@db.example:5432/app?schema=public" in result.err
    assert "percent-encode" in result.err
    for piece in ("'se'", "se/cr", "cr#et", "#et"):
        assert piece not in result.output


def test_redact_masks_secret_parameters_in_urls_and_conninfo() -> None:
    assert redact("host=db password=s3cret user=app") == "host=db password=**** user=app"
    assert redact("dbname=x password='a b c'") == "dbname=x password=****"
    assert redact("prisma+postgres://a.example/?api_key=k3y&x=1") == (
        "prisma+postgres://a.example/?api_key=****&x=1"
    )
    assert redact("postgresql://u:p@ss@host/db") == "postgresql://u:****@host/db"
    assert redact("the schema public") == "the schema public"
