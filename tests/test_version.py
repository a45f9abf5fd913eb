"""One project version: ``fast_note_migrate.__version__``. pyproject.toml reads it (setuptools
dynamic version), and the chart's version and appVersion (the migrator image's default tag) must
equal it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from fast_note_migrate import __version__

ROOT = Path(__file__).resolve().parents[1]
# MAJOR.MINOR.PATCH: what Helm (SemVer 2) and pip (PEP 440) both read, and write, the same way.
RELEASE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


def test_should_be_a_release_version():
    assert RELEASE.match(__version__), f"__version__ {__version__!r} is not MAJOR.MINOR.PATCH"


def test_should_be_the_chart_version_and_app_version():
    chart = yaml.safe_load((ROOT / "charts" / "fast-note" / "Chart.yaml").read_text())
    found = {"version": str(chart["version"]), "appVersion": str(chart["appVersion"])}
    assert found == {"version": __version__, "appVersion": __version__}, (
        f"charts/fast-note/Chart.yaml has {found}, fast_note_migrate.__version__ is "
        f"{__version__}: set both Chart.yaml fields to it"
    )


def test_should_be_the_package_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"], "pyproject.toml: keep the version dynamic"
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "fast_note_migrate.__version__"
    }
