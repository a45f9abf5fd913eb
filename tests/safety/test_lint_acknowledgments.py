"""Acknowledging a lint finding in lint-acknowledgments.toml leaves the migration, and so
its checksum, untouched: safe for a migration already applied in another environment."""

from __future__ import annotations

import hashlib

from testkit.cli import Migrator
from testkit.database import Database
from testkit.migrations_folder import MigrationsFolder

INIT = 'CREATE TABLE "User" ("id" SERIAL PRIMARY KEY, "email" TEXT NOT NULL, "name" TEXT);\n'
DROP = 'ALTER TABLE "User" DROP COLUMN "name";\n'
NAME = "20240103000000_drop_name"


def _with_drop(migrate: Migrator, migrations: MigrationsFolder) -> None:
    migrations.add("20240101000000_init", INIT)
    assert migrate("deploy", "--lint-policy", "off").code == 0
    migrations.add(NAME, DROP)


def _acknowledge(migrations: MigrationsFolder, text: str) -> None:
    (migrations.path / "lint-acknowledgments.toml").write_text(text)


def test_a_finding_acknowledged_beside_the_migrations_does_not_block(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """Under block, the acknowledged drop is applied, its reason logged, and the row's
    checksum is that of the unedited file."""
    _with_drop(migrate, migrations)
    _acknowledge(migrations, f'["{NAME}"]\nban-drop-column = "contract step of the name move"\n')

    result = migrate("deploy", "--lint-policy", "block")

    assert result.code == 0, result.output
    assert "contract step of the name move" in result.err
    assert db.columns("User") == ["id", "email"]
    checksum = [row.checksum for row in db.history() if row.name == NAME]
    assert checksum == [hashlib.sha256(DROP.encode()).hexdigest()]


def test_lint_shows_the_acknowledgment_from_the_file(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    _with_drop(migrate, migrations)
    _acknowledge(migrations, f'["{NAME}"]\nban-drop-column = "contract step"\n')

    result = migrate("lint", "--lint-policy", "block")

    assert result.code == 0, result.output
    assert "ban-drop-column" in result.out and "[acknowledged: contract step]" in result.out


def test_an_acknowledgment_of_another_rule_or_migration_does_not_count(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """The file names a migration and a rule; a typo in either leaves the finding blocking
    (and a migration name the folder does not have is warned about)."""
    _with_drop(migrate, migrations)
    _acknowledge(
        migrations,
        f'["{NAME}"]\nrenaming-column = "wrong rule"\n'
        '["20240103000000_drop_nmae"]\nban-drop-column = "typo"\n',
    )

    result = migrate("deploy", "--lint-policy", "block")

    assert result.code == 2
    assert "20240103000000_drop_nmae, which is not in the migrations folder" in result.err
    assert "lint-acknowledgments.toml" in result.err  # the hint names the file
    assert db.columns("User") == ["id", "email", "name"]


def test_a_malformed_acknowledgments_file_stops_deploy_before_any_change(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    _with_drop(migrate, migrations)
    _acknowledge(migrations, f'["{NAME}"]\nban-drop-column = contract step\n')
    before = db.snapshot()

    result = migrate("deploy", "--lint-policy", "warn")

    assert result.code == 2
    assert "lint-acknowledgments.toml is not valid TOML" in result.err
    assert "what to do: write it as TOML" in result.err
    assert db.snapshot() == before
