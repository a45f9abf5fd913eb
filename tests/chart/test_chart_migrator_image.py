"""hooks/Dockerfile: what the chart relies on in the image its migrator containers run (the
lock files and labels: tests/image; the image built and run on a node: tests/e2e)."""

from __future__ import annotations

import re
import tomllib

import yaml

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

    def test_should_install_nothing_but_the_built_environment_in_the_final_stage(self):
        final = STAGES[1]
        assert "COPY --from=build /opt/fast-note-migrate /opt/fast-note-migrate" in final
        assert "pip install" not in final and "COPY hooks" not in final
        assert "gcc" not in final and "build-essential" not in final

    def test_should_wait_for_the_rollout_without_a_kubernetes_client_library(self):
        """The contract Job's `--wait-for-rollout` asks the API server with the standard
        library: no [kubernetes] extra to install, none in the lock."""
        assert "kubernetes" not in (ROOT / "hooks" / "requirements.lock").read_text()
        pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
        assert "kubernetes" not in pyproject["project"]["optional-dependencies"]

    def test_should_run_as_the_uid_and_gid_the_chart_expects(self):
        user = re.findall(r"^USER (\d+):(\d+)$", STAGES[1], re.M)
        values = yaml.safe_load((ROOT / "charts" / "fast-note" / "values.yaml").read_text())
        pod = values["podSecurityContext"]
        assert user == [(str(pod["runAsUser"]), str(pod["runAsGroup"]))]
        assert re.search(
            rf"useradd --uid {pod['runAsUser']} --gid {pod['runAsGroup']}\b", STAGES[1]
        )

    def test_should_start_the_migrator_cli(self):
        assert 'ENTRYPOINT ["fast-note-migrate"]' in STAGES[1]
        pyproject = (ROOT / "pyproject.toml").read_text()
        assert 'fast-note-migrate = "fast_note_migrate.cli:main"' in pyproject
