"""values.yaml, values.schema.json and the README's Parameters table describe the same keys."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from .render import CHART, RenderError, db, render_chart

VALUES_TEXT = (CHART / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
PARAMS = dict(re.findall(r"^## @param (\S+)(?: \[[^\]]*\])? (.+)$", VALUES_TEXT, re.M))
# Kubernetes objects passed verbatim into pod specs: open schemas, checked by Kubernetes itself
# (and by the strict kubernetes-validate run of every render).
PASS_THROUGH = {
    "livenessProbe",
    "readinessProbe",
    "resources",
    "podSecurityContext",
    "securityContext",
    "updateStrategy",
    "affinity",
    "nodeSelector",
    "startupProbe",
    "migration.resources",
    "migration.affinity",
}


def _in_pass_through(path: str) -> bool:
    return any(path == k or path.startswith(f"{k}.") for k in PASS_THROUGH)


def _schema_nodes(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for key, child in (node.get("properties") or {}).items():
        out += _schema_nodes(child, f"{path}.{key}" if path else key)
    return out


def _leaves(value: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict) and value and path not in _MAP_KEYS:
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{path}.{k}" if path else k)]
    return [(path, value)]


_MAP_KEYS = {p for p, n in _schema_nodes(SCHEMA) if isinstance(n.get("additionalProperties"), dict)}
NODES = dict(_schema_nodes(SCHEMA))


class TestValuesSchema:
    def test_should_describe_every_value_with_a_param_comment(self):
        missing = [
            p
            for p, _ in _leaves(VALUES)
            if p not in PARAMS and not any(p.startswith(f"{k}.") for k in PARAMS)
        ]
        assert missing == []
        unknown = [p for p in PARAMS if p not in NODES]
        assert unknown == [], "@param for keys the schema does not know"

    def test_should_list_every_value_in_the_schema_with_its_default(self):
        for path, value in _leaves(VALUES):
            assert path in NODES, f"{path} is in values.yaml but not in values.schema.json"
            assert NODES[path].get("default", value) == value, f"schema default of {path} differs"

    def test_should_have_no_schema_key_missing_from_values(self):
        known = {p for p, _ in _leaves(VALUES)}
        for path, _ in _schema_nodes(SCHEMA):
            if path and not any(
                path == k or path.startswith(f"{k}.") or k.startswith(f"{path}.") for k in known
            ):
                pytest.fail(f"{path} is in values.schema.json but not in values.yaml")

    def test_should_close_every_object(self):
        for path, node in _schema_nodes(SCHEMA):
            if node.get("type") != "object":
                continue
            closed = node.get("additionalProperties")
            assert closed is not None, f"{path or '(root)'} must say additionalProperties"
            if closed is True:
                # `global` holds every chart's shared values in an umbrella release.
                assert _in_pass_through(path) or path == "global", (
                    f"{path} is open but is not a Kubernetes pass-through object"
                )

    def test_should_describe_every_key(self):
        for path, node in _schema_nodes(SCHEMA):
            inner = _in_pass_through(path) and path not in PASS_THROUGH and path not in PARAMS
            if path and not inner:
                assert node.get("description"), f"{path} has no description"

    def test_should_match_the_param_descriptions(self):
        for path, text in PARAMS.items():
            if not _in_pass_through(path):
                assert NODES[path]["description"] == text, f"{path}: schema and @param disagree"

    def test_should_enumerate_the_strategies(self):
        strategy = NODES["migration.strategy"]
        assert strategy["enum"] == ["hook", "initContainer", "job", "none"]
        assert strategy["default"] == "hook"

    def test_should_enumerate_the_lint_policies(self):
        policy = NODES["migration.lintPolicy"]
        assert policy["enum"] == ["", "block", "warn", "off"]
        assert policy["default"] == ""


class TestSchemaRejectsBadValues:
    @pytest.mark.parametrize(
        ("values", "message"),
        [
            ({"replicas": 3}, "additional properties 'replicas' not allowed"),
            ({"migration": {"stratgy": "hook"}}, "additional properties 'stratgy' not allowed"),
            (
                {"migration": {"strategy": "blue-green"}},
                "value must be one of 'hook', 'initContainer', 'job', 'none'",
            ),
            ({"replicaCount": -1}, "/replicaCount"),
            ({"migration": {"lockTimeout": "5 minutes"}}, "/migration/lockTimeout"),
            (
                {"migration": {"job": {"ttlSecondsAfterFinished": -5}}},
                "/migration/job/ttlSecondsAfterFinished",
            ),
            # 0 deletes the Job as it finishes: Argo CD waits forever, Helm and Flux fail.
            (
                {"migration": {"job": {"ttlSecondsAfterFinished": 0}}},
                "ttlSecondsAfterFinished': minimum: got 0, want 300",
            ),
            (
                {"migration": {"job": {"ttlSecondsAfterFinished": 299}}},
                "ttlSecondsAfterFinished': minimum: got 299, want 300",
            ),
            ({"migration": {"logFormat": "xml"}}, "value must be one of 'text', 'json'"),
            (
                {"migration": {"lintPolicy": "strict"}},
                "value must be one of '', 'block', 'warn', 'off'",
            ),
            ({"migration": {"statementLockTimeout": "5"}}, "/migration/statementLockTimeout"),
            ({"migration": {"statementTimeout": "1 hour"}}, "/migration/statementTimeout"),
            ({"migration": {"lockRetries": -1}}, "/migration/lockRetries"),
            ({"migration": {"contract": {"rolloutTimeout": "ten"}}}, "/migration/contract"),
            ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ],
    )
    def test_should_reject_with_a_readable_error(self, helm, values, message):
        with pytest.raises(RenderError) as err:
            render_chart(db(**values), helm=helm)
        assert "values don't meet the specifications of the schema" in str(err.value)
        assert message in str(err.value)

    def test_should_reject_negative_replicas_saying_the_minimum(self, helm):
        with pytest.raises(RenderError, match=r"/replicaCount.*minimum: got -1, want 0"):
            render_chart(db(replicaCount=-1), helm=helm)
