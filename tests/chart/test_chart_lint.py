"""The checks `ct lint` would run (tools/chart_lint.py): helm lint --strict with both Helm majors
for every values file, yamllint with lintconf.yaml, yamale on Chart.yaml, README drift."""

from __future__ import annotations

import shutil

import pytest

from tools import chart_lint

VALUES = chart_lint.values_files()


class TestChartLint:
    @pytest.mark.parametrize("values", VALUES, ids=[v.stem for v in VALUES])
    def test_should_pass_helm_lint_strict(self, helm, values):
        ok, output = chart_lint.helm_lint(helm, values)
        assert ok, output

    def test_should_pass_yamllint(self):
        assert chart_lint.yamllint_problems() == []

    def test_should_pass_yamale_on_chart_yaml(self):
        assert chart_lint.yamale_problems() == []

    def test_should_reject_a_chart_yaml_with_an_unknown_key(self, tmp_path):
        bad = tmp_path / "Chart.yaml"
        bad.write_text((chart_lint.CHART / "Chart.yaml").read_text() + "colour: blue\n")
        assert any("colour" in p for p in chart_lint.yamale_problems(bad))

    def test_should_ship_ct_config_pointing_at_the_schemas(self):
        text = (chart_lint.ROOT / "ct.yaml").read_text()
        assert "chart-yaml-schema: charts/chart_schema.yaml" in text
        assert "lint-conf: lintconf.yaml" in text


def _need_readme_generator() -> None:
    reason = chart_lint.readme_generator_missing()
    if reason and not chart_lint.READMEGEN_BIN.exists():
        pytest.skip(reason)


class TestReadme:
    def test_should_match_the_values_file(self):
        _need_readme_generator()
        diff = chart_lint.readme_drift()
        assert diff == [], (
            "README drifted from values.yaml; run `make chart-readme`:\n" + "\n".join(diff)
        )

    def test_should_notice_a_drifted_readme(self, tmp_path):
        _need_readme_generator()
        readme = tmp_path / "README.md"
        readme.write_text(chart_lint.README.read_text().replace("| `replicaCount`", "| `replicas`"))
        assert chart_lint.readme_drift(readme) != []

    def test_should_notice_an_undocumented_value(self, tmp_path):
        _need_readme_generator()
        values = tmp_path / "values.yaml"
        values.write_text(chart_lint.VALUES.read_text() + "undocumented: true\n")
        readme = tmp_path / "README.md"
        shutil.copy(chart_lint.README, readme)
        drift = chart_lint.readme_drift(readme, values)
        assert any("undocumented" in line for line in drift)
