"""What the migrator prints for machines matches the JSON Schemas in docs/schemas/.

The schemas are the contract (README, "The compatibility promise"): ``status --json`` on
stdout and every ``--log-format json`` line on stderr. The real outputs of every state a
migration can be in and of successful, failed, blocked and timed-out runs are validated;
mutated outputs (a renamed field, an unknown enum value, a wrong type) must not validate.
"""

from __future__ import annotations

import copy
import json
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from jsonschema import Draft202012Validator

from fast_note_migrate.errors import ExitCode
from fast_note_migrate.lock import LOCK_KEY
from fast_note_migrate.state import Report, State
from testkit.cli import CliResult, Migrator
from testkit.database import Database
from testkit.gate import GATED_MIGRATION, Gate
from testkit.migrations_folder import PRISMA_LAST, MigrationsFolder
from testkit.pgserver import REPO, PostgresServer, free_port
from testkit.waiting import wait_until

SCHEMAS = REPO / "docs" / "schemas"
SCHEMA_FILES = sorted(SCHEMAS.glob("*.schema.json"))
STATUS = json.loads((SCHEMAS / "status.v1.schema.json").read_text())
LOG_LINE = json.loads((SCHEMAS / "log-line.v1.schema.json").read_text())
ID = re.compile(r"^https://fast-note\.dev/schemas/(?P<name>[a-z-]+)/v(?P<major>\d+)\.json$")

POD = "notes-migrate-7f9c4"


def _problems(schema: dict[str, Any], document: object) -> list[str]:
    errors = Draft202012Validator(schema).iter_errors(document)
    return [f"{e.json_path}: {e.message}" for e in sorted(errors, key=lambda e: e.json_path)]


def _assert_valid(schema: dict[str, Any], document: object) -> None:
    problems = _problems(schema, document)
    assert problems == [], f"{schema['$id']}:\n" + "\n".join(problems)


def _undocumented(schema: dict[str, Any], document: dict[str, Any]) -> set[str]:
    """Fields of ``document`` the schema does not declare (allowed, but not today)."""
    return set(document) - set(schema["properties"])


def status_document(migrate: Migrator) -> dict[str, Any]:
    """``status --json`` in this process: the document, valid, every field documented,
    its exit_code the process's."""
    result = migrate("status", "--json")
    document: dict[str, Any] = json.loads(result.out)
    _assert_valid(STATUS, document)
    assert document["exit_code"] == result.code, result.output
    item_schema = STATUS["$defs"]["migration"]
    assert _undocumented(STATUS, document) == set()
    assert _undocumented(STATUS["properties"]["summary"], document["summary"]) == set()
    assert all(_undocumented(item_schema, item) == set() for item in document["migrations"])
    return document


def log_lines(result: CliResult) -> list[dict[str, Any]]:
    """Every stderr line of a run: one JSON object each, valid, every field documented."""
    lines = result.err.splitlines()
    assert lines, result.output
    documents = []
    for line in lines:
        try:
            document = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}")
        _assert_valid(LOG_LINE, document)
        assert _undocumented(LOG_LINE, document) == set(), line
        documents.append(document)
    return documents


def _states(*documents: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["state"] for d in documents for m in d["migrations"]}


# The schemas themselves ---------------------------------------------------------------


def _property_nodes(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema that describes a field of the documents (``properties`` of the schema,
    its ``$defs`` and ``items``), not the conditions of ``if``/``then``/``not``."""
    if not isinstance(node, dict):
        return
    for name, child in (node.get("properties") or {}).items():
        yield f"{path}.{name}", child
        yield from _property_nodes(child, f"{path}.{name}")
    for name, child in (node.get("$defs") or {}).items():
        yield f"$defs.{name}", child
        yield from _property_nodes(child, f"$defs.{name}")
    if isinstance(node.get("items"), dict):
        yield from _property_nodes(node["items"], f"{path}[]")


def test_there_is_a_schema_for_each_output() -> None:
    """status, verify and lint --json, and the JSON log lines (test_verify_lint_output.py
    validates the verify and lint documents)."""
    assert [p.name for p in SCHEMA_FILES] == [
        "lint.v1.schema.json",
        "log-line.v1.schema.json",
        "status.v1.schema.json",
        "verify.v1.schema.json",
    ]


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=[p.name for p in SCHEMA_FILES])
class TestTheSchemas:
    def test_should_be_valid_draft_2020_12(self, path: Path) -> None:
        schema = json.loads(path.read_text())
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(schema)

    def test_should_carry_a_versioned_id_matching_the_file_name(self, path: Path) -> None:
        schema = json.loads(path.read_text())
        match = ID.match(schema["$id"])
        assert match, schema["$id"]
        assert path.name == f"{match['name']}.v{match['major']}.schema.json"
        version = re.fullmatch(r"version (\d+)\.(\d+)\.(\d+)", schema["$comment"])
        assert version and version[1] == match["major"], schema["$comment"]

    def test_should_describe_every_property(self, path: Path) -> None:
        schema = json.loads(path.read_text())
        assert schema.get("title") and schema.get("description")
        undescribed = [p for p, node in _property_nodes(schema) if not node.get("description")]
        assert undescribed == []

    def test_should_decide_additional_properties_on_every_object(self, path: Path) -> None:
        """Open where a minor release may add fields (the consumer ignores them), each
        object with its required fields listed; field names snake_case."""
        schema = json.loads(path.read_text())
        objects = [("", schema)] + [
            (p, n) for p, n in _property_nodes(schema) if n.get("type") == "object"
        ]
        for where, node in objects:
            assert "additionalProperties" in node, f"{where or '(root)'}"
            assert node.get("required"), f"{where or '(root)'} lists no required field"
            closed = node["additionalProperties"]
            if closed is True:
                assert node["propertyNames"]["pattern"] == "^[a-z][a-z0-9_]*$", where

    def test_should_have_a_unique_id(self, path: Path) -> None:
        ids = [json.loads(p.read_text())["$id"] for p in SCHEMA_FILES]
        assert ids.count(json.loads(path.read_text())["$id"]) == 1


def test_the_states_are_the_migrators() -> None:
    states = STATUS["$defs"]["state"]["enum"]
    assert sorted(states) == sorted(s.value for s in State)


def test_the_summary_counts_are_the_migrators() -> None:
    summary = STATUS["properties"]["summary"]
    assert summary["required"] == list(Report([]).counts())
    assert set(summary["properties"]) == set(Report([]).counts())


def test_the_exit_codes_are_the_migrators() -> None:
    """A log line's exit_code is any code but 0; status prints its document for 0, 3, 4, 5."""
    assert LOG_LINE["properties"]["exit_code"]["enum"] == [int(c) for c in ExitCode if c]
    assert STATUS["properties"]["exit_code"]["enum"] == [
        int(c) for c in (ExitCode.OK, ExitCode.NOT_UP_TO_DATE, ExitCode.BLOCKED, ExitCode.DRIFT)
    ]


# status --json in every state ---------------------------------------------------------

Scenario = Callable[[Database, MigrationsFolder, Migrator], list[dict[str, Any]]]


def _nothing_yet(db: Database, migrations: MigrationsFolder, migrate: Migrator) -> list[dict]:
    """No history table, an empty folder, then the examples: up to date, then pending."""
    empty = status_document(migrate)
    assert (empty["up_to_date"], empty["exit_code"], empty["migrations"]) == (True, 0, [])
    names = migrations.copy_examples(upto=PRISMA_LAST)
    pending = status_document(migrate)
    assert pending["exit_code"] == 3 and pending["summary"]["pending"] == len(names)
    assert all(m["started_at"] is None and m["checksum"] for m in pending["migrations"])
    return [empty, pending]


def _expand_done(db: Database, migrations: MigrationsFolder, migrate: Migrator) -> list[dict]:
    """Every example applied up to the contract step: applied, and a pending contract."""
    migrations.copy_examples()
    assert migrate("deploy", "--phase", "expand").code == 0
    document = status_document(migrate)
    *applied, contract = document["migrations"]
    assert {m["state"] for m in applied} == {"applied"}
    assert (contract["state"], contract["phase"]) == ("pending", "contract")
    assert migrate("deploy").code == 0
    done = status_document(migrate)
    assert (done["up_to_date"], done["exit_code"]) == (True, 0)
    return [document, done]


def _failed(db: Database, migrations: MigrationsFolder, migrate: Migrator) -> list[dict]:
    """A failed migration, with the database error in its logs."""
    bad = migrations.add("bad", "SELECT * FROM missing_table;")
    assert migrate("deploy").code == 1
    document = status_document(migrate)
    [item] = document["migrations"]
    assert (item["name"], document["exit_code"]) == (bad, 4)
    assert "42P01" in item["logs"] and "missing_table" in item["logs"]
    return [document]


def _drifted(db: Database, migrations: MigrationsFolder, migrate: Migrator) -> list[dict]:
    """Edited, missing locally, rolled back (by ``down``, and after a failure), applied by
    ``resolve`` after a failure, and pending again after ``down``: all in one document."""
    first = migrations.add("a", "CREATE TABLE a (x int);")
    edited = migrations.add("b", "CREATE TABLE b (x int);")
    missing = migrations.add("c", "CREATE TABLE c (x int);")
    undone = migrations.add("d", "CREATE TABLE d (x int);", down="DROP TABLE d;")
    assert migrate("deploy").code == 0
    assert migrate("down", "--to", missing).code == 0
    migrations.remove(undone)
    gone = migrations.add("e", "SELECT * FROM missing;")
    assert migrate("deploy").code == 1
    assert migrate("resolve", "--rolled-back", gone).code == 0
    migrations.remove(gone)
    finished_by_hand = migrations.add("f", "SELECT * FROM missing;")
    assert migrate("deploy").code == 1
    assert migrate("resolve", "--applied", finished_by_hand).code == 0
    undone_again = migrations.add("g", "CREATE TABLE g (x int);", down="DROP TABLE g;")
    assert migrate("deploy").code == 0
    assert migrate("down", "--to", finished_by_hand).code == 0
    migrations.script(edited).write_text("CREATE TABLE b (x bigint);")
    migrations.remove(missing)

    document = status_document(migrate)

    by_name = {m["name"]: m for m in document["migrations"]}
    assert _states(document) == {
        first: "applied",
        edited: "edited",
        missing: "missing_locally",
        undone: "rolled_back",
        gone: "rolled_back",
        finished_by_hand: "applied",
        undone_again: "pending",
    }
    assert document["exit_code"] == 5
    assert by_name[finished_by_hand]["rolled_back_before"] is True
    assert by_name[undone_again]["rolled_back_before"] is True
    assert by_name[undone]["finished_at"] is not None  # undone by down.sql: it had finished
    assert by_name[gone]["finished_at"] is None  # rolled back after a failure: never finished
    return [document]


def _running_then_interrupted(
    db: Database, migrations: MigrationsFolder, migrate: Migrator
) -> list[dict]:
    """A statement-by-statement migration held at its 4th statement is running; stopped
    by SIGTERM it is interrupted, with its progress in the logs. The deployer's own JSON
    lines, the stop included, are valid too."""
    name = migrations.add("20240101000000_split", GATED_MIGRATION)
    with Gate(db) as gate:
        deployer = migrate.spawn(
            "deploy", "--statement-lock-timeout", "0", "--log-format", "json", HOSTNAME=POD
        )
        try:
            wait_until(gate.reached, 20, "the migration to wait at its 4th statement")
            running = status_document(migrate)
            deployer.send_signal(signal.SIGTERM)
            _, err = deployer.communicate(timeout=20)
            wait_until(lambda: db.migrator_sessions() == 0, 15, "the deployer's session to end")
        finally:
            deployer.kill()
    db.settle()
    lines = log_lines(CliResult(deployer.returncode, "", err))
    assert deployer.returncode == 143, err
    assert [line["exit_code"] for line in lines if line["level"] == "error"] == [143, 143]

    interrupted = status_document(migrate)

    assert _states(running) == {name: "running"}
    assert _states(interrupted) == {name: "interrupted"}
    assert running["exit_code"] == interrupted["exit_code"] == 3
    assert "3 of 5 statements done" in interrupted["migrations"][0]["logs"]
    assert interrupted["summary"]["interrupted"] == running["summary"]["running"] == 1
    return [running, interrupted]


SCENARIOS: dict[str, tuple[Scenario, set[str]]] = {
    "nothing-yet": (_nothing_yet, {"pending"}),
    "expand-done": (_expand_done, {"applied", "pending"}),
    "failed": (_failed, {"failed"}),
    "drifted": (_drifted, {"applied", "edited", "missing_locally", "rolled_back", "pending"}),
    "running-then-interrupted": (_running_then_interrupted, {"running", "interrupted"}),
}


def test_the_scenarios_cover_every_state() -> None:
    covered = set().union(*(states for _, states in SCENARIOS.values()))
    assert covered == set(STATUS["$defs"]["state"]["enum"]) == {s.value for s in State}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_status_json_is_valid_in_every_state(
    scenario: str, db: Database, migrations: MigrationsFolder, migrate: Migrator
) -> None:
    build, states = SCENARIOS[scenario]
    documents = build(db, migrations, migrate)
    seen = {m["state"] for d in documents for m in d["migrations"]}
    assert states <= seen


def test_status_json_masks_the_password(
    db: Database, migrations: MigrationsFolder, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server trusts every local connection: the password is only there to be masked."""
    url = db.url().replace("://postgres@", "://postgres:s3cret@")
    migrations.add("init", "CREATE TABLE a (x int);")
    document = status_document(Migrator(url, migrations.path, capsys))
    assert document["database"].startswith("postgresql://postgres:****@")
    leaked = {**document, "database": url}
    assert any("$.database" in p for p in _problems(STATUS, leaked))


# --log-format json: every line of whole runs -------------------------------------------


def test_every_line_of_successful_runs_is_valid(
    db: Database, migrations: MigrationsFolder, migrate: Migrator
) -> None:
    """deploy (with lint warnings, -v), down and resolve."""
    first = migrations.add("a", "CREATE TABLE a (x int);")
    initial = migrate.run("deploy", "--log-format", "json", HOSTNAME=POD)
    second = migrations.add(
        "b",
        "CREATE INDEX a_x ON a (x);\nALTER TABLE a ADD COLUMN y int;",  # lint: a warning
        down="DROP INDEX a_x;\nALTER TABLE a DROP COLUMN y;",
    )

    deploy = migrate.run("deploy", "--log-format", "json", "-v", HOSTNAME=POD)
    down = migrate.run("down", "--to", first, "--log-format", "json", HOSTNAME=POD)
    resolve = migrate.run("resolve", "--applied", second, "--log-format", "json")

    assert (initial.code, deploy.code, down.code, resolve.code) == (0, 0, 0, 0), (
        initial.output + deploy.output + down.output + resolve.output
    )
    assert log_lines(initial)
    lines = log_lines(deploy)
    assert {line["level"] for line in lines} == {"debug", "info", "warning"}
    assert all((line["verb"], line["pod"]) == ("deploy", POD) for line in lines)
    [applied] = [line for line in lines if "duration_s" in line and "migration" in line]
    assert applied["migration"] == second and applied["duration_s"] >= 0
    assert [line for line in lines if "duration_s" in line and "migration" not in line]
    assert {line["verb"] for line in log_lines(down)} == {"down"}
    assert {line["verb"] for line in log_lines(resolve)} == {"resolve"}


def _failed_deploy(db: Database, migrations: MigrationsFolder, migrate: Migrator) -> CliResult:
    migrations.add("init", "CREATE TABLE a (x int);")
    migrations.add("bad", "CREATE TABLE b (x no_such_type);")
    return migrate.run("deploy", "--log-format", "json", "-v", HOSTNAME=POD)


def _blocked_deploy(db: Database, migrations: MigrationsFolder, migrate: Migrator) -> CliResult:
    migrations.add("bad", "SELECT * FROM missing;")
    assert migrate("deploy").code == 1
    return migrate.run("deploy", "--log-format", "json", HOSTNAME=POD)


def _timed_out_wait(db: Database, migrations: MigrationsFolder, migrate: Migrator) -> CliResult:
    migrations.copy_examples(upto=PRISMA_LAST)
    return migrate.run(
        "wait", "--timeout", "500ms", "--interval", "100ms", "--log-format", "json", "-v"
    )


def _lock_timeout(db: Database, migrations: MigrationsFolder, migrate: Migrator) -> CliResult:
    migrations.add("init", "CREATE TABLE a (x int);")
    with db.connect(application_name="other-deploy") as holder:
        holder.execute(f"SELECT pg_advisory_lock({LOCK_KEY})")
        return migrate.run("deploy", "--lock-timeout", "1s", "--log-format", "json")


def _unreachable(db: Database, migrations: MigrationsFolder, migrate: Migrator) -> CliResult:
    url = f"postgresql://app:s3cret@127.0.0.1:{free_port()}/app"
    return Migrator(url, migrations.path).run(
        "status", "--json", "--connect-timeout", "1s", "--log-format", "json"
    )


def _bad_url(db: Database, migrations: MigrationsFolder, migrate: Migrator) -> CliResult:
    return Migrator("mysql://app:s3cret@db/app", migrations.path).run(
        "verify", "--log-format", "json"
    )


ENDINGS: dict[str, tuple[Callable[..., CliResult], int, set[str]]] = {
    # name: (run, exit code, fields the error lines carry besides exit_code)
    "failed-deploy": (_failed_deploy, 1, {"migration", "sqlstate", "prisma_code"}),
    "blocked-deploy": (_blocked_deploy, 4, {"prisma_code"}),
    "timed-out-wait": (_timed_out_wait, 3, set()),
    "lock-timeout": (_lock_timeout, 6, set()),
    "unreachable-database": (_unreachable, 6, set()),
    "bad-url": (_bad_url, 2, set()),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_every_line_of_a_failing_run_is_valid(
    ending: str, db: Database, migrations: MigrationsFolder, migrate: Migrator
) -> None:
    run, code, fields = ENDINGS[ending]

    result = run(db, migrations, migrate)

    assert result.code == code, result.output
    assert result.out == ""
    lines = log_lines(result)
    errors = [line for line in lines if line["level"] == "error"]
    assert len(errors) == 2 and errors[1]["message"].startswith("what to do: ")
    assert all(line["exit_code"] == code and fields <= set(line) for line in errors)
    assert "s3cret" not in result.err


def test_a_failed_deploy_with_v_carries_the_traceback(
    db: Database, migrations: MigrationsFolder, migrate: Migrator
) -> None:
    lines = log_lines(_failed_deploy(db, migrations, migrate))
    [traced] = [line for line in lines if "traceback" in line]
    assert traced["level"] == "debug" and "UndefinedObject" in traced["traceback"]
    failed = [line for line in lines if "sqlstate" in line]
    assert [(line["migration"], line["sqlstate"], line["prisma_code"]) for line in failed] == [
        ("20240101000002_bad", "42704", "P3018")
    ] * 2


def test_a_timed_out_wait_logs_its_progress(
    db: Database, migrations: MigrationsFolder, migrate: Migrator
) -> None:
    lines = log_lines(_timed_out_wait(db, migrations, migrate))
    assert any(line["message"].startswith("waiting for ") for line in lines)
    assert {line["verb"] for line in lines} == {"wait"}


# Strict enough: a renamed field or an unknown value does not validate -------------------


@pytest.fixture(scope="module")
def real_status(pg_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real status document with applied, failed and pending migrations."""
    db = Database.on(pg_server)
    migrations = MigrationsFolder(tmp_path_factory.mktemp("strict") / "migrations")
    migrate = Migrator(db.url(), migrations.path)
    migrations.add("init", "CREATE TABLE a (x int);")
    assert migrate.run("deploy").code == 0
    migrations.add("bad", "SELECT * FROM missing;")
    assert migrate.run("deploy").code == 1
    migrations.add("later", "CREATE TABLE c (x int);")
    result = migrate.run("status", "--json")
    document: dict[str, Any] = json.loads(result.out)
    assert [m["state"] for m in document["migrations"]] == ["applied", "failed", "pending"]
    _assert_valid(STATUS, document)
    return document


@pytest.fixture(scope="module")
def real_lines(pg_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> list:
    """The real JSON lines of a failed deploy: info lines, then the two error lines."""
    db = Database.on(pg_server)
    migrations = MigrationsFolder(tmp_path_factory.mktemp("strict-logs") / "migrations")
    migrations.add("bad", "CREATE TABLE b (x no_such_type);")
    return log_lines(Migrator(db.url(), migrations.path).run("deploy", "--log-format", "json"))


def _renamed(document: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    return {(new if k == old else k): v for k, v in document.items()}


def _in_item(index: int, change: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable:
    def mutate(document: dict[str, Any]) -> dict[str, Any]:
        document["migrations"][index] = change(document["migrations"][index])
        return document

    return mutate


STATUS_BREAKS: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], str, str]] = {
    # name: (mutation, JSON path of the error, the keyword that fails)
    "state renamed status": (
        _in_item(0, lambda m: _renamed(m, "state", "status")),
        "$.migrations[0]",
        "required",
    ),
    "unknown state": (
        _in_item(0, lambda m: {**m, "state": "done"}),
        "$.migrations[0].state",
        "enum",
    ),
    "state in capitals": (
        _in_item(2, lambda m: {**m, "state": "PENDING"}),
        "$.migrations[2].state",
        "enum",
    ),
    "migrations renamed": (lambda d: _renamed(d, "migrations", "items"), "$", "required"),
    "summary renamed": (lambda d: _renamed(d, "summary", "counts"), "$", "required"),
    "count missing": (
        lambda d: {**d, "summary": _renamed(d["summary"], "missing_locally", "missing")},
        "$.summary",
        "required",
    ),
    "negative count": (
        lambda d: {**d, "summary": {**d["summary"], "pending": -1}},
        "$.summary.pending",
        "minimum",
    ),
    "count as text": (
        lambda d: {**d, "summary": {**d["summary"], "applied": "1"}},
        "$.summary.applied",
        "type",
    ),
    "new summary field not a count": (
        lambda d: {**d, "summary": {**d["summary"], "total": "3"}},
        "$.summary.total",
        "type",
    ),
    "exit code of an error": (lambda d: {**d, "exit_code": 1}, "$.exit_code", "enum"),
    "up to date with pending": (lambda d: {**d, "up_to_date": True}, "$.exit_code", "const"),
    "local as text": (
        _in_item(0, lambda m: {**m, "local": "yes"}),
        "$.migrations[0].local",
        "type",
    ),
    "unknown phase": (
        _in_item(0, lambda m: {**m, "phase": "both"}),
        "$.migrations[0].phase",
        "enum",
    ),
    "time not RFC 3339": (
        _in_item(0, lambda m: {**m, "started_at": "yesterday"}),
        "$.migrations[0].started_at",
        "oneOf",
    ),
    "applied never finished": (
        _in_item(0, lambda m: {**m, "finished_at": None}),
        "$.migrations[0].finished_at",
        "type",
    ),
    "failed finished": (
        _in_item(1, lambda m: {**m, "finished_at": m["started_at"]}),
        "$.migrations[1].finished_at",
        "type",
    ),
    "checksum not hex": (
        _in_item(0, lambda m: {**m, "checksum": "sha256:abc"}),
        "$.migrations[0].checksum",
        "pattern",
    ),
    "camelCase field": (lambda d: {**d, "upToDate": False}, "$", "pattern"),
    "password shown": (
        lambda d: {**d, "database": d["database"].replace("://postgres@", "://postgres:pw@")},
        "$.database",
        "not",
    ),
}


@pytest.mark.parametrize("name", list(STATUS_BREAKS))
def test_a_broken_status_document_does_not_validate(name: str, real_status: dict) -> None:
    mutate, path, keyword = STATUS_BREAKS[name]
    broken = mutate(copy.deepcopy(real_status))
    errors = list(Draft202012Validator(STATUS).iter_errors(broken))
    assert any(e.json_path == path and e.validator == keyword for e in errors), [
        (e.json_path, e.validator, e.message) for e in errors
    ]


def _error_line(lines: list[dict[str, Any]]) -> dict[str, Any]:
    return copy.deepcopy(next(line for line in lines if "sqlstate" in line))


LOG_BREAKS: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], str, str]] = {
    "message renamed msg": (lambda line: _renamed(line, "message", "msg"), "$", "required"),
    "level renamed severity": (lambda line: _renamed(line, "level", "severity"), "$", "required"),
    "pod missing": (lambda line: {k: v for k, v in line.items() if k != "pod"}, "$", "required"),
    "level warn": (lambda line: {**line, "level": "warn"}, "$.level", "enum"),
    "level in capitals": (lambda line: {**line, "level": "ERROR"}, "$.level", "enum"),
    "time without date": (lambda line: {**line, "time": "02:31:48.128"}, "$.time", "pattern"),
    "foreign logger": (lambda line: {**line, "logger": "root"}, "$.logger", "pattern"),
    "duration as text": (lambda line: {**line, "duration_s": "0.1"}, "$.duration_s", "type"),
    "negative duration": (lambda line: {**line, "duration_s": -0.1}, "$.duration_s", "minimum"),
    "exit code as text": (lambda line: {**line, "exit_code": "1"}, "$.exit_code", "type"),
    "unknown exit code": (lambda line: {**line, "exit_code": 7}, "$.exit_code", "enum"),
    "exit code on an info line": (lambda line: {**line, "level": "info"}, "$.level", "enum"),
    "sqlstate lower case": (lambda line: {**line, "sqlstate": "42p01"}, "$.sqlstate", "pattern"),
    "prisma code without P": (
        lambda line: {**line, "prisma_code": "3018"},
        "$.prisma_code",
        "pattern",
    ),
    "empty migration": (lambda line: {**line, "migration": ""}, "$.migration", "minLength"),
    "camelCase field": (lambda line: {**line, "exitCode": 1}, "$", "pattern"),
}


@pytest.mark.parametrize("name", list(LOG_BREAKS))
def test_a_broken_log_line_does_not_validate(name: str, real_lines: list) -> None:
    mutate, path, keyword = LOG_BREAKS[name]
    broken = mutate(_error_line(real_lines))
    errors = list(Draft202012Validator(LOG_LINE).iter_errors(broken))
    assert any(e.json_path == path and e.validator == keyword for e in errors), [
        (e.json_path, e.validator, e.message) for e in errors
    ]


def test_new_optional_fields_still_validate(real_status: dict, real_lines: list) -> None:
    """What a minor release may add: a snake_case field anywhere, a new count."""
    status = copy.deepcopy(real_status)
    status["generated_at"] = "2024-01-01T00:00:00+00:00"
    status["summary"]["contract_pending"] = 0
    status["migrations"][0]["applied_steps_count"] = 1
    line = {**_error_line(real_lines), "request_id": "abc", "blocking_pids": [42]}
    _assert_valid(STATUS, status)
    _assert_valid(LOG_LINE, line)
    renamed = _in_item(0, lambda m: _renamed(m, "state", "status"))(status)
    with pytest.raises(jsonschema.ValidationError, match="'state' is a required property"):
        jsonschema.validate(renamed, STATUS)
