"""hooks/Dockerfile: the image the chart's migrator containers run (it cannot be built here, so
these check what the chart relies on)."""

from __future__ import annotations

import re

from .render import ROOT

DOCKERFILE = (ROOT / "hooks" / "Dockerfile").read_text()
STAGES = re.split(r"^FROM ", DOCKERFILE, flags=re.M)[1:]


class TestMigratorImage:
    def test_should_build_in_two_stages_from_a_pinned_slim_python(self):
        assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim-bookworm$", DOCKERFILE, re.M)
        assert len(STAGES) == 2 and all(s.startswith("${PYTHON_IMAGE}") for s in STAGES)

    def test_should_name_no_registry_host(self):
        for ref in re.findall(r"(?:FROM|PYTHON_IMAGE=)\s*(\S+)", DOCKERFILE):
            assert not re.match(r"^[^/]+[.:][^/]*/", ref), ref

    def test_should_install_only_the_wheel_in_the_final_stage(self):
        final = STAGES[1]
        assert "--no-index --find-links=/wheels" in final
        assert "COPY hooks" not in final and "gcc" not in final and "build-essential" not in final
        assert "pip wheel" in STAGES[0]

    def test_should_install_the_kubernetes_extra_for_the_contract_job(self):
        """`deploy --wait-for-rollout` (the contract Job) needs the kubernetes client."""
        assert "'.[kubernetes]'" in STAGES[0]
        assert "'fast-note-migrate[kubernetes]'" in STAGES[1]
        pyproject = (ROOT / "pyproject.toml").read_text()
        assert re.search(r"^\[project\.optional-dependencies\]\nkubernetes = \[", pyproject, re.M)

    def test_should_run_as_the_uid_the_chart_expects(self):
        assert re.search(r"^USER 10001:10001$", STAGES[1], re.M)
        values = (ROOT / "charts" / "fast-note" / "values.yaml").read_text()
        assert "runAsUser: 10001" in values

    def test_should_start_the_migrator_cli(self):
        assert 'ENTRYPOINT ["fast-note-migrate"]' in STAGES[1]
        pyproject = (ROOT / "pyproject.toml").read_text()
        assert 'fast-note-migrate = "fast_note_migrate.cli:main"' in pyproject
