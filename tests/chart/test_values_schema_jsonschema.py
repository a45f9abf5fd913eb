"""values.schema.json checked with jsonschema itself, not only through Helm's render.

Helm validates the values it renders with: the ``-f`` files merged in order, coalesced over
the chart's values.yaml. ``helm_values`` does the same merge, checked against what Helm 3
and Helm 4 compute; every values file of ``values/`` and ``ci/`` is then valid, and each
wrong value of a table fails at its JSON path with jsonschema's message, where Helm fails
too. (test_chart_values_schema.py checks the schema against values.yaml, the README and
Helm's messages.)
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from jsonschema.validators import validator_for

from .render import (
    CHART,
    CI_VALUES_FILES,
    HELM_BIN,
    ROOT,
    VALUES_FILES,
    RenderError,
    render_chart,
)

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())
VALIDATOR = validator_for(SCHEMA)(SCHEMA)
FILES = VALUES_FILES + CI_VALUES_FILES
PROD = ROOT / "values" / "prod.yaml"


def _merge_files(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Two ``-f`` files, as Helm merges them before anything else: the later one wins,
    maps are merged key by key, a null is kept (it deletes a default later)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_files(out[key], value)
        else:
            out[key] = value
    return out


def _coalesce(user: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The user's values over the chart's, as Helm coalesces them: maps deep-merged, the
    user's value winning (also a scalar over a map, or a map over a scalar), and a user's
    null deleting the chart's key (a null for a key the chart does not have stays)."""
    out = dict(user)
    for key, default in defaults.items():
        if key not in user:
            out[key] = copy.deepcopy(default)
        elif user[key] is None:
            del out[key]
        elif isinstance(user[key], dict) and isinstance(default, dict):
            out[key] = _coalesce(user[key], default)
    return out


def helm_values(*overrides: dict[str, Any], defaults: dict[str, Any] = DEFAULTS) -> dict[str, Any]:
    """What Helm validates and renders with for ``-f`` files with these contents, in order,
    over the chart's ``defaults``."""
    user: dict[str, Any] = {}
    for override in overrides:
        user = _merge_files(user, override)
    return _coalesce(user, defaults)


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def _errors(values: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((e.json_path, e.message) for e in VALIDATOR.iter_errors(values))


# The schema and the merge -------------------------------------------------------------


def test_the_schema_is_a_valid_draft_7_schema() -> None:
    """Draft 7, as declared: what Helm 3 and Helm 4 both read."""
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert validator_for(SCHEMA) is Draft7Validator
    Draft7Validator.check_schema(SCHEMA)


def test_the_charts_own_values_are_valid() -> None:
    assert _errors(helm_values()) == []
    assert helm_values() == DEFAULTS


# Values files written over a values file: nulls, lists, type changes.
OVERRIDES: dict[str, list[dict[str, Any]]] = {
    "null deletes a default": [
        {
            "livenessProbe": None,
            "migration": {"job": {"ttlSecondsAfterFinished": None}, "lockRetries": None},
        }
    ],
    "a list is replaced, a map merged": [
        {"extraEnvFrom": [], "commonLabels": {"team": "notes"}},
        {"commonLabels": {"tier": "web"}, "podAnnotations": {"a": "1"}},
    ],
    "a later file wins, also with null": [
        {"migration": {"lintPolicy": "warn", "logFormat": "json"}},
        {"migration": {"lintPolicy": "block", "logFormat": None}},
    ],
}


@pytest.fixture(scope="module")
def values_dump_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart with one template only, which prints the values it is rendered with."""
    chart = tmp_path_factory.mktemp("dump") / "fast-note"
    shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("templates"))
    (chart / "templates").mkdir()
    (chart / "templates" / "values.json").write_text("{{ toJson .Values }}\n")
    return chart


def _helm_computed(helm: str, chart: Path, files: list[Path]) -> dict[str, Any]:
    cmd = [str(HELM_BIN[helm]), "template", "fast-note", str(chart)]
    for path in files:
        cmd += ["-f", str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    body = [line for line in done.stdout.splitlines() if not line.startswith(("---", "#"))]
    computed: dict[str, Any] = json.loads("\n".join(body))
    return computed


@pytest.mark.parametrize(
    "files",
    [[f] for f in FILES] + [[PROD, name] for name in OVERRIDES],
    ids=[f.stem for f in FILES] + [f"prod+{name}" for name in OVERRIDES],
)
def test_the_merge_is_helms(
    helm: str, values_dump_chart: Path, tmp_path: Path, files: list[Path | str]
) -> None:
    """helm_values computes what Helm 3 and Helm 4 render with, for the repository's values
    files and for written-over ones."""
    paths: list[Path] = []
    contents: list[dict[str, Any]] = []
    for item in files:
        if isinstance(item, Path):
            paths.append(item)
            contents.append(_load(item))
            continue
        for index, override in enumerate(OVERRIDES[item]):
            path = tmp_path / f"override-{index}.yaml"
            path.write_text(yaml.safe_dump(override))
            paths.append(path)
            contents.append(override)

    defaults = _load(values_dump_chart / "values.yaml")  # the one Helm reads here
    assert helm_values(*contents, defaults=defaults) == _helm_computed(
        helm, values_dump_chart, paths
    )


# Every values file is valid -----------------------------------------------------------


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_every_values_file_is_valid(path: Path) -> None:
    assert _errors(helm_values(_load(path))) == []


@pytest.mark.parametrize("name", list(OVERRIDES))
def test_written_over_values_are_valid(name: str) -> None:
    assert _errors(helm_values(_load(PROD), *OVERRIDES[name])) == []


def test_a_null_for_a_key_the_chart_lacks_is_kept_and_refused() -> None:
    """Only a default is deleted by null: commonLabels has no key ``team``."""
    values = helm_values({"commonLabels": {"team": None}})
    assert values["commonLabels"] == {"team": None}
    assert _errors(values) == [("$.commonLabels.team", "None is not of type 'string'")]


# Wrong values: the path and the message -------------------------------------------------

DURATION = "'^[0-9]+(ms|s|m|h)$'"
WRONG: dict[str, tuple[dict[str, Any], str, str]] = {
    # name: (values, JSON path of the one error, jsonschema's message)
    "unknown top-level key": (
        {"replicas": 3},
        "$",
        "Additional properties are not allowed ('replicas' was unexpected)",
    ),
    "misspelt nested key": (
        {"migration": {"stratgy": "hook"}},
        "$.migration",
        "Additional properties are not allowed ('stratgy' was unexpected)",
    ),
    "unknown strategy": (
        {"migration": {"strategy": "blue-green"}},
        "$.migration.strategy",
        "'blue-green' is not one of ['hook', 'initContainer', 'job', 'none']",
    ),
    "strategy in the wrong case": (
        {"migration": {"strategy": "initcontainer"}},
        "$.migration.strategy",
        "'initcontainer' is not one of ['hook', 'initContainer', 'job', 'none']",
    ),
    "unknown lint policy": (
        {"migration": {"lintPolicy": "strict"}},
        "$.migration.lintPolicy",
        "'strict' is not one of ['', 'block', 'warn', 'off']",
    ),
    "unknown log format": (
        {"migration": {"logFormat": "xml"}},
        "$.migration.logFormat",
        "'xml' is not one of ['text', 'json']",
    ),
    "unknown pull policy": (
        {"image": {"pullPolicy": "Sometimes"}},
        "$.image.pullPolicy",
        "'Sometimes' is not one of ['Always', 'IfNotPresent', 'Never']",
    ),
    "unknown service type": (
        {"service": {"type": "ExternalName"}},
        "$.service.type",
        "'ExternalName' is not one of ['ClusterIP', 'NodePort', 'LoadBalancer']",
    ),
    "negative replicas": (
        {"replicaCount": -1},
        "$.replicaCount",
        "-1 is less than the minimum of 0",
    ),
    "replicas quoted": (
        {"replicaCount": "3"},
        "$.replicaCount",
        "'3' is not of type 'integer'",
    ),
    "port out of range": (
        {"containerPort": 70000},
        "$.containerPort",
        "70000 is greater than the maximum of 65535",
    ),
    "CPU target above 100": (
        {"autoscaling": {"targetCPUUtilizationPercentage": 101}},
        "$.autoscaling.targetCPUUtilizationPercentage",
        "101 is greater than the maximum of 100",
    ),
    "negative TTL": (
        {"migration": {"job": {"ttlSecondsAfterFinished": -5}}},
        "$.migration.job.ttlSecondsAfterFinished",
        "-5 is less than the minimum of 0",
    ),
    "fractional retries": (
        {"migration": {"lockRetries": 1.5}},
        "$.migration.lockRetries",
        "1.5 is not of type 'integer'",
    ),
    "lock timeout in words": (
        {"migration": {"lockTimeout": "5 minutes"}},
        "$.migration.lockTimeout",
        f"'5 minutes' does not match {DURATION}",
    ),
    "wait timeout without unit": (
        {"migration": {"wait": {"timeout": "600"}}},
        "$.migration.wait.timeout",
        f"'600' does not match {DURATION}",
    ),
    "statement lock timeout without unit": (
        {"migration": {"statementLockTimeout": "5"}},
        "$.migration.statementLockTimeout",
        "'5' does not match '^(0|[0-9]+(ms|s|m|h))$'",
    ),
    "rollout timeout in words": (
        {"migration": {"contract": {"rolloutTimeout": "ten"}}},
        "$.migration.contract.rolloutTimeout",
        f"'ten' does not match {DURATION}",
    ),
    "short digest": (
        {"migration": {"image": {"digest": "sha256:abc"}}},
        "$.migration.image.digest",
        "'sha256:abc' does not match '^(sha256:[a-f0-9]{64})?$'",
    ),
    "empty repository": (
        {"image": {"repository": ""}},
        "$.image.repository",
        "'' should be non-empty",
    ),
    "not a PostgreSQL URL": (
        {"database": {"url": "mysql://app@db/app"}},
        "$.database.url",
        "'mysql://app@db/app' does not match '^$|^postgres(ql)?://'",
    ),
    "relative migrations path": (
        {"migration": {"source": {"path": "prisma/migrations"}}},
        "$.migration.source.path",
        "'prisma/migrations' does not match '^/'",
    ),
    "tmp size in gigabytes": (
        {"tmpSizeLimit": "1G"},
        "$.tmpSizeLimit",
        "'1G' does not match '^[0-9]+(Ki|Mi|Gi)?$'",
    ),
    "boolean quoted": (
        {"tests": {"enabled": "false"}},
        "$.tests.enabled",
        "'false' is not of type 'boolean'",
    ),
    "pull secret as an object": (
        {"imagePullSecrets": [{"name": "regcred"}]},
        "$.imagePullSecrets[0]",
        "{'name': 'regcred'} is not of type 'string'",
    ),
    "label value a number": (
        {"commonLabels": {"team": 1}},
        "$.commonLabels.team",
        "1 is not of type 'string'",
    ),
    "config value a list": (
        {"config": {"data": {"FEATURES": ["a", "b"]}}},
        "$.config.data.FEATURES",
        "['a', 'b'] is not of type 'string', 'number', 'boolean'",
    ),
    "PDB as a fraction": (
        {"podDisruptionBudget": {"minAvailable": 1.5}},
        "$.podDisruptionBudget.minAvailable",
        "1.5 is not of type 'integer', 'string'",
    ),
    "probe path a number": (
        {"livenessProbe": {"httpGet": {"path": 8080}}},
        "$.livenessProbe.httpGet.path",
        "8080 is not of type 'string'",
    ),
    "a scalar over a map": (
        {"migration": "hook"},
        "$.migration",
        "'hook' is not of type 'object'",
    ),
    "a map over a scalar": (
        {"tmpSizeLimit": {"size": "64Mi"}},
        "$.tmpSizeLimit",
        "{'size': '64Mi'} is not of type 'string'",
    ),
}


@pytest.mark.parametrize("name", list(WRONG))
def test_a_wrong_value_fails_at_its_path(name: str) -> None:
    values, path, message = WRONG[name]
    assert _errors(helm_values(values)) == [(path, message)]


@pytest.mark.parametrize("name", list(WRONG))
def test_a_wrong_value_fails_in_helm_at_the_same_path(helm: str, name: str) -> None:
    """jsonschema's verdict is Helm's: Helm refuses the same values at the same place."""
    values, _, _ = WRONG[name]
    [error] = list(VALIDATOR.iter_errors(helm_values(values)))
    pointer = "".join(f"/{part}" for part in error.absolute_path)
    with pytest.raises(RenderError) as refused:
        render_chart(values, helm=helm, validate=False)
    assert "values don't meet the specifications of the schema" in str(refused.value)
    assert f"at '{pointer}'" in str(refused.value)
