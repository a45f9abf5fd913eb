"""down --to NAME: down.sql newest first, each in a transaction, rows marked rolled back."""

from __future__ import annotations

from testkit.cli import Migrator
from testkit.database import Database
from testkit.migrations_folder import PRISMA_LAST, MigrationsFolder


def test_down_then_deploy_again_restores_the_schema_exactly(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """Undo the whole email rename (contract, CONCURRENTLY index, trigger …), check the old
    column is back, deploy again: pg_dump --schema-only is byte for byte the same."""
    migrations.copy_examples()
    assert migrate("deploy").code == 0
    with db.connect() as conn:
        conn.execute("""INSERT INTO "User" ("emailAddress", "passwordHash") VALUES ('a@x', 'h')""")
    before = db.schema_dump()

    result = migrate("down", "--to", PRISMA_LAST)
    assert result.code == 0, result.err
    assert "rolled back 6 migration(s)" in result.err
    assert "emailAddress" not in db.columns("User")
    assert db.scalar("""SELECT "email" FROM "User" """) == "a@x"  # the data came back too
    rolled = [r.name for r in db.history() if r.rolled_back]
    assert len(rolled) == 6 and all(name > PRISMA_LAST for name in rolled)
    assert migrate("status").code == 3  # Prisma's view: they are pending again

    assert migrate("deploy").code == 0
    assert db.schema_dump() == before
    assert migrate("verify").code == 0


def test_down_refuses_when_a_migration_in_the_range_has_no_down_sql(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """Exit 2, naming the migration, and nothing is undone."""
    migrations.copy_examples()
    assert migrate("deploy").code == 0
    migrations.remove_down("20240401090100_backfill_user_email_address")
    before = db.schema_dump()
    result = migrate("down", "--to", PRISMA_LAST)
    assert result.code == 2
    assert "have no down.sql: 20240401090100_backfill_user_email_address" in result.err
    assert db.schema_dump() == before
    assert not any(r.rolled_back for r in db.history())


def test_down_dry_run_shows_the_plan_newest_first_and_changes_nothing(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    migrations.copy_examples()
    assert migrate("deploy").code == 0
    result = migrate("down", "--to", "20240401090200_index_user_email_address", "--dry-run")
    assert result.code == 0
    planned = [
        line.split()[3] for line in result.out.splitlines() if line.startswith("would roll back")
    ]
    assert planned == [
        "20240415090000_drop_user_email",
        "20240401090400_validate_user_email_address",
        "20240401090300_check_user_email_address",
    ]
    assert not any(r.rolled_back for r in db.history())


def test_failing_down_sql_leaves_its_migration_applied(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """A down.sql that fails rolls back with its transaction: the row stays applied."""
    migrations.add("20240101000000_init", 'CREATE TABLE "T" ("a" INT);\n', down='DROP TABLE "T";\n')
    migrations.add(
        "20240102000000_add_b",
        'ALTER TABLE "T" ADD COLUMN "b" INT;\n',
        down='ALTER TABLE "T" DROP COLUMN "b";\nALTER TABLE "T" DROP COLUMN "nope";\n',
    )
    assert migrate("deploy").code == 0
    result = migrate("down", "--to", "20240101000000_init")
    assert result.code == 1
    assert 'column "nope" of relation "T" does not exist' in result.err
    assert db.columns("T") == ["a", "b"]
    assert not any(r.rolled_back for r in db.history())


def test_down_to_a_migration_that_is_not_applied_is_a_usage_error(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    migrations.add("20240101000000_init", 'CREATE TABLE "T" ("a" INT);\n')
    assert migrate("deploy").code == 0
    result = migrate("down", "--to", "20990101000000_future")
    assert result.code == 2 and "is not a known migration" in result.err


def test_a_down_sql_that_leaves_its_transaction_open_leaves_the_migration_applied(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """BEGIN without COMMIT in a down.sql: what it did would roll back at disconnect, so the
    migration is not marked rolled back (exit 1, naming the BEGIN) and its column stays."""
    migrations.add("20240101000000_init", 'CREATE TABLE "T" ("a" INT);\n', down='DROP TABLE "T";\n')
    migrations.add(
        "20240102000000_add_b",
        'ALTER TABLE "T" ADD COLUMN "b" INT;\n',
        down='BEGIN;\nALTER TABLE "T" DROP COLUMN "b";\n',
    )
    assert migrate("deploy").code == 0

    result = migrate("down", "--to", "20240101000000_init")

    assert result.code == 1, result.output
    assert "leaves a transaction open: the BEGIN at line 1 has no COMMIT" in result.err
    assert db.columns("T") == ["a", "b"]
    assert not any(r.rolled_back for r in db.history())
