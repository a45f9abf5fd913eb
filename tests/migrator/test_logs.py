"""Log lines people and log pipelines can use: fields in JSON, a traceback with -v."""

from __future__ import annotations

import json
from typing import Any

from testkit.cli import Migrator
from testkit.migrations_folder import MigrationsFolder


def _lines(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.strip()]


def test_json_lines_carry_the_verb_the_pod_and_each_migrations_duration(
    migrations: MigrationsFolder, migrate: Migrator
) -> None:
    name = migrations.add("20240101000000_init", "CREATE TABLE a (x int);")

    result = migrate.run("deploy", "--log-format", "json", HOSTNAME="notes-migrate-x1")

    assert result.code == 0, result.output
    lines = _lines(result.err)
    assert all(line["verb"] == "deploy" and line["pod"] == "notes-migrate-x1" for line in lines)
    [applied] = [line for line in lines if line["message"].startswith(f"applied {name}")]
    assert applied["migration"] == name and applied["duration_s"] >= 0


def test_a_failed_migrations_json_error_names_it_with_sqlstate_and_exit_code(
    migrations: MigrationsFolder, migrate: Migrator
) -> None:
    name = migrations.add("20240101000000_bad", "CREATE TABLE a (x no_such_type);")

    result = migrate.run("deploy", "--log-format", "json")

    assert result.code == 1
    errors = [line for line in _lines(result.err) if line["level"] == "error"]
    assert errors and all(line["exit_code"] == 1 for line in errors)
    assert errors[0]["migration"] == name and errors[0]["sqlstate"] == "42704"
    assert errors[0]["prisma_code"] == "P3018"
    assert "traceback" not in json.dumps(errors)


def test_verbose_prints_the_traceback_in_text_and_json(
    migrations: MigrationsFolder, migrate: Migrator
) -> None:
    migrations.add("20240101000000_bad", "CREATE TABLE a (x no_such_type);")

    text = migrate.run("deploy", "-v")
    assert migrate("resolve", "--rolled-back", "20240101000000_bad").code == 0
    as_json = migrate.run("deploy", "-v", "--log-format", "json")

    assert "Traceback (most recent call last)" in text.err
    [traced] = [line for line in _lines(as_json.err) if "traceback" in line]
    assert "UndefinedObject" in traced["traceback"]


def test_the_errors_of_wait_and_of_a_blocked_deploy_name_the_migration(
    migrations: MigrationsFolder, migrate: Migrator
) -> None:
    """A log query on ``migration`` finds the timed-out wait and the P3009 refusal too."""
    bad = migrations.add("20240101000000_bad", "CREATE TABLE a (x no_such_type);")

    timed_out = migrate.run("wait", "--timeout", "200ms", "--log-format", "json")
    assert migrate("deploy").code == 1
    blocked = migrate.run("deploy", "--log-format", "json")

    for result, code in ((timed_out, 3), (blocked, 4)):
        assert result.code == code, result.output
        errors = [line for line in _lines(result.err) if line["level"] == "error"]
        assert errors and all(line["migration"] == bad for line in errors), errors
