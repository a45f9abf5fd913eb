"""What ``verify`` and ``lint`` print for machines: their JSON documents (each with a JSON
Schema in docs/schemas/, the compatibility promise of the README) and lint's SARIF 2.1.0
log for code-review annotations."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from . import __version__
from .errors import ConfigError, ExitCode
from .lint import GUARDED, Acknowledgments, Finding
from .options import Policy

if TYPE_CHECKING:
    from .state import Report

VERIFY_SCHEMA = "https://fast-note.dev/schemas/verify/v1.json"
LINT_SCHEMA = "https://fast-note.dev/schemas/lint/v1.json"
SARIF_SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
SQUAWK_URL = "https://squawkhq.com"


def dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2)


# verify --json -------------------------------------------------------------------------


def verify_document(
    *, database: str, schema: str, migrations_dir: Path, report: Report, code: ExitCode
) -> dict[str, Any]:
    """The checks of ``verify`` and the migrations that fail them, by name."""
    required = report.required_pending
    names = {
        "failed": report.failed,
        "edited": report.edited,
        "pending": required,
        "contract_pending": [m for m in report.pending if m not in required],
        "missing_locally": report.missing_locally,
    }
    return {
        "json_schema": VERIFY_SCHEMA,
        "database": database,
        "schema": schema,
        "migrations_dir": str(migrations_dir),
        "ok": code is ExitCode.OK,
        "exit_code": int(code),
        "checks": {
            "database_reachable": True,
            "no_failed_migration": not report.failed,
            "no_edited_migration": not report.edited,
            "no_pending_migration": not required,
        },
        **{key: [m.name for m in items] for key, items in names.items()},
        "summary": report.counts(),
    }


# lint --json ---------------------------------------------------------------------------


def _relative(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def lint_document(
    *,
    migrations_dir: Path,
    linted: list[str],
    findings: list[Finding],
    policy: Policy,
    all_migrations: bool,
    code: ExitCode,
) -> dict[str, Any]:
    """Every finding (squawk's advice too, ``kind`` tells them apart) with what the policy
    makes of it."""

    def count(kind: str) -> int:
        return sum(1 for f in findings if f.kind == kind)

    return {
        "json_schema": LINT_SCHEMA,
        "migrations_dir": str(migrations_dir),
        "scope": "all" if all_migrations else "pending",
        "policy": policy.value,
        "exit_code": int(code),
        "blocked": code is not ExitCode.OK,
        "migrations": linted,
        "summary": {
            "migrations": len(linted),
            "destructive": count("destructive"),
            "locking": count("locking"),
            "guarded": sum(1 for f in findings if f.guarded),
            "unparsed": count("unparsed"),
            "advice": count("advice"),
        },
        "findings": [
            {
                "migration": f.migration,
                "file": _relative(f.path, migrations_dir),
                "line": f.line,
                "rule": f.rule,
                "kind": f.kind,
                "message": f.message,
                "why": GUARDED.get(f.rule),
                "guarded": f.guarded,
                "acknowledged": f.acknowledged,
                "new_table": f.new_table,
                "help_uri": _help_uri(f.rule),
            }
            for f in findings
        ],
    }


# lint --sarif --------------------------------------------------------------------------


def _help_uri(rule: str) -> str:
    return f"{SQUAWK_URL}/docs/{rule}"


def _level(finding: Finding, policy: Policy) -> str:
    """error: blocks under the policy; warning: would block under ``block``, or a statement
    squawk could not check; note: acknowledged, on a new table, or squawk's advice."""
    if finding.guarded:
        return "error" if policy is Policy.BLOCK else "warning"
    return "warning" if finding.kind == "unparsed" else "note"


def _rule(rule: str, policy: Policy) -> dict[str, Any]:
    """A rule and its level under the policy when nothing acknowledges a finding."""
    bare = Finding("", Path(), 1, rule, "")
    return {
        "id": rule,
        "shortDescription": {"text": GUARDED.get(rule) or f"squawk: {rule}"},
        "helpUri": _help_uri(rule),
        "defaultConfiguration": {"level": _level(bare, policy)},
        "properties": {"tags": ["squawk", bare.kind]},
    }


class _Locations:
    """Artifact URIs relative to the working directory (the repository's root in CI), else
    to the migrations folder."""

    def __init__(self, migrations_dir: Path) -> None:
        self.bases: dict[str, Path] = {"%SRCROOT%": Path.cwd(), "MIGRATIONS_DIR": migrations_dir}
        self.used: set[str] = set()

    def artifact(self, path: Path) -> dict[str, str]:
        for base_id, base in self.bases.items():
            try:
                relative = path.resolve().relative_to(base.resolve())
            except ValueError:
                continue
            self.used.add(base_id)
            return {"uri": quote(relative.as_posix()), "uriBaseId": base_id}
        return {"uri": path.resolve().as_uri()}

    def original(self) -> dict[str, dict[str, str]]:
        return {b: {"uri": self.bases[b].resolve().as_uri() + "/"} for b in sorted(self.used)}


def _suppressions(finding: Finding, acknowledgments: Acknowledgments) -> list[dict[str, str]]:
    if finding.acknowledged is None:
        return []
    external = acknowledgments.reason(finding.migration, finding.rule) is not None
    return [
        {
            "kind": "external" if external else "inSource",
            "justification": finding.acknowledged or "acknowledged without a reason",
        }
    ]


def _result(
    finding: Finding,
    rule_index: int,
    policy: Policy,
    locations: _Locations,
    acknowledgments: Acknowledgments,
) -> dict[str, Any]:
    text = f"{finding.rule}: {finding.message}"
    if finding.rule in GUARDED:
        text += f" ({GUARDED[finding.rule]})"
    if finding.new_table is not None:
        text += f"; fine: table {finding.new_table} is created earlier in this deploy"
    result: dict[str, Any] = {
        "ruleId": finding.rule,
        "ruleIndex": rule_index,
        "level": _level(finding, policy),
        "message": {"text": text},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": locations.artifact(finding.path),
                    "region": {"startLine": finding.line},
                }
            }
        ],
        "properties": {"migration": finding.migration, "kind": finding.kind},
    }
    suppressions = _suppressions(finding, acknowledgments)
    if suppressions:
        result["suppressions"] = suppressions
    return result


def sarif_log(
    *, migrations_dir: Path, findings: list[Finding], policy: Policy, code: ExitCode
) -> dict[str, Any]:
    """A SARIF 2.1.0 log of one run: the driver's rules are our policy's (every guarded
    squawk rule) plus the other rules found; one result per finding."""
    rules = list(GUARDED) + sorted({f.rule for f in findings} - set(GUARDED))
    index = {rule: i for i, rule in enumerate(rules)}
    locations = _Locations(migrations_dir)
    acknowledgments = Acknowledgments.load(migrations_dir)
    results = [_result(f, index[f.rule], policy, locations, acknowledgments) for f in findings]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "fast-note-migrate",
                        "version": __version__,
                        "rules": [_rule(rule, policy) for rule in rules],
                    },
                    "extensions": [{"name": "squawk", "informationUri": SQUAWK_URL}],
                },
                "originalUriBaseIds": locations.original(),
                "invocations": [{"executionSuccessful": True, "exitCode": int(code)}],
                "results": results,
                "properties": {"policy": policy.value},
            }
        ],
    }


def write(text: str, target: str) -> None:
    """``text`` into the file ``target``, or on stdout for ``-``."""
    if target == "-":
        print(text, file=sys.stdout, flush=True)
        return
    try:
        Path(target).write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot write the SARIF log to {target}: {(exc.strerror or str(exc)).lower()}",
            hint="give --sarif a path in an existing, writable folder (or - for stdout)",
        ) from None
