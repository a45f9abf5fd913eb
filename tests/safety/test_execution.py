"""Lock and statement timeouts, retries on 55P03, and CREATE INDEX CONCURRENTLY."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg

from fast_note_migrate import lock
from testkit.cli import Migrator
from testkit.database import Database, LockHolder
from testkit.migrations_folder import MigrationsFolder

INIT = 'CREATE TABLE "User" ("id" SERIAL PRIMARY KEY, "email" TEXT NOT NULL);\n'
ADD = 'ALTER TABLE "User" ADD COLUMN "bio" TEXT;\n'
FAST = ("--statement-lock-timeout", "200ms", "--lock-retry-delay", "50ms")


def _deployed(migrate: Migrator, migrations: MigrationsFolder) -> None:
    migrations.add("20240101000000_init", INIT)
    assert migrate("deploy", "--lint-policy", "off").code == 0


def test_blocked_migration_is_retried_and_applies_once_the_lock_is_released(
    migrate: Migrator,
    migrations: MigrationsFolder,
    db: Database,
    hold_lock: Callable[..., LockHolder],
) -> None:
    """A long transaction holding the table makes the ALTER time out; the retry, after
    the holder is gone, succeeds. Each retry names the blocking session."""
    _deployed(migrate, migrations)
    migrations.add("20240102000000_add_bio", ADD)
    holder = hold_lock("User")
    timer = holder.release_after(0.6)
    result = migrate("deploy", "--lint-policy", "off", *FAST, "--lock-retries", "10")
    timer.join()
    assert result.code == 0, result.err
    assert "lock not available within 200ms, blocked by pid" in result.err
    assert f"pid {holder.pid} (report-job" in result.err
    assert "retry 1/10" in result.err
    assert db.columns("User") == ["id", "email", "bio"]
    # the tries that timed out left no row behind: one finished row
    assert [
        (r.name, r.finished, r.rolled_back) for r in db.history() if r.name.endswith("add_bio")
    ] == [("20240102000000_add_bio", True, False)]


def test_migration_fails_after_its_lock_retries_are_spent(
    migrate: Migrator,
    migrations: MigrationsFolder,
    db: Database,
    hold_lock: Callable[..., LockHolder],
) -> None:
    """With the lock never released, the migration is recorded failed after N retries."""
    _deployed(migrate, migrations)
    migrations.add("20240102000000_add_bio", ADD)
    hold_lock("User")
    result = migrate("deploy", "--lint-policy", "off", *FAST, "--lock-retries", "2")
    assert result.code == 1
    assert "retry 2/2" in result.err and "2 retries spent" in result.err
    rows = [r for r in db.history() if r.name.endswith("add_bio")]
    assert len(rows) == 1 and rows[0].finished is False and "55P03" in (rows[0].logs or "")
    assert db.columns("User") == ["id", "email"]


def test_migration_lock_timeout_does_not_cut_short_the_migration_lock_wait(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """--statement-lock-timeout 100ms applies to the migration's statements only: the deploy
    still waits for another deploy's advisory lock (held for a second) and succeeds."""
    migrations.add("20240101000000_init", INIT)
    other = db.connect(application_name="other-deploy")
    other.execute("SELECT pg_advisory_lock(%s)", (lock.LOCK_KEY,))
    timer = threading.Timer(1.0, other.close)
    timer.start()
    result = migrate(
        "deploy",
        "--lint-policy",
        "off",
        "--statement-lock-timeout",
        "100ms",
        "--lock-timeout",
        "30s",
    )
    timer.join()
    assert result.code == 0, result.err
    assert "got the migration lock after" in result.err
    assert db.columns("User") == ["id", "email"]


def test_statement_timeout_stops_a_long_statement(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """--statement-timeout cancels a statement that runs too long; the failure is recorded."""
    migrations.add("20240101000000_slow", "SELECT pg_sleep(5);\n")
    result = migrate("deploy", "--lint-policy", "off", "--statement-timeout", "200ms")
    assert result.code == 1
    assert "57014" in (db.history()[0].logs or "")


def test_create_index_concurrently_migration_applies_and_is_recorded(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """A CONCURRENTLY migration runs statement by statement and gets its finished row."""
    _deployed(migrate, migrations)
    migrations.add(
        "20240102000000_index_email",
        "-- CreateIndex\n"
        'CREATE INDEX CONCURRENTLY "User_email_idx" ON "User"("email");\n'
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS "User_id_email_idx"'
        ' ON "User"("id", "email");\n',
    )
    result = migrate("deploy", "--lint-policy", "block")
    assert result.code == 0, result.err
    assert "statement by statement" in result.err
    valid = db.query(
        "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c "
        "ON c.oid = i.indexrelid WHERE c.relname LIKE 'User_%idx' ORDER BY 1"
    )
    assert valid == [("User_email_idx", True), ("User_id_email_idx", True)]
    rows = [
        (r.finished, r.steps, r.logs)
        for r in db.history()
        if r.name == "20240102000000_index_email"
    ]
    assert rows == [(True, 1, None)]
    assert migrate("verify").code == 0


def test_invalid_index_from_a_failed_try_is_dropped_before_the_next(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """A unique index that failed on duplicates leaves an INVALID index; after the data is
    fixed and the failure resolved, the next deploy drops it and builds it again."""
    _deployed(migrate, migrations)
    with db.connect() as conn:
        conn.execute("""INSERT INTO "User" ("email") VALUES ('a@x'), ('a@x'), ('b@x')""")
    name = migrations.add(
        "20240102000000_unique_email",
        'SELECT 1;\nCREATE UNIQUE INDEX CONCURRENTLY "User_email_key" ON "User"("email");\n',
    )
    failed = migrate("deploy", "--lint-policy", "off")
    assert failed.code == 1
    assert "23505" in failed.err and "line 2 of migration.sql" in failed.err
    assert (
        db.scalar(
            "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = "
            """'"User_email_key"'::regclass"""
        )
        is True
    )
    with db.connect() as conn:
        conn.execute("""DELETE FROM "User" WHERE "id" = 2""")
    assert migrate("resolve", "--rolled-back", name).code == 0
    again = migrate("deploy", "--lint-policy", "off")
    assert again.code == 0, again.err
    assert "dropping the INVALID index public.User_email_key" in again.err
    assert (
        db.scalar(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = "
            """'"User_email_key"'::regclass"""
        )
        is True
    )


def test_split_migration_statements_before_a_failure_stay_applied(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """Outside a transaction, the statements before the failing one are done; the row says
    failed with the line of the failing statement."""
    _deployed(migrate, migrations)
    migrations.add(
        "20240102000000_two_steps",
        'CREATE INDEX CONCURRENTLY "User_email_idx" ON "User"("email");\n'
        'CREATE INDEX CONCURRENTLY "x" ON "Missing"("y");\n',
    )
    result = migrate("deploy", "--lint-policy", "off")
    assert result.code == 1
    assert db.scalar("""SELECT to_regclass('"User_email_idx"') IS NOT NULL""") is True
    logs = db.history()[-1].logs or ""
    assert "42P01" in logs and "line 2 of migration.sql" in logs
    # psycopg must not have left the connection in a transaction
    with psycopg.connect(db.url(), autocommit=True) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = "
            "'idle in transaction' AND datname = current_database()"
        ).fetchone() == (0,)


def test_split_migration_respects_dollar_quotes_strings_and_comments(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """Semicolons inside a function body, a string and comments do not cut statements."""
    _deployed(migrate, migrations)
    migrations.add(
        "20240102000000_mixed",
        """\
-- a comment; with a semicolon
CREATE FUNCTION "note_count"() RETURNS int LANGUAGE plpgsql AS $body$
BEGIN
    RETURN 1; -- inside the body;
END;
$body$;
/* block comment; */ INSERT INTO "User" ("email") VALUES ('semi;colon@x');
DO $$ BEGIN PERFORM 1; END $$;
CREATE INDEX CONCURRENTLY "User_email_idx" ON "User"("email");
""",
    )
    result = migrate("deploy", "--lint-policy", "off")
    assert result.code == 0, result.err
    assert "(4 statements)" in result.err
    assert db.scalar('SELECT "note_count"()') == 1
    assert db.scalar("""SELECT "email" FROM "User" """) == "semi;colon@x"
