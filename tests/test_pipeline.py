"""The pipeline a hosting service runs (.github/workflows), the pre-commit hooks, Renovate's
configuration and `make help` stay true to the Makefile, the README and the chart."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools import chart_lint
from tools.fetch_tools import PINS

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = ROOT / ".venv" / "bin" / "actionlint"
# `uses: owner/repo@<full commit SHA> # vX.Y.Z`
PINNED_ACTION = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")
# The only write access any job gets, and why.
WRITE_PERMISSIONS = {
    ("release.yml", "chart"): {"contents", "packages"},  # chart-releaser, helm push
    ("release.yml", "images"): {"packages"},  # push the images
    ("release.yml", "pypi"): {"id-token"},  # trusted publishing
    ("release.yml", "github-release"): {"contents"},  # the tag's release and its files
}


def _make(*args: str) -> str:
    done = subprocess.run(["make", "-s", *args], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)


def _lint_commands() -> list[str]:
    """What `make lint` runs (its own recipe, the set-up prerequisites left out)."""
    return _make("-n", "-o", "venv", "-o", "tools", "lint").splitlines()


def _workflow(path: Path) -> dict[str, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(path.read_text())
    loaded["on"] = loaded.pop(True, loaded.get("on"))  # YAML 1.1 reads the key `on` as true
    return loaded


def _workflows() -> dict[str, dict[str, Any]]:
    found = {path.name: _workflow(path) for path in sorted(WORKFLOWS.glob("*.yml"))}
    assert set(found) >= {"ci.yml", "release.yml"}
    return found


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def _runs(workflow: dict[str, Any]) -> list[str]:
    return [line.strip() for s in _steps(workflow) for line in s.get("run", "").splitlines()]


def _action(workflow: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [s for s in _steps(workflow) if s.get("uses", "").startswith(f"{name}@")]


def _pre_commit_hooks() -> list[dict[str, Any]]:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    hooks: list[dict[str, Any]] = config["repos"][0]["hooks"]
    return hooks


def _phony_targets() -> set[str]:
    makefiles = [ROOT / "Makefile", *sorted((ROOT / "mk").glob("*.mk"))]
    return {
        target
        for path in makefiles
        for line in path.read_text().splitlines()
        if line.startswith(".PHONY:")
        for target in line.split(":", 1)[1].split()
    }


class TestPreCommit:
    def test_should_run_the_same_commands_as_make_lint(self):
        entries = [hook["entry"] for hook in _pre_commit_hooks()]
        assert sorted(entries) == sorted(_lint_commands())

    def test_should_run_the_venv_tools_pinned_by_requirements(self):
        for hook in _pre_commit_hooks():
            assert hook["language"] == "system", hook["id"]
            assert hook["entry"].startswith(".venv/bin/"), hook["id"]
            assert hook["pass_filenames"] is False, f"{hook['id']}: it checks the whole tree"

    def test_should_run_the_chart_and_workflow_checks_when_their_files_change(self):
        hooks = {hook["id"]: hook for hook in _pre_commit_hooks()}
        chart_files = [p.relative_to(ROOT).as_posix() for p in chart_lint.yaml_files()]
        workflows = [p.relative_to(ROOT).as_posix() for p in WORKFLOWS.glob("*.yml")]
        for hook_id, paths in (("chart-lint", chart_files), ("actionlint", workflows)):
            pattern = re.compile(hooks[hook_id]["files"])
            assert [p for p in paths if not pattern.search(p)] == [], hook_id


class TestWorkflows:
    def test_should_pin_every_action_to_a_commit_with_its_version(self):
        uses = [
            (path.name, line.split("uses:", 1)[1].strip())
            for path in sorted(WORKFLOWS.glob("*.yml"))
            for line in path.read_text().splitlines()
            if line.strip().removeprefix("- ").startswith("uses:")
        ]
        assert len(uses) >= 10
        assert [(name, ref) for name, ref in uses if not PINNED_ACTION.match(ref)] == []

    def test_should_give_each_job_a_timeout_and_only_the_permissions_it_needs(self):
        writes = {}
        for name, workflow in _workflows().items():
            assert workflow["permissions"] == {}, f"{name}: no default permissions"
            assert workflow["concurrency"]["group"], name
            for job_id, job in workflow["jobs"].items():
                assert 0 < job["timeout-minutes"] <= 90, f"{name} {job_id}"
                granted = job["permissions"]
                if write := {scope for scope, access in granted.items() if access == "write"}:
                    writes[(name, job_id)] = write
        assert writes == WRITE_PERMISSIONS

    def test_should_run_the_readme_commands_on_pull_requests(self):
        ci = _workflows()["ci.yml"]
        assert "pull_request" in ci["on"]
        readme = (ROOT / "README.md").read_text()
        block = readme.split("## The two commands", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
        commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
        assert "make test" in commands
        runs = _runs(ci)
        for command in [*commands, "make lint", "make e2e"]:
            assert any(run == command or run.startswith(f"{command} ") for run in runs), command

    def test_should_call_only_make_targets_that_exist(self):
        targets = _phony_targets()
        for name, workflow in _workflows().items():
            for run in _runs(workflow):
                if run.startswith("make "):
                    assert run.split()[1] in targets, f"{name}: {run}"

    def test_should_release_on_version_tags_after_release_check(self):
        release = _workflows()["release.yml"]
        assert release["on"] == {"push": {"tags": ["v*"]}}
        runs = _runs(release)
        assert runs.index("make release-check") < runs.index("make package")
        assert any("helm3 push" in run and "oci://ghcr.io/${OWNER,,}/charts" in run for run in runs)
        assert _action(release, "helm/chart-releaser-action")[0]["with"]["skip_packaging"]
        assert _action(release, "pypa/gh-action-pypi-publish")

    def test_should_push_the_images_the_chart_deploys_with_provenance_and_sbom(self):
        release = _workflows()["release.yml"]
        build = _action(release, "docker/build-push-action")[0]["with"]
        assert build["provenance"] == "mode=max"
        assert build["sbom"] is True
        assert build["push"] is True
        meta = _action(release, "docker/metadata-action")[0]["with"]
        assert meta["images"] == "ghcr.io/${{ github.repository_owner }}/${{ matrix.name }}"
        matrix = {e["name"]: e for e in release["jobs"]["images"]["strategy"]["matrix"]["include"]}
        values = yaml.safe_load((ROOT / "charts" / "fast-note" / "values.yaml").read_text())
        dockerfiles = {"image": "examples/app/Dockerfile", "migration": "hooks/Dockerfile"}
        for key, image in (("image", values["image"]), ("migration", values["migration"]["image"])):
            assert image["registry"] == "ghcr.io", key
            name = image["repository"].rsplit("/", 1)[-1]
            assert matrix[name]["file"] == dockerfiles[key], key
            assert (ROOT / matrix[name]["file"]).is_file()


@pytest.mark.skipif(not ACTIONLINT.exists(), reason="actionlint is not in .venv: run `make venv`")
class TestActionlint:
    def test_should_accept_the_workflows(self):
        done = subprocess.run([str(ACTIONLINT)], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr

    def test_should_report_a_broken_workflow(self, tmp_path):
        """A typo in a step id, which GitHub would only show as an empty value at run time."""
        broken = tmp_path / "ci.yml"
        text = (WORKFLOWS / "ci.yml").read_text()
        assert "steps.python.outputs" in text
        broken.write_text(text.replace("steps.python.outputs", "steps.pyhton.outputs"))
        done = subprocess.run([str(ACTIONLINT), str(broken)], capture_output=True, text=True)
        assert done.returncode == 1
        assert "pyhton" in done.stdout


class TestRenovate:
    CONFIG = json.loads((ROOT / "renovate.json").read_text())

    @staticmethod
    def _regex(pattern: str) -> re.Pattern[str]:
        """Renovate's `/regex/` file patterns and `(?<name>` groups, read by Python."""
        if pattern.startswith("/") and pattern.endswith("/"):
            pattern = pattern[1:-1]
        return re.compile(pattern.replace("(?<", "(?P<"))

    def _matches(self, patterns: list[str], path: str) -> bool:
        return any(self._regex(p).search(path) for p in patterns)

    def test_should_update_requirements_actions_and_dockerfiles(self):
        managers = set(self.CONFIG["enabledManagers"])
        assert {"pip_requirements", "pep621", "github-actions", "dockerfile"} <= managers
        assert self._matches(
            self.CONFIG["pip_requirements"]["managerFilePatterns"], "requirements-dev.txt"
        )
        dockerfiles = [
            p.relative_to(ROOT).as_posix()
            for pattern in ("hooks/*Dockerfile", "examples/**/*Dockerfile")
            for p in ROOT.glob(pattern)
        ]
        assert len(dockerfiles) >= 3
        patterns = self.CONFIG["dockerfile"]["managerFilePatterns"]
        assert [p for p in dockerfiles if not self._matches(patterns, p)] == []

    def test_should_find_every_registry_pin_of_the_tool_fetcher(self):
        assert "custom.regex" in self.CONFIG["enabledManagers"]
        text = (ROOT / "tools" / "fetch_tools.py").read_text()
        found = set()
        for manager in self.CONFIG["customManagers"]:
            assert self._matches(manager["managerFilePatterns"], "tools/fetch_tools.py")
            for pattern in manager["matchStrings"]:
                for match in self._regex(pattern).finditer(text):
                    found.add(
                        (manager["datasourceTemplate"], match["depName"], match["currentValue"])
                    )
        expected = {
            (pin.source, pin.package, pin.version)
            for pin in PINS.values()
            if pin.source in ("pypi", "npm")
        }
        assert found == expected


def test_make_help_lists_every_target():
    listed = {line.split()[0] for line in _make("help").splitlines() if line.startswith("  ")}
    assert _phony_targets() - listed == set(), "give each target a `## description`"
