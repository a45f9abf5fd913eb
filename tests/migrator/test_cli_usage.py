"""The command line itself: no verb prints the help, argument errors end with a `what to
do:` line like every other error (JSON lines with --log-format json), and every verb's
--help reads well in 80 columns."""

from __future__ import annotations

import json
import re

import pytest
from jsonschema import Draft202012Validator

from fast_note_migrate.cli import build_parser
from testkit.cli import CliResult, run_cli
from testkit.pgserver import REPO

VERBS = ["deploy", "status", "wait", "verify", "resolve", "lint", "down"]
LOG_LINE = json.loads((REPO / "docs" / "schemas" / "log-line.v1.schema.json").read_text())
STAMP = r"\d\d:\d\d:\d\d\.\d{3} ERROR   "


def _error_lines(result: CliResult) -> list[str]:
    """The last two lines of stderr: the error and its `what to do:` line."""
    *_, message, hint = result.err.splitlines()
    assert re.match(STAMP, message) and re.match(STAMP + "what to do: ", hint), result.err
    return [message, hint]


def test_no_verb_prints_the_help_and_exits_2() -> None:
    """Every verb and the exit codes on stderr, nothing on stdout, then how to go on."""
    result = run_cli()
    assert (result.code, result.out) == (2, "")
    assert result.err.startswith("usage: fast-note-migrate [-h] [--version] VERB ...")
    assert all(f"\n    {verb}  " in result.err for verb in VERBS)
    assert "  143  terminated (SIGTERM)" in result.err
    message, hint = _error_lines(result)
    assert message.endswith("no verb given: use one of " + ", ".join(VERBS))
    assert "run `fast-note-migrate --help`" in hint


@pytest.mark.parametrize(
    ("argv", "message", "hint"),
    [
        (["migrate"], "invalid choice: 'migrate'", "`fast-note-migrate VERB --help`"),
        (["status", "--json", "now"], "unrecognized arguments: now", "status --help"),
        (["resolve"], "one of the arguments --applied --rolled-back is required", "resolve --help"),
        (["deploy", "--connect-timeout", "10d"], "invalid duration '10d'", "deploy --help"),
        (["lint", "--json", "--sarif", "-"], "--json and --sarif - both write on stdout", "lint"),
    ],
    ids=["unknown-verb", "extra-argument", "missing-option", "bad-duration", "two-on-stdout"],
)
def test_an_argument_error_ends_with_what_to_do(argv: list[str], message: str, hint: str) -> None:
    """The usage line, the message, then `what to do:` naming the help to read; exit 2."""
    result = run_cli(*argv)
    assert (result.code, result.out) == (2, "")
    assert result.err.startswith("usage: fast-note-migrate")
    error, what_to_do = _error_lines(result)
    assert message in error and hint in what_to_do
    assert "Traceback" not in result.err


def test_a_bad_environment_variable_is_named_with_how_to_fix_it() -> None:
    result = run_cli("deploy", env={"MIGRATE_LOCK_TIMEOUT": "forever"})
    assert result.code == 2
    error, what_to_do = _error_lines(result)
    assert "the environment variable MIGRATE_LOCK_TIMEOUT: invalid duration 'forever'" in error
    assert "fix or unset MIGRATE_LOCK_TIMEOUT" in what_to_do


def test_argument_errors_are_json_lines_with_log_format_json() -> None:
    """Every stderr line is a valid log line (no usage line) carrying exit code 2."""
    result = run_cli("status", "--log-format", "json", "--connect-timeout", "10d")
    assert result.code == 2
    lines = [json.loads(line) for line in result.err.splitlines()]
    assert [line["level"] for line in lines] == ["error", "error"]
    for line in lines:
        assert list(Draft202012Validator(LOG_LINE).iter_errors(line)) == []
        assert (line["verb"], line["exit_code"]) == ("status", 2)
    assert lines[1]["message"].startswith("what to do: run `fast-note-migrate status --help`")


@pytest.mark.parametrize("verb", VERBS)
def test_every_help_reads_well_in_80_columns(verb: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No line wider than the terminal, each option's environment variable and default on
    a line of its own, and no URL or file name split at a hyphen."""
    monkeypatch.setenv("COLUMNS", "80")
    text = build_parser().verbs[verb].format_help()
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "(env:" not in text
    env_lines = [line.strip() for line in text.splitlines() if "[env:" in line]
    assert env_lines and all(line.startswith("[env: ") for line in env_lines), env_lines
    assert not re.search(r"[a-z]-\n", text), text


def test_lint_policy_help_says_what_each_verb_does_with_it() -> None:
    """deploy refuses or applies; lint only decides its exit code (off still lists)."""
    parser = build_parser()

    def help_of(verb: str) -> str:
        text = " ".join(parser.verbs[verb].format_help().split())
        return text[text.index("--lint-policy block|warn|off ") :]

    assert "block refuses with exit 2 before any change" in help_of("deploy")
    assert "off does not lint" in help_of("deploy")
    assert "warn and off list the findings and exit 0" in help_of("lint")
    assert "[env: MIGRATE_LINT_POLICY; default: warn]" in help_of("lint")
