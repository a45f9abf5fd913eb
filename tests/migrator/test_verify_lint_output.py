"""`verify --json`, `lint --json` and `lint --sarif`: real outputs against their schemas.

The JSON documents follow docs/schemas/verify.v1 and lint.v1 (the compatibility promise of
the README); the SARIF log follows the OASIS SARIF 2.1.0 schema, kept beside this file
(``sarif-schema-2.1.0.json``, the errata01 version its ``id`` names). Mutated documents must
not validate.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator, Draft202012Validator

from fast_note_migrate.errors import ExitCode
from fast_note_migrate.state import Report
from testkit.cli import CliResult, Migrator
from testkit.database import Database
from testkit.migrations_folder import PRISMA_LAST, MigrationsFolder
from testkit.pgserver import REPO

SCHEMAS = REPO / "docs" / "schemas"
VERIFY = json.loads((SCHEMAS / "verify.v1.schema.json").read_text())
LINT = json.loads((SCHEMAS / "lint.v1.schema.json").read_text())
SARIF = json.loads((Path(__file__).parent / "sarif-schema-2.1.0.json").read_text())

INIT = 'CREATE TABLE "User" ("id" SERIAL PRIMARY KEY, "email" TEXT NOT NULL, "name" TEXT);\n'
DROP = '-- AlterTable\nALTER TABLE "User" DROP COLUMN "name";\n'
INDEX = 'CREATE INDEX "User_email_idx" ON "User" ("email");\n'
ACKNOWLEDGED = (
    "-- fast-note-migrate: allow ban-drop-column (contract step of the rename)\n"
    'ALTER TABLE "User" DROP COLUMN "email";\n'
)


def _problems(schema: dict[str, Any], document: object) -> list[str]:
    validator = Draft4Validator if schema is SARIF else Draft202012Validator
    errors = validator(schema).iter_errors(document)
    return [f"{e.json_path}: {e.message}" for e in sorted(errors, key=lambda e: e.json_path)]


def _valid(schema: dict[str, Any], result: CliResult) -> dict[str, Any]:
    """The one JSON document on stdout: valid, every top-level field documented."""
    document: dict[str, Any] = json.loads(result.out)
    assert _problems(schema, document) == [], result.output
    if schema is not SARIF:
        assert set(document) == set(schema["properties"]), "an undocumented field"
        assert document["exit_code"] == result.code, result.output
    return document


# verify --json ---------------------------------------------------------------------------


def test_verify_json_of_an_up_to_date_database(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """Exit 0, every check true, stdout holds the document only (no text report)."""
    migrations.copy_examples(upto=PRISMA_LAST)
    assert migrate("deploy").code == 0

    result = migrate("verify", "--json")

    document = _valid(VERIFY, result)
    assert (result.code, document["ok"]) == (0, True)
    assert set(document["checks"].values()) == {True}
    assert document["pending"] == document["failed"] == document["edited"] == []
    assert document["summary"]["applied"] == 6
    assert "verify: OK" not in result.output


def test_verify_json_names_the_migrations_that_fail_it(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """Pending (3), edited (5) and failed (4) migrations are listed by name; the exit code
    is the text verify's."""
    first = migrations.add("init", "CREATE TABLE a (x int);")
    assert migrate("deploy").code == 0
    later = migrations.add("later", "CREATE TABLE b (x int);")

    pending = _valid(VERIFY, migrate("verify", "--json"))
    migrations.script(first).write_text("CREATE TABLE a (x bigint);")
    edited = _valid(VERIFY, migrate("verify", "--json"))
    migrations.script(first).write_text("CREATE TABLE a (x int);")
    migrations.script(later).write_text("SELECT * FROM missing;")
    assert migrate("deploy").code == 1
    failed = _valid(VERIFY, migrate("verify", "--json"))

    assert (pending["exit_code"], pending["pending"]) == (3, [later])
    assert pending["checks"]["no_pending_migration"] is False
    assert (edited["exit_code"], edited["edited"]) == (5, [first])
    assert (failed["exit_code"], failed["failed"], failed["ok"]) == (4, [later], False)
    assert migrate("verify").code == 4


def test_verify_json_accepts_contract_migrations_and_a_database_ahead(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """After the expand phase and with a migration the folder lacks, verify passes."""
    migrations.copy_examples()
    assert migrate("deploy", "--phase", "expand").code == 0
    ahead = migrations.add("20250101000000_newer", "CREATE TABLE newer (x int);")
    assert migrate("resolve", "--applied", ahead).code == 0
    migrations.remove(ahead)

    document = _valid(VERIFY, migrate("verify", "--json"))

    assert document["ok"] is True
    assert document["contract_pending"] == ["20240415090000_drop_user_email"]
    assert document["missing_locally"] == [ahead]


def test_verify_json_masks_the_password(
    db: Database, migrations: MigrationsFolder, capsys: pytest.CaptureFixture[str]
) -> None:
    url = db.url().replace("://postgres@", "://postgres:s3cret@")
    document = _valid(VERIFY, Migrator(url, migrations.path, capsys)("verify", "--json"))
    assert document["database"].startswith("postgresql://postgres:****@")
    assert any("$.database" in p for p in _problems(VERIFY, {**document, "database": url}))


def test_verify_json_prints_nothing_on_stdout_when_the_database_is_unreachable(
    migrations: MigrationsFolder, capsys: pytest.CaptureFixture[str]
) -> None:
    result = Migrator("postgresql://app:pw@127.0.0.1:1/app", migrations.path, capsys)(
        "verify", "--json", "--connect-timeout", "200ms"
    )
    assert (result.code, result.out) == (6, "")
    assert "what to do:" in result.err


# lint --json -----------------------------------------------------------------------------


def _released(migrate: Migrator, migrations: MigrationsFolder) -> None:
    migrations.add("20240101000000_init", INIT)
    assert migrate("deploy", "--lint-policy", "off").code == 0


def test_lint_json_lists_every_finding_with_what_the_policy_makes_of_it(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """A destructive and a locking finding (guarded), an acknowledged one, a syntax error,
    and squawk's advice; warn exits 0."""
    _released(migrate, migrations)
    migrations.add("20240102000000_index", INDEX)
    migrations.add("20240103000000_drop_name", DROP)
    migrations.add("20240104000000_drop_email", ACKNOWLEDGED)
    migrations.add("20240105000000_typo", "ALTER TABLE;\n")
    migrations.add("20240106000000_bio", 'ALTER TABLE "User" ADD COLUMN "bio" varchar(255);\n')

    result = migrate("lint", "--json", "--lint-policy", "warn")

    document = _valid(LINT, result)
    assert (result.code, document["blocked"], document["scope"]) == (0, False, "pending")
    assert document["migrations"] == [
        "20240102000000_index",
        "20240103000000_drop_name",
        "20240104000000_drop_email",
        "20240105000000_typo",
        "20240106000000_bio",
    ]
    by_rule = {f["rule"]: f for f in document["findings"] if f["kind"] != "advice"}
    drop = next(f for f in document["findings"] if f["migration"] == "20240103000000_drop_name")
    assert drop == {
        **drop,
        "file": "20240103000000_drop_name/migration.sql",
        "line": 2,
        "kind": "destructive",
        "guarded": True,
        "acknowledged": None,
        "help_uri": "https://squawkhq.com/docs/ban-drop-column",
    }
    assert by_rule["require-concurrent-index-creation"]["kind"] == "locking"
    acknowledged = [f for f in document["findings"] if f["acknowledged"] is not None]
    assert [(f["rule"], f["acknowledged"]) for f in acknowledged] == [
        ("ban-drop-column", "contract step of the rename")
    ]
    assert by_rule["syntax-error"]["kind"] == "unparsed"
    summary = document["summary"]
    assert (summary["destructive"], summary["locking"], summary["guarded"]) == (2, 1, 2)
    assert (summary["unparsed"], summary["advice"]) == (1, 1)
    [advice] = [f for f in document["findings"] if f["kind"] == "advice"]
    assert (advice["rule"], advice["guarded"], advice["why"]) == ("prefer-text-field", False, None)


def test_lint_json_under_block_prints_the_document_and_exits_2(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    """The exit code stays the text lint's; the refusal is logged on stderr."""
    _released(migrate, migrations)
    migrations.add("20240103000000_drop_name", DROP)

    result = migrate("lint", "--json", "--lint-policy", "block")

    document = _valid(LINT, result)
    assert (result.code, document["blocked"], document["policy"]) == (2, True, "block")
    assert "nothing was changed" in result.err and "what to do:" in result.err


def test_lint_all_json_needs_no_database_and_marks_no_new_table(
    migrations: MigrationsFolder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--all reads files only; an index on a table an earlier migration creates is still
    guarded (each migration may have been applied long ago)."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    migrations.add("20240101000000_init", INIT)
    migrations.add("20240102000000_index", INDEX)
    from fast_note_migrate.cli import main

    code = main(["lint", "--all", "--json", "--migrations-dir", str(migrations.path)])

    result = CliResult(code, *capsys.readouterr())
    document = _valid(LINT, result)
    assert document["scope"] == "all" and len(document["migrations"]) == 2
    [index] = [f for f in document["findings"] if f["kind"] == "locking"]
    assert (index["new_table"], index["guarded"]) == (None, True)


def test_lint_json_with_nothing_pending(migrate: Migrator, migrations: MigrationsFolder) -> None:
    _released(migrate, migrations)
    document = _valid(LINT, migrate("lint", "--json"))
    assert (document["migrations"], document["findings"]) == ([], [])


# lint --sarif ----------------------------------------------------------------------------


def _lint_sarif(
    migrate: Migrator, migrations: MigrationsFolder, *args: str
) -> tuple[CliResult, dict[str, Any]]:
    """lint with --sarif into a file beside the folder: the run and its valid SARIF log."""
    _released(migrate, migrations)
    migrations.add("20240103000000_drop_name", DROP)
    migrations.add("20240104000000_drop_email", ACKNOWLEDGED)
    target = migrations.path.parent / "lint.sarif"
    result = migrate("lint", "--sarif", str(target), *args)
    log: dict[str, Any] = json.loads(target.read_text())
    assert _problems(SARIF, log) == []
    return result, log


def test_lint_sarif_is_valid_sarif_2_1_0_with_the_policy_as_levels(
    migrate: Migrator,
    migrations: MigrationsFolder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Run from the folder above the migrations (as from a repository's root): the
    unacknowledged drop is an error under block at its file and line, relative to there;
    the acknowledged one is a suppressed note; the text output stays on stdout."""
    monkeypatch.chdir(migrations.path.parent)
    result, log = _lint_sarif(migrate, migrations, "--lint-policy", "block")

    assert result.code == 2
    assert "20240103000000_drop_name/migration.sql:2: ban-drop-column" in result.out
    [run] = log["runs"]
    rules = [rule["id"] for rule in run["tool"]["driver"]["rules"]]
    assert {"ban-drop-column", "require-concurrent-index-creation"} <= set(rules)
    dangerous = [r for r in run["results"] if r["ruleId"] == "ban-drop-column"]
    assert [(r["level"], "suppressions" in r) for r in dangerous] == [
        ("error", False),
        ("note", True),
    ]
    location = dangerous[0]["locations"][0]["physicalLocation"]
    assert location == {
        "artifactLocation": {
            "uri": "migrations/20240103000000_drop_name/migration.sql",
            "uriBaseId": "%SRCROOT%",
        },
        "region": {"startLine": 2},
    }
    assert dangerous[1]["suppressions"] == [
        {"kind": "inSource", "justification": "contract step of the rename"}
    ]
    assert all(rules[r["ruleIndex"]] == r["ruleId"] for r in run["results"])
    assert run["invocations"] == [{"executionSuccessful": True, "exitCode": 2}]


def test_lint_sarif_under_warn_outside_the_working_directory(
    migrate: Migrator,
    migrations: MigrationsFolder,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Under warn the drop is a warning; a folder outside the working directory gets URIs
    relative to the migrations folder, its base named in originalUriBaseIds."""
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    (migrations.path / "lint-acknowledgments.toml").write_text(
        '["20240103000000_drop_name"]\nban-drop-column = "nobody reads name"\n'
    )
    result, log = _lint_sarif(migrate, migrations, "--lint-policy", "warn")

    assert result.code == 0
    [run] = log["runs"]
    drop = next(r for r in run["results"] if r["properties"]["migration"].endswith("drop_name"))
    assert drop["level"] == "note"
    assert drop["suppressions"] == [{"kind": "external", "justification": "nobody reads name"}]
    artifact = drop["locations"][0]["physicalLocation"]["artifactLocation"]
    assert artifact == {
        "uri": "20240103000000_drop_name/migration.sql",
        "uriBaseId": "MIGRATIONS_DIR",
    }
    assert run["originalUriBaseIds"]["MIGRATIONS_DIR"]["uri"].startswith("file:///")


def test_lint_sarif_to_stdout_prints_only_the_log(
    migrate: Migrator, migrations: MigrationsFolder
) -> None:
    _released(migrate, migrations)
    migrations.add("20240103000000_drop_name", DROP)
    result = migrate("lint", "--sarif", "-")
    log = _valid(SARIF, result)
    assert [r["level"] for r in log["runs"][0]["results"] if r["ruleId"] == "ban-drop-column"] == [
        "warning"
    ]


def test_lint_sarif_into_a_missing_folder_is_a_clear_error(
    migrate: Migrator, migrations: MigrationsFolder, tmp_path: Path
) -> None:
    migrations.add("20240101000000_init", INIT)
    result = migrate("lint", "--all", "--sarif", str(tmp_path / "no" / "lint.sarif"))
    assert result.code == 2
    assert "cannot write the SARIF log to" in result.err
    assert "what to do: give --sarif a path in an existing, writable folder" in result.err


# Strict enough: broken documents do not validate -------------------------------------------


@pytest.fixture
def real_outputs(migrate: Migrator, migrations: MigrationsFolder) -> dict[str, dict[str, Any]]:
    """verify --json (pending), lint --json (block) and the SARIF log of the same folder."""
    _released(migrate, migrations)
    migrations.add("20240103000000_drop_name", DROP)
    target = migrations.path.parent / "lint.sarif"
    verify = json.loads(migrate("verify", "--json").out)
    lint = json.loads(
        migrate("lint", "--json", "--sarif", str(target), "--lint-policy", "block").out
    )
    return {"verify": verify, "lint": lint, "sarif": json.loads(target.read_text())}


def _finding(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def mutate(document: dict[str, Any]) -> None:
        change(next(f for f in document["findings"] if f["guarded"]))

    return mutate


BREAKS: dict[str, tuple[str, Callable[[dict[str, Any]], None], str, str]] = {
    # name: (output, mutation, JSON path of the error, the keyword that fails)
    "verify ok with pending": ("verify", lambda d: d.update(ok=True), "$.exit_code", "const"),
    "verify exit code 1": ("verify", lambda d: d.update(exit_code=1), "$.exit_code", "enum"),
    "verify check as text": (
        "verify",
        lambda d: d["checks"].update(no_pending_migration="no"),
        "$.checks.no_pending_migration",
        "type",
    ),
    "verify pending renamed": (
        "verify",
        lambda d: d.update(todo=d.pop("pending")),
        "$",
        "required",
    ),
    "verify other schema": (
        "verify",
        lambda d: d.update(json_schema="https://fast-note.dev/schemas/verify/v2.json"),
        "$.json_schema",
        "const",
    ),
    "lint blocked under warn": ("lint", lambda d: d.update(policy="warn"), "$.policy", "const"),
    "lint exit code 3": ("lint", lambda d: d.update(exit_code=3), "$.exit_code", "enum"),
    "lint unknown kind": (
        "lint",
        _finding(lambda f: f.update(kind="dangerous")),
        "$.findings[0].kind",
        "enum",
    ),
    "lint line 0": ("lint", _finding(lambda f: f.update(line=0)), "$.findings[0].line", "minimum"),
    "lint guarded and acknowledged": (
        "lint",
        _finding(lambda f: f.update(acknowledged="fine")),
        "$.findings[0].acknowledged",
        "type",
    ),
    "lint camelCase field": ("lint", lambda d: d.update(exitCode=2), "$", "pattern"),
    "sarif level fatal": (
        "sarif",
        lambda d: d["runs"][0]["results"][0].update(level="fatal"),
        "$.runs[0].results[0].level",
        "enum",
    ),
    "sarif version 2.0": ("sarif", lambda d: d.update(version="2.0.0"), "$.version", "enum"),
    "sarif start line 0": (
        "sarif",
        lambda d: d["runs"][0]["results"][0]["locations"][0]["physicalLocation"].update(
            region={"startLine": 0}
        ),
        "$.runs[0].results[0].locations[0].physicalLocation.region.startLine",
        "minimum",
    ),
}


@pytest.mark.parametrize("name", list(BREAKS))
def test_a_broken_output_does_not_validate(
    name: str, real_outputs: dict[str, dict[str, Any]]
) -> None:
    output, mutate, path, keyword = BREAKS[name]
    schema = {"verify": VERIFY, "lint": LINT, "sarif": SARIF}[output]
    document = copy.deepcopy(real_outputs[output])
    assert _problems(schema, document) == []
    mutate(document)
    validator = Draft4Validator if schema is SARIF else Draft202012Validator
    errors = list(validator(schema).iter_errors(document))
    found = [(e.json_path, e.validator) for e in errors]
    found += [(c.json_path, c.validator) for e in errors for c in e.context or []]
    assert (path, keyword) in found, found


def test_the_schemas_follow_the_migrator() -> None:
    """verify's counts are status's, its exit codes those verify can end with with a
    document; lint's are 0 and 2."""
    assert VERIFY["properties"]["summary"]["required"] == list(Report([]).counts())
    assert VERIFY["properties"]["exit_code"]["enum"] == [
        int(c) for c in (ExitCode.OK, ExitCode.NOT_UP_TO_DATE, ExitCode.BLOCKED, ExitCode.DRIFT)
    ]
    assert LINT["properties"]["exit_code"]["enum"] == [int(ExitCode.OK), int(ExitCode.USAGE)]
