"""The lint policy: squawk's destructive and locking findings block, warn or are off."""

from __future__ import annotations

import pytest

from testkit.cli import Migrator
from testkit.database import Database
from testkit.migrations_folder import MigrationsFolder

INIT = 'CREATE TABLE "User" ("id" SERIAL PRIMARY KEY, "email" TEXT NOT NULL, "name" TEXT);\n'
DROP = '-- AlterTable\nALTER TABLE "User" DROP COLUMN "name";\n'


def _two_releases(migrate: Migrator, migrations: MigrationsFolder) -> None:
    migrations.add("20240101000000_init", INIT)
    assert migrate("deploy", "--lint-policy", "off").code == 0


def test_block_policy_refuses_a_drop_column_before_changing_anything(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """deploy --lint-policy block exits 2, names file and line, and applies nothing."""
    _two_releases(migrate, migrations)
    migrations.add("20240102000000_add_bio", 'ALTER TABLE "User" ADD COLUMN "bio" TEXT;\n')
    migrations.add("20240103000000_drop_name", DROP)
    result = migrate("deploy", "--lint-policy", "block")
    assert result.code == 2
    assert "20240103000000_drop_name/migration.sql:2: ban-drop-column" in result.err
    assert "nothing was changed" in result.err
    assert [row.name for row in db.history()] == ["20240101000000_init"]
    assert db.columns("User") == ["id", "email", "name"]


def test_warn_policy_logs_the_finding_and_applies(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """Under warn (the CLI default) the drop is logged as a warning and applied."""
    _two_releases(migrate, migrations)
    migrations.add("20240103000000_drop_name", DROP)
    result = migrate("deploy")
    assert result.code == 0
    assert "WARNING" in result.err and "ban-drop-column" in result.err
    assert db.columns("User") == ["id", "email"]


def test_env_variable_sets_the_policy(
    migrate: Migrator, migrations: MigrationsFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MIGRATE_LINT_POLICY=block blocks like the flag does."""
    _two_releases(migrate, migrations)
    migrations.add("20240103000000_drop_name", DROP)
    monkeypatch.setenv("MIGRATE_LINT_POLICY", "block")
    assert migrate("deploy").code == 2


def test_acknowledged_finding_does_not_block_and_is_logged(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """An allow comment above the statement lets it through; its reason is logged."""
    _two_releases(migrate, migrations)
    migrations.add(
        "20240103000000_drop_name",
        "-- fast-note-migrate: allow ban-drop-column (contract step of the name move)\n" + DROP,
    )
    result = migrate("deploy", "--lint-policy", "block")
    assert result.code == 0, result.err
    assert (
        "ban-drop-column acknowledged by the migration: contract step of the name move"
        in result.err
    )
    assert db.columns("User") == ["id", "email"]


def test_acknowledgment_of_another_rule_does_not_count(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """Allowing one rule does not silence a different finding on the statement."""
    _two_releases(migrate, migrations)
    migrations.add(
        "20240103000000_drop_name",
        "-- fast-note-migrate: allow renaming-column (wrong rule)\n" + DROP,
    )
    assert migrate("deploy", "--lint-policy", "block").code == 2


def test_off_policy_applies_without_linting(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """--lint-policy off neither blocks nor warns."""
    _two_releases(migrate, migrations)
    migrations.add("20240103000000_drop_name", DROP)
    result = migrate("deploy", "--lint-policy", "off")
    assert result.code == 0
    assert "ban-drop-column" not in result.err
    assert db.columns("User") == ["id", "email"]


def test_index_on_a_table_created_in_the_same_deploy_does_not_block(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """A live database gets the rest of the example set under block: the non-concurrent
    index is on a table this very deploy creates, so nothing is serving from it."""
    first = migrations.copy_examples(upto="20240105093000_init")
    assert migrate("deploy", "--lint-policy", "block").code == 0
    migrations.copy_examples(since="20240105093000_init")
    result = migrate("deploy", "--lint-policy", "block")
    assert result.code == 0, result.err
    assert "created earlier in this deploy" in result.err
    assert "lint skipped" not in result.err
    assert len(db.history()) == 12 and len(first) == 1


def test_fresh_database_is_not_linted(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """A database without history gets everything under block without a lint: each table
    is new, nothing serves from it yet (a drop of a column created earlier in the run too)."""
    migrations.add("20240101000000_users", "CREATE TABLE users (id int, name text);")
    migrations.add("20240102000000_drop_name", "ALTER TABLE users DROP COLUMN name;")
    result = migrate("deploy", "--lint-policy", "block")
    assert result.code == 0, result.err
    assert "lint skipped: the schema has no migration history yet" in result.err
    assert db.columns("users") == ["id"]


def test_lint_all_flags_the_index_on_an_existing_table(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """lint --all (CI, no database) judges each migration as deployed on a live database."""
    migrations.copy_examples()
    result = migrate("lint", "--all", "--lint-policy", "block")
    assert result.code == 2
    assert (
        "20240301120000_index_notes_updated_at/migration.sql:2: require-concurrent-index-creation"
    ) in result.out
    assert "[acknowledged: contract step of the email rename" in result.out


def test_lint_verb_lints_only_the_pending_migrations(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """Without --all, lint looks at what a deploy would apply now."""
    _two_releases(migrate, migrations)
    migrations.add("20240103000000_drop_name", DROP)
    result = migrate("lint", "--lint-policy", "warn")
    assert result.code == 0
    assert "20240103000000_drop_name/migration.sql:2: ban-drop-column" in result.out
    assert "1 migration(s), 1 destructive or locking operation(s), 1 not acknowledged" in result.out


def test_lint_all_runs_without_a_database(
    migrations: MigrationsFolder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """CI lints the folder with no DATABASE_URL at all."""
    from fast_note_migrate.cli import main

    monkeypatch.delenv("DATABASE_URL", raising=False)
    migrations.add("20240101000000_init", INIT)
    migrations.add("20240103000000_drop_name", DROP)
    code = main(
        ["lint", "--all", "--lint-policy", "block", "--migrations-dir", str(migrations.path)]
    )
    assert code == 2
    assert "20240103000000_drop_name/migration.sql:2: ban-drop-column" in capsys.readouterr().out
