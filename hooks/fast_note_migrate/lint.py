"""Safety lint: squawk's findings on the migrations, mapped to a policy.

Destructive and locking operations (the rules in ``GUARDED``) block a deploy under
``--lint-policy block`` and are logged under ``warn``; squawk's other advice is logged
at debug level and never blocks. A migration acknowledges a finding with a comment on
the line(s) just before the statement::

    -- fast-note-migrate: allow ban-drop-column (contract step of the email rename)

A comment is part of the file and so of its checksum: for a migration already applied
somewhere, acknowledge it in ``lint-acknowledgments.toml`` beside the migrations instead,
keyed by migration and rule, with the reason::

    ["20240415090000_drop_user_email"]
    ban-drop-column = "contract step of the email rename"
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
from bisect import bisect_right
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .errors import ConfigError
from .migrations import Migration
from .options import Policy
from .statements import (
    IDENT,
    Statement,
    needs_split,
    split,
    unquote_identifier,
    without_data_statements,
)

log = logging.getLogger(__name__)


# squawk rule -> why it is dangerous on a live database with old pods still serving.
DESTRUCTIVE = {
    "ban-drop-column": "drops a column old pods may still read or write",
    "ban-drop-table": "drops a table old pods may still use",
    "ban-drop-database": "drops a database",
    "ban-truncate-cascade": "truncates tables through foreign keys",
    "renaming-column": "renames a column old pods still use by its old name",
    "renaming-table": "renames a table old pods still use by its old name",
    "changing-column-type": "changes a column type: rewrites the table under an ACCESS "
    "EXCLUSIVE lock and may break old pods",
    "adding-required-field": "adds a NOT NULL column without a default: old pods' inserts fail",
    "ban-drop-not-null": "drops NOT NULL: old pods may not expect NULLs",
}
LOCKING = {
    "require-concurrent-index-creation": "builds an index without CONCURRENTLY: blocks writes "
    "to the table for the whole build",
    "require-concurrent-index-deletion": "drops an index without CONCURRENTLY",
    "require-concurrent-reindex": "reindexes without CONCURRENTLY",
    "require-concurrent-partition-detach": "detaches a partition without CONCURRENTLY",
    "adding-not-nullable-field": "SET NOT NULL scans the table under an ACCESS EXCLUSIVE lock",
    "adding-field-with-default": "a volatile default rewrites the table",
    "adding-foreign-key-constraint": "validates a foreign key while locking both tables",
    "constraint-missing-not-valid": "validates a constraint while locking the table",
    "disallowed-unique-constraint": "builds a unique index while locking the table",
    "adding-serial-primary-key-field": "builds a primary key index while locking the table",
    "ban-alter-domain-with-add-constraint": "validates a domain constraint everywhere",
    "ban-concurrent-index-creation-in-transaction": "CONCURRENTLY cannot run in a transaction",
    "transaction-nesting": "nested transaction control",
    "ban-uncommitted-transaction": "leaves a transaction open",
}
GUARDED = {**DESTRUCTIVE, **LOCKING}
# The migrator sets lock_timeout and statement_timeout itself (--statement-lock-timeout).
EXCLUDED = ("require-lock-timeout", "require-statement-timeout", "require-timeout-settings")
# Rules about an existing table: harmless when the table is created earlier in the same
# deploy (nothing uses it yet).
_TABLE_RULES = frozenset(GUARDED) - {
    "ban-drop-database",
    "ban-truncate-cascade",
    "ban-concurrent-index-creation-in-transaction",
    "transaction-nesting",
    "ban-uncommitted-transaction",
}

_ACK = re.compile(
    r"^\s*--\s*fast-note-migrate:\s*allow\s+(?P<rules>[\w-]+(?:\s*,\s*[\w-]+)*)"
    r"\s*(?:\((?P<reason>.*)\))?\s*$",
    re.IGNORECASE,
)
_QUALIFIED = rf"(?:{IDENT}\s*\.\s*)?(?P<table>{IDENT})"
_TARGETS = (
    re.compile(rf"^\s*ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?{_QUALIFIED}", re.IGNORECASE),
    re.compile(
        rf"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?"
        rf"(?:IF\s+NOT\s+EXISTS\s+)?(?:{IDENT}\s+)?ON\s+(?:ONLY\s+)?{_QUALIFIED}",
        re.IGNORECASE,
    ),
)
_CREATES_TABLE = re.compile(
    rf"^\s*CREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?(?:UNLOGGED\s+|TEMP\s+|TEMPORARY\s+)?TABLE\s+"
    rf"(?:IF\s+NOT\s+EXISTS\s+)?{_QUALIFIED}",
    re.IGNORECASE,
)
ACKNOWLEDGMENTS_FILE = "lint-acknowledgments.toml"
INSTALL_HINT = (
    "install the linter: pip install 'fast-note-migrate' brings squawk-cli "
    "(or pip install squawk-cli); or turn the lint off with --lint-policy off"
)


@dataclass(frozen=True)
class Finding:
    """One squawk finding in one migration, with what the policy makes of it."""

    migration: str
    path: Path
    line: int  # 1-based
    rule: str
    message: str
    acknowledged: str | None = None  # the acknowledgment's reason ("" without one)
    new_table: str | None = None  # set when the table is created earlier in this deploy

    @property
    def kind(self) -> str:
        if self.rule in DESTRUCTIVE:
            return "destructive"
        if self.rule == "syntax-error":
            return "unparsed"  # squawk's parser gave up: the statement is not checked
        return "locking" if self.rule in LOCKING else "advice"

    @property
    def guarded(self) -> bool:
        """Subject to the policy: dangerous, not acknowledged, not on a new table."""
        return (
            self.kind in ("destructive", "locking")
            and self.acknowledged is None
            and self.new_table is None
        )

    def location(self) -> str:
        return f"{self.path}:{self.line}"

    def describe(self) -> str:
        why = GUARDED.get(self.rule, "")
        return f"{self.location()}: {self.rule}: {self.message}" + (f" ({why})" if why else "")


def squawk_binary() -> str | None:
    """squawk from this Python's scripts folder (a venv need not be on PATH), or PATH."""
    beside = Path(sys.executable).parent / "squawk"
    if beside.is_file():
        return str(beside)
    return shutil.which("squawk")


def _run_squawk(
    binary: str, paths: list[Path], in_transaction: bool, pg_version: str | None
) -> list[dict[str, object]]:
    if not paths:
        return []
    command = [
        binary,
        "--reporter",
        "json",
        "--exclude",
        ",".join(EXCLUDED),
        "--no-error-on-unmatched-pattern",
    ]
    if in_transaction:
        command.append("--assume-in-transaction")
    if pg_version:
        command.append(f"--pg-version={pg_version}")
    command += [str(p) for p in paths]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"could not run squawk ({binary}): {exc}", hint=INSTALL_HINT) from None
    try:
        found = json.loads(done.stdout or "[]")
    except json.JSONDecodeError:
        found = None
    if done.returncode not in (0, 1) or not isinstance(found, list):
        detail = (done.stderr or done.stdout).strip().splitlines()[:3]
        raise ConfigError(
            f"squawk failed (exit {done.returncode}): {' '.join(detail)}",
            hint="run the same lint with -v; check the migration's SQL",
        )
    return found


class Acknowledgments:
    """``lint-acknowledgments.toml`` of a migrations folder: migration -> rule -> reason."""

    def __init__(self, path: Path, reasons: dict[str, dict[str, str]]) -> None:
        self.path = path
        self.reasons = reasons

    @classmethod
    def load(cls, folder: Path) -> Acknowledgments:
        """The folder's file; none there is no acknowledgment. A malformed file is a
        ConfigError (exit 2) that names it."""
        path = folder / ACKNOWLEDGMENTS_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path, {})
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}", hint=_ACK_FILE_HINT) from None
        import tomllib

        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}", hint=_ACK_FILE_HINT) from None
        reasons: dict[str, dict[str, str]] = {}
        for migration, rules in document.items():
            if not isinstance(rules, dict) or not all(
                isinstance(reason, str) for reason in rules.values()
            ):
                raise ConfigError(
                    f"{path}: [{migration!r}] must map rules to reasons (text)",
                    hint=_ACK_FILE_HINT,
                )
            reasons[migration] = {rule.lower(): reason for rule, reason in rules.items()}
        return cls(path, reasons)

    def reason(self, migration: str, rule: str) -> str | None:
        rules = self.reasons.get(migration, {})
        found = rules.get(rule, rules.get("all"))
        return found.strip() if found is not None else None

    def warn_unknown(self, known: set[str]) -> None:
        """A key that names no migration of the folder is likely a typo."""
        for migration in sorted(set(self.reasons) - known):
            log.warning(
                "%s acknowledges findings of %s, which is not in the migrations folder",
                self.path,
                migration,
            )


_ACK_FILE_HINT = (
    'write it as TOML: a table per migration, a rule = "reason" line per finding, e.g. '
    '["20240415090000_drop_user_email"] then ban-drop-column = "contract step"'
)


class _Script:
    """A migration's lines and statements, to find acknowledgments and targets."""

    def __init__(self, migration: Migration) -> None:
        self.migration = migration
        self.text = migration.executable_sql()

    @cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    @property
    def large(self) -> bool:
        return len(self.text) >= LARGE_SCRIPT

    @cached_property
    def linted_text(self) -> str:
        """What squawk reads: the script, without its data statements when it is large
        (the same lines: findings, statements and acknowledgments are found by line)."""
        return without_data_statements(self.text) if self.large else self.text

    @cached_property
    def statements(self) -> list[Statement]:
        return split(self.linted_text)

    def statement_at(self, line: int) -> tuple[int, str]:
        """The first line and code of the statement that contains ``line`` (the last one
        starting at or before it; statements are in line order)."""
        index = bisect_right(self.statements, line, key=lambda statement: statement.line)
        if index == 0:
            return line, ""
        statement = self.statements[index - 1]
        return statement.line, statement.code

    def acknowledgment(self, first_line: int, rule: str) -> str | None:
        """The reason of an ``allow RULE`` comment in the comment block above the line."""
        index = first_line - 2
        while index >= 0 and self.lines[index].lstrip().startswith("--"):
            match = _ACK.match(self.lines[index])
            if match:
                rules = {r.strip().lower() for r in match.group("rules").split(",")}
                if rule in rules or "all" in rules:
                    return (match.group("reason") or "").strip()
            index -= 1
        return None

    def created_tables(self) -> set[str]:
        return {
            unquote_identifier(m.group("table"))
            for s in self.statements
            if (m := _CREATES_TABLE.match(s.code))
        }


def _target_table(code: str) -> str | None:
    for pattern in _TARGETS:
        match = pattern.match(code)
        if match:
            return unquote_identifier(match.group("table"))
    return None


def _acknowledged(
    script: _Script, first_line: int, rule: str, acknowledgments: Acknowledgments
) -> str | None:
    """The reason of an acknowledgment in the file beside the migrations, else of a
    comment above the statement (None: not acknowledged)."""
    found = acknowledgments.reason(script.migration.name, rule)
    return found if found is not None else script.acknowledgment(first_line, rule)


def _findings(
    scripts: list[_Script],
    raw: list[dict[str, object]],
    new_tables: bool,
    acknowledgments: Acknowledgments,
) -> list[Finding]:
    created_before: dict[str, str] = {}  # table -> migration that creates it
    created_by: dict[str, set[str]] = {s.migration.name: s.created_tables() for s in scripts}
    findings: list[Finding] = []
    raw_by_path: dict[Path, list[dict[str, object]]] = {}
    for item in raw:  # squawk normalizes the paths it was given (./a -> a): compare resolved
        raw_by_path.setdefault(Path(str(item.get("file"))).resolve(), []).append(item)
    known = {s.migration.script_path.resolve() for s in scripts}
    for path in set(raw_by_path) - known:
        log.warning("squawk reported on %s, which is not a linted migration: ignored", path)
    for script in scripts:  # in name order, so "created earlier" is meaningful
        for item in raw_by_path.get(script.migration.script_path.resolve(), []):
            rule = str(item.get("rule_name", ""))
            line = int(str(item.get("line", 0))) + 1  # squawk counts lines from 0
            first, code = script.statement_at(line)
            new_table = None
            table = _target_table(code) if rule in _TABLE_RULES else None
            if new_tables and table in created_before:
                new_table = table
            findings.append(
                Finding(
                    script.migration.name,
                    script.migration.script_path,
                    line,
                    rule,
                    str(item.get("message", "")),
                    _acknowledged(script, first, rule, acknowledgments),
                    new_table,
                )
            )
        for table in created_by[script.migration.name]:
            created_before.setdefault(table, script.migration.name)
    return findings


def _acknowledgments_of(migrations: list[Migration]) -> Acknowledgments:
    if not migrations:
        return Acknowledgments(Path(ACKNOWLEDGMENTS_FILE), {})
    folder = migrations[0].directory.parent
    acknowledgments = Acknowledgments.load(folder)
    if acknowledgments.reasons:
        acknowledgments.warn_unknown({p.name for p in folder.iterdir() if p.is_dir()})
    return acknowledgments


def run(
    migrations: list[Migration],
    *,
    new_tables: bool = True,
    pg_version: str | None = None,
    required: bool = False,
) -> list[Finding] | None:
    """squawk's findings on ``migrations`` (in name order), or None without squawk.

    ``new_tables``: a finding about a table created by an earlier migration of the same
    list is harmless (for a deploy's pending list; not for ``lint --all``).
    """
    binary = squawk_binary()
    if binary is None:
        if required:
            raise ConfigError(
                "the lint policy is block but squawk is not installed", hint=INSTALL_HINT
            )
        return None
    scripts = [_Script(m) for m in migrations]
    with tempfile.TemporaryDirectory(prefix="fast-note-lint-") as tmp:
        linted = {s.migration.name: _lint_file(s, Path(tmp)) for s in scripts}
        split_paths = [linted[s.migration.name] for s in scripts if needs_split(s.text)]
        wrapped = [path for path in linted.values() if path not in split_paths]
        raw = _run_squawk(binary, wrapped, True, pg_version) + _run_squawk(
            binary, split_paths, False, pg_version
        )
    originals = {
        str(linted[s.migration.name].resolve()): str(s.migration.script_path) for s in scripts
    }
    for item in raw:  # findings in a lint copy are the migration's (same line numbers)
        file = str(Path(str(item.get("file"))).resolve())
        item["file"] = originals.get(file, item.get("file"))
    return _findings(scripts, raw, new_tables, _acknowledgments_of(migrations))


# A larger script is linted without its data statements: squawk needs about 12 bytes of
# memory a byte of SQL (a 50 MB data migration would need 600 MB, above the chart's limit).
LARGE_SCRIPT = 1 << 20


def _lint_file(script: _Script, folder: Path) -> Path:
    """The file squawk reads for ``script``: the migration itself, or for a large one a copy
    without its data statements (INSERT, UPDATE …: no guarded rule is about them)."""
    if not script.large:
        return script.migration.script_path
    copy = folder / f"{script.migration.name}.sql"
    copy.write_text(script.linted_text, encoding="utf-8")
    log.info(
        "lint: %s is large (%d MB): its data statements are not linted",
        script.migration.name,
        len(script.text) >> 20,
    )
    return copy


def report(findings: list[Finding], policy: Policy) -> list[Finding]:
    """Log every finding by what the policy makes of it; return the blocking ones."""
    guarded = [f for f in findings if f.guarded]
    for f in findings:
        if f.kind == "advice":
            log.debug("lint advice: %s: %s: %s", f.location(), f.rule, f.message)
        elif f.kind == "unparsed":
            log.warning(
                "lint: squawk could not parse %s (%s): that statement is not checked",
                f.location(),
                f.message,
            )
        elif f.new_table is not None:
            log.info(
                "lint: %s: %s on table %s, created earlier in this deploy: fine",
                f.location(),
                f.rule,
                f.new_table,
            )
        elif f.acknowledged is not None:
            log.info(
                "lint: %s: %s acknowledged by the migration%s",
                f.location(),
                f.rule,
                f": {f.acknowledged}" if f.acknowledged else " (no reason given)",
            )
        elif policy is Policy.WARN:
            log.warning("lint: %s", f.describe())
    return guarded if policy is Policy.BLOCK else []


def blocked_error(blocking: list[Finding]) -> ConfigError:
    listed = "\n".join(f"  {f.describe()}" for f in blocking)
    return ConfigError(
        f"the lint policy is block and {len(blocking)} destructive or locking operation(s) "
        f"were found; nothing was changed:\n{listed}",
        hint="split the change into expand/contract steps (docs/safe-migrations.md), or if "
        f"it is intended, acknowledge it in {ACKNOWLEDGMENTS_FILE} beside the migrations "
        f'(["{blocking[0].migration}"] then {blocking[0].rule} = "why it is safe"; keeps the '
        "checksum), or, in a migration not applied anywhere yet, with a comment on the line "
        f"before the statement: -- fast-note-migrate: allow {blocking[0].rule} (why it is safe)",
    )


def check(
    migrations: list[Migration],
    policy: Policy,
    *,
    new_tables: bool = True,
    pg_version: str | None = None,
) -> list[Finding]:
    """Lint before a deploy: raise ConfigError (exit 2) when the policy blocks."""
    if policy is Policy.OFF or not migrations:
        return []
    found = run(
        migrations, new_tables=new_tables, pg_version=pg_version, required=policy is Policy.BLOCK
    )
    if found is None:
        log.warning("squawk is not installed: the migrations are not linted (%s)", INSTALL_HINT)
        return []
    blocking = report(found, policy)
    if blocking:
        raise blocked_error(blocking)
    return found
