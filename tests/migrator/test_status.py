"""status, wait and verify: each state reported separately, with its exit code."""

from __future__ import annotations

import json
import time

from testkit.cli import Migrator
from testkit.database import Database
from testkit.migrations_folder import PRISMA_LAST, MigrationsFolder


def test_status_lists_pending_migrations_and_exits_3(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """On an empty database every local migration is pending."""
    names = migrations.copy_examples(upto=PRISMA_LAST)
    result = migrate("status")
    assert result.code == 3
    assert all(f"PENDING                    {n}" in result.out for n in names)
    assert "6 pending" in result.out


def test_status_json_is_one_document_with_every_state(
    migrate: Migrator, migrations: MigrationsFolder, db: Database
) -> None:
    """--json prints one parseable document on stdout; logs stay on stderr."""
    migrations.copy_examples(upto=PRISMA_LAST)
    assert migrate("deploy").code == 0
    migrations.add("20990101000000_new", "CREATE TABLE n (id int);")
    result = migrate("status", "--json")
    document = json.loads(result.out)
    assert result.code == 3 and document["exit_code"] == 3
    assert document["up_to_date"] is False
    assert document["summary"]["applied"] == 6 and document["summary"]["pending"] == 1
    assert document["migrations"][-1] == {
        **document["migrations"][-1],
        "name": "20990101000000_new",
        "state": "pending",
    }
    assert document["database"].startswith("postgresql://")


def test_status_reports_a_failed_migration_with_its_logs_and_exits_4(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """The failed state comes first, with the database error."""
    bad = migrations.add("bad", "SELECT * FROM missing_table;")
    migrate("deploy")
    result = migrate("status")
    assert result.code == 4
    assert f"FAILED                     {bad}" in result.out
    assert "missing_table" in result.out


def test_status_reports_missing_locally_as_drift(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """A migration applied but absent from the folder: exit 5, named."""
    name = migrations.add("gone", "CREATE TABLE g (id int);")
    assert migrate("deploy").code == 0
    migrations.remove(name)
    result = migrate("status")
    assert result.code == 5
    assert f"MISSING locally   {name}" in result.out


def test_wait_returns_once_another_process_has_deployed(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """A replica waiting for the schema starts when the migrating Job is done."""
    migrations.copy_examples(upto=PRISMA_LAST)
    waiter = migrate.spawn("wait", "--timeout", "60s", "--interval", "200ms")
    time.sleep(0.5)
    assert waiter.poll() is None, "wait must not return while migrations are pending"
    assert migrate("deploy").code == 0
    _, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, err
    assert "up to date" in err


def test_wait_times_out_with_exit_3(migrate: Migrator, migrations: MigrationsFolder) -> None:
    """Nobody migrates: wait gives up after --timeout, naming what is pending."""
    first = migrations.copy_examples(upto=PRISMA_LAST)[0]
    result = migrate("wait", "--timeout", "300ms", "--interval", "100ms")
    assert result.code == 3
    assert "still pending" in result.err and first in result.err


def test_wait_stops_at_once_when_a_failed_migration_blocks(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """No point waiting for a history that cannot move: exit 4 without using the timeout."""
    bad = migrations.add("bad", "SELECT * FROM missing;")
    migrate("deploy")
    result = migrate("wait", "--timeout", "10m")
    assert result.code == 4 and bad in result.err


def test_wait_accepts_a_database_that_is_ahead(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """After a helm rollback the old image has fewer migrations: it must still start."""
    migrations.add("one", "CREATE TABLE a (id int);")
    newer = migrations.add("two", "CREATE TABLE b (id int);")
    assert migrate("deploy").code == 0
    migrations.remove(newer)
    assert migrate("wait", "--timeout", "1s").code == 0
    verify = migrate("verify")
    assert verify.code == 0 and "ahead by 1" in verify.out


def test_wait_refuses_an_edited_migration_with_exit_5(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """An image whose migration differs from what was applied never becomes ready."""
    name = migrations.add("one", "CREATE TABLE a (id int);")
    assert migrate("deploy").code == 0
    migrations.script(name).write_text("CREATE TABLE a (id bigint);")
    assert migrate("wait", "--timeout", "10m").code == 5


def test_verify_passes_on_an_up_to_date_database(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """Every check is listed as ok."""
    migrations.copy_examples(upto=PRISMA_LAST)
    assert migrate("deploy").code == 0
    result = migrate("verify")
    assert result.code == 0
    assert "[ok] no pending migration" in result.out and "verify: OK" in result.out


def test_verify_fails_on_pending_migrations_with_exit_3(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """The image has a migration the database lacks."""
    migrations.copy_examples(upto=PRISMA_LAST)
    result = migrate("verify")
    assert result.code == 3
    assert "[FAIL] no pending migration" in result.out


def test_verify_fails_on_an_edited_migration_with_exit_5(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """An applied migration edited afterwards."""
    name = migrations.add("one", "CREATE TABLE a (id int);")
    assert migrate("deploy").code == 0
    migrations.script(name).write_text("CREATE TABLE a (id text);")
    result = migrate("verify")
    assert result.code == 5 and "[FAIL] no edited migration" in result.out
