"""Every rule of prisma-compat.md, against a real PostgreSQL."""

from __future__ import annotations

import hashlib

import psycopg
import pytest

from fast_note_migrate.migrations import script_matches_checksum
from testkit.cli import Migrator
from testkit.database import Database
from testkit.migrations_folder import PRISMA_LAST, MigrationsFolder

PRISMA_COLUMNS = [
    ("id", "character varying", 36, "NO"),
    ("checksum", "character varying", 64, "NO"),
    ("finished_at", "timestamp with time zone", None, "YES"),
    ("migration_name", "character varying", 255, "NO"),
    ("logs", "text", None, "YES"),
    ("rolled_back_at", "timestamp with time zone", None, "YES"),
    ("started_at", "timestamp with time zone", None, "NO"),
    ("applied_steps_count", "integer", None, "NO"),
]


def insert_row(db: Database, name: str, checksum: str, *, finished: bool = True) -> None:
    db.run(
        "INSERT INTO _prisma_migrations (id, checksum, migration_name, finished_at,"
        " applied_steps_count) VALUES (gen_random_uuid()::text, %s, %s,"
        " CASE WHEN %s THEN now() END, 1)",
        checksum,
        name,
        finished,
    )


# Table -----------------------------------------------------------------------------


def test_deploy_creates_prismas_table_with_its_exact_columns(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """The history table has Prisma's columns, types, lengths and nullability."""
    migrations.add("init", "CREATE TABLE a (id int);")
    assert migrate("deploy").code == 0
    columns = db.query(
        "SELECT column_name, data_type, character_maximum_length, is_nullable"
        " FROM information_schema.columns WHERE table_name = '_prisma_migrations'"
        " ORDER BY ordinal_position"
    )
    assert columns == PRISMA_COLUMNS
    assert (
        db.scalar(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = '_prisma_migrations'::regclass AND contype = 'p'"
        )
        == "PRIMARY KEY (id)"
    )


def test_deploy_records_each_migration_as_prisma_does(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """A uuid id, the sha256 checksum, finished_at set, one applied step, no logs."""
    name = migrations.add("init", "CREATE TABLE a (id int);")
    assert migrate("deploy").code == 0
    row = next(r for r in db.history() if r.name == name)
    assert len(row.id) == 36 and row.id.count("-") == 4
    assert row.checksum == hashlib.sha256(b"CREATE TABLE a (id int);").hexdigest()
    assert row.finished_at is not None and row.finished_at >= row.started_at
    assert (row.logs, row.steps, row.rolled_back_at) == (None, 1, None)


def test_table_lives_in_the_schema_of_the_url_and_the_schema_is_created(
    migrations: MigrationsFolder, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    """`?schema=app` puts the history and the migrations' tables into schema app; Prisma's
    pool parameters are accepted (pgbouncer=true is refused by deploy: test_pgbouncer.py)."""
    migrations.add("init", 'CREATE TABLE "User" (id int);')
    url = db.url(
        schema="app",
        connection_limit="5",
        pool_timeout="10",
        pgbouncer="false",
        socket_timeout="30",
        statement_cache_size="0",
    )
    assert Migrator(url, migrations.path, capsys)("deploy").code == 0
    assert db.tables("app") == ["User", "_prisma_migrations"]
    assert db.tables("public") == []


# Folder ----------------------------------------------------------------------------


def test_migrations_run_in_directory_name_order_and_files_are_ignored(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """Only directories count, ordered by name whatever the creation order."""
    migrations.add("20240102000000_second", "INSERT INTO log VALUES ('second');")
    migrations.add("20240101000000_first", "CREATE TABLE log (v text);")
    (migrations.path / "README.md").write_text("not a migration")
    (migrations.path / "migration_lock.toml").write_text('provider = "postgresql"\n')
    assert migrate("deploy").code == 0
    assert [r.name for r in db.history()] == ["20240101000000_first", "20240102000000_second"]
    assert db.query("SELECT v FROM log") == [("second",)]


def test_lock_file_for_another_provider_is_refused_with_p3019(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """A migration_lock.toml for mysql stops deploy before it touches the database."""
    migrations.add("init", "CREATE TABLE a (id int);")
    (migrations.path / "migration_lock.toml").write_text('provider = "mysql"\n')
    result = migrate("deploy")
    assert result.code == 2
    assert "P3019" in result.err and '"mysql"' in result.err
    assert db.tables() == []


def test_folder_without_migration_sql_fails_with_p3015_before_anything_is_applied(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """Deliberate difference: Prisma applies the earlier ones first; we check them all first."""
    migrations.add("init", "CREATE TABLE a (id int);")
    (migrations.path / "2024010100099_broken").mkdir()
    result = migrate("deploy")
    assert result.code == 2
    assert "P3015" in result.err and "2024010100099_broken has no migration.sql" in result.err
    assert db.tables() == []


# Checksums -------------------------------------------------------------------------


def test_checksum_keeps_the_bom(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """A UTF-8 BOM is part of the checksummed text, as in Prisma."""
    data = b"\xef\xbb\xbfCREATE TABLE a (id int);"
    migrations.add("bom", data)
    assert migrate("deploy").code == 0
    assert db.history()[0].checksum == hashlib.sha256(data).hexdigest()


def test_crlf_checkout_of_an_lf_migration_is_not_an_edit(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """Applied with LF, checked out on Windows with CRLF: still applied, not edited."""
    name = migrations.add("init", "CREATE TABLE a (id int);\nCREATE TABLE b (id int);\n")
    assert migrate("deploy").code == 0
    path = migrations.script(name)
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    result = migrate("status")
    assert result.code == 0, result.output
    assert "EDITED" not in result.out


def test_lf_checkout_of_a_crlf_migration_is_not_an_edit(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """Applied with CRLF, later normalised to LF: still applied."""
    name = migrations.add("init", b"CREATE TABLE a (id int);\r\nCREATE TABLE b (id int);\r\n")
    assert migrate("deploy").code == 0
    path = migrations.script(name)
    path.write_bytes(path.read_bytes().replace(b"\r\n", b"\n"))
    assert migrate("status").code == 0


def test_old_checksums_without_zero_padding_still_match(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """Early Prisma stored each byte's hex without padding; such rows are not edits."""
    # a script whose sha256 has bytes below 0x10, so the old form is shorter
    script = next(
        f"SELECT {i};"
        for i in range(1000)
        if any(b < 16 for b in hashlib.sha256(f"SELECT {i};".encode()).digest())
    )
    name = migrations.add("old", script)
    old = "".join(f"{b:x}" for b in hashlib.sha256(script.encode()).digest())
    assert len(old) < 64
    assert migrate("deploy").code == 0
    db.run("UPDATE _prisma_migrations SET checksum = %s", old)
    result = migrate("status")
    assert result.code == 0, result.output
    assert name in result.out and "EDITED" not in result.out


def test_checksum_of_invalid_utf8_uses_replacement_characters() -> None:
    """Invalid bytes become U+FFFD before hashing, as Prisma reads files lossily."""
    raw = b"-- caf\xe9\nSELECT 1;"
    lossy = raw.decode("utf-8", errors="replace")
    prisma_checksum = hashlib.sha256(lossy.encode("utf-8")).hexdigest()
    assert script_matches_checksum(lossy, prisma_checksum)
    assert not script_matches_checksum(raw.decode("latin-1"), prisma_checksum)


def test_applied_migration_with_invalid_utf8_is_recognised(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """A row Prisma wrote for a latin-1 file matches that file, so status is clean."""
    raw = b"-- caf\xe9\nSELECT 1;"
    name = migrations.add("latin1", raw)
    db.run(
        "CREATE TABLE _prisma_migrations (id varchar(36) PRIMARY KEY, checksum varchar(64)"
        " NOT NULL, finished_at timestamptz, migration_name varchar(255) NOT NULL,"
        " logs text, rolled_back_at timestamptz, started_at timestamptz NOT NULL DEFAULT"
        " now(), applied_steps_count int NOT NULL DEFAULT 0)"
    )
    insert_row(db, name, hashlib.sha256(raw.decode("utf-8", errors="replace").encode()).hexdigest())
    assert migrate("status").code == 0


def test_changing_one_character_is_an_edit(migrate: Migrator, migrations: MigrationsFolder) -> None:
    """A real edit is reported (Prisma's status never says so)."""
    name = migrations.add("init", "CREATE TABLE a (id int);")
    assert migrate("deploy").code == 0
    migrations.script(name).write_text("CREATE TABLE a (id bigint);")
    result = migrate("status")
    assert result.code == 5
    assert "EDITED" in result.out


# Lock ------------------------------------------------------------------------------


def test_deploy_waits_for_prismas_lock_key_and_names_the_holder(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """A session holding advisory lock 72707369 makes deploy wait, then exit 6 naming it."""
    migrations.add("init", "CREATE TABLE a (id int);")
    with psycopg.connect(db.url(), autocommit=True, application_name="prisma-migrate-pod-7") as c:
        c.execute("SELECT pg_advisory_lock(72707369)")
        result = migrate("deploy", "--lock-timeout", "1s")
    assert result.code == 6
    assert "prisma-migrate-pod-7" in result.err and "72707369" in result.err
    assert "pg_terminate_backend" in result.err
    assert db.tables() == []


def test_deploy_releases_the_lock_when_done(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """After deploy no advisory lock is left in pg_locks."""
    migrations.add("init", "CREATE TABLE a (id int);")
    assert migrate("deploy").code == 0
    assert db.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0


# deploy ----------------------------------------------------------------------------


def test_schema_with_tables_and_no_history_needs_a_baseline_p3005(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """Existing tables without _prisma_migrations: refuse, say how to baseline, change nothing."""
    migrations.add("init", "CREATE TABLE a (id int);")
    db.run("CREATE TABLE legacy (id int)")
    result = migrate("deploy")
    assert result.code == 2
    assert "P3005" in result.err and "legacy" in result.err and "resolve --applied" in result.err
    assert db.tables() == ["legacy"]


def test_failed_migration_blocks_every_later_deploy_p3009(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """A failed row stops deploy with exit 4, naming the migration and how to resolve it."""
    migrations.add("init", "CREATE TABLE a (id int);")
    bad = migrations.add("bad", "CREATE TABLE a (id int);")
    assert migrate("deploy").code == 1
    migrations.add("later", "CREATE TABLE c (id int);")
    result = migrate("deploy")
    assert result.code == 4
    assert "P3009" in result.err and bad in result.err and "resolve --rolled-back" in result.err
    assert "c" not in db.tables()


def test_failing_migration_is_recorded_with_its_error_and_deploy_stops_p3018(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """Earlier migrations stay applied, the failed one has logs, later ones do not run."""
    first = migrations.add("init", "CREATE TABLE a (id int);")
    bad = migrations.add("bad", "CREATE TABLE b (id int);\nSELECT * FROM missing_table;")
    migrations.add("later", "CREATE TABLE c (id int);")
    result = migrate("deploy")
    assert result.code == 1
    assert "P3018" in result.err and bad in result.err
    history = db.history()
    assert [(r.name, r.finished) for r in history] == [(first, True), (bad, False)]
    logs = history[1].logs
    assert logs is not None
    assert "42P01" in logs and "missing_table" in logs and "line 2" in logs
    assert history[1].steps == 0


def test_a_failing_file_leaves_nothing_behind(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """One file is one implicit transaction: its first statement is rolled back too."""
    migrations.add("bad", "CREATE TABLE b (id int);\nINSERT INTO b VALUES ('x');")
    assert migrate("deploy").code == 1
    assert db.tables() == ["_prisma_migrations"]


def test_a_file_with_its_own_transaction_control_runs_as_written(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """BEGIN/COMMIT inside a migration are honoured, and the bookkeeping still matches."""
    migrations.add("tx", "BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\nCREATE TABLE b (id int);")
    assert migrate("deploy").code == 0
    assert db.tables() == ["_prisma_migrations", "a", "b"]
    row = db.history()[0]
    assert (row.finished, row.rolled_back, row.logs, row.steps) == (True, False, None, 1)


def test_set_in_a_script_does_not_break_later_migrations(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """A SET stays on the session (as in Prisma) and later files still apply."""
    migrations.add("set", "SET statement_timeout = '5s';\nCREATE TABLE a (id int);")
    migrations.add("next", "CREATE TABLE b (id int);")
    assert migrate("deploy").code == 0
    assert len(db.history()) == 2


def test_second_deploy_is_a_no_op(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """Re-running deploy applies nothing and adds no rows."""
    migrations.copy_examples(upto=PRISMA_LAST)
    assert migrate("deploy").code == 0
    result = migrate("deploy")
    assert result.code == 0 and "up to date" in result.err
    assert len(db.history()) == 6


def test_dry_run_prints_the_plan_and_touches_nothing(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """--dry-run lists what would run; no table, no lock, no rows."""
    names = migrations.copy_examples(upto=PRISMA_LAST)
    result = migrate("deploy", "--dry-run")
    assert result.code == 0
    assert all(f"would apply {n}" in result.out for n in names)
    assert db.tables() == []


def test_each_migrations_duration_is_logged(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """The log says how long every migration took."""
    name = migrations.add("init", "CREATE TABLE a (id int);")
    result = migrate("deploy")
    assert f"applied {name} in " in result.err


# resolve ---------------------------------------------------------------------------


def test_resolve_applied_baselines_an_existing_database(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """On a schema with tables: record the first migration applied, then deploy the rest."""
    first = migrations.add("init", "CREATE TABLE legacy (id int);")
    migrations.add("more", "CREATE TABLE extra (id int);")
    db.run("CREATE TABLE legacy (id int)")
    assert migrate("resolve", "--applied", first).code == 0
    row = next(r for r in db.history() if r.name == first)
    assert (row.logs, row.steps, row.started_at == row.finished_at, row.checksum) == (
        "",
        0,
        True,
        hashlib.sha256(b"CREATE TABLE legacy (id int);").hexdigest(),
    )
    assert migrate("deploy").code == 0
    assert db.tables() == ["_prisma_migrations", "extra", "legacy"]


def test_resolve_applied_unknown_migration_is_p3017(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """A name with no local folder is refused."""
    migrations.add("init", "SELECT 1;")
    result = migrate("resolve", "--applied", "20990101000000_nope")
    assert result.code == 2 and "P3017" in result.err


def test_resolve_applied_twice_is_p3008(migrate: Migrator, migrations: MigrationsFolder) -> None:
    """An applied migration cannot be marked applied again."""
    name = migrations.add("init", "SELECT 1;")
    assert migrate("deploy").code == 0
    result = migrate("resolve", "--applied", name)
    assert result.code == 2 and "P3008" in result.err


def test_resolve_applied_on_a_failed_migration_rolls_back_the_failed_row(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """The failed row gets rolled_back_at and a new applied row is added; deploy proceeds."""
    bad = migrations.add("bad", "SELECT * FROM missing;")
    assert migrate("deploy").code == 1
    assert migrate("resolve", "--applied", bad).code == 0
    rows = db.history()
    assert [(r.finished, r.rolled_back) for r in rows] == [(False, True), (True, False)]
    assert migrate("deploy").code == 0


def test_resolve_rolled_back_lets_the_fixed_migration_run_again(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """After a failure: resolve --rolled-back, fix the file, deploy applies it."""
    bad = migrations.add("bad", "SELECT * FROM missing;")
    assert migrate("deploy").code == 1
    assert migrate("resolve", "--rolled-back", bad).code == 0
    migrations.script(bad).write_text("CREATE TABLE fixed (id int);")
    assert migrate("deploy").code == 0
    rows = db.history()
    assert [(r.name, r.finished, r.rolled_back) for r in rows] == [
        (bad, False, True),
        (bad, True, False),
    ]
    status = migrate("status")
    assert status.code == 0 and "rolled back before" in status.out


def test_resolve_rolled_back_needs_a_row_p3011(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """A migration never applied cannot be rolled back."""
    name = migrations.add("init", "SELECT 1;")
    result = migrate("resolve", "--rolled-back", name)
    assert result.code == 2 and "P3011" in result.err


def test_resolve_rolled_back_needs_a_failed_state_p3012(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """A successfully applied migration cannot be marked rolled back."""
    name = migrations.add("init", "SELECT 1;")
    assert migrate("deploy").code == 0
    result = migrate("resolve", "--rolled-back", name)
    assert result.code == 2 and "P3012" in result.err


def test_a_statement_by_statement_migrations_own_timeouts_stay_on_the_session_as_in_prisma(
    db: Database,
) -> None:
    """Prisma leaves a migration's session settings in place; so does a run statement by
    statement, while the timeouts the runner set itself are reset afterwards."""
    from fast_note_migrate.options import Settings
    from fast_note_migrate.runner import Runner, SplitBookkeeping

    script = (
        "SET statement_timeout = '7s';\nCREATE TABLE t (x int);\n"
        "CREATE INDEX CONCURRENTLY t_x ON t (x);\n"
    )
    with db.connect() as conn:
        Runner(conn, Settings(lock_timeout=3.0)).split("m", script, SplitBookkeeping())
        kept = conn.execute("SELECT current_setting('statement_timeout')").fetchone()
        reset = conn.execute("SELECT current_setting('lock_timeout')").fetchone()
    assert kept == ("7s",)  # the migration's own SET
    assert reset == ("0",)  # the runner's 3s, reset
