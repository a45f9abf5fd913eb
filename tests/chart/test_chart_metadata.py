"""Chart.yaml's metadata for Artifact Hub and chart repositories: home, sources, icon, license,
links, and the derived annotations (changes from CHANGELOG.md, images from values.yaml); and the
packaged chart's README, which must not link to files outside the package."""

from __future__ import annotations

import re
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from tools import chart_metadata

from .render import CHART, ROOT, containers, db, pod_specs, render_chart

CHART_YAML = yaml.safe_load((CHART / "Chart.yaml").read_text())
ANNOTATIONS: dict[str, str] = CHART_YAML["annotations"]
HOME: str = CHART_YAML["home"]
# Files of this repository as the home serves them: the web view and the raw file.
REPO_FILE = re.compile(
    rf"^(?:{re.escape(HOME)}/blob/main/|"
    rf"{re.escape(HOME.replace('https://github.com/', 'https://raw.githubusercontent.com/'))}/main/)"
    r"(?P<path>[^#?]+)"
)
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _repo_path(url: str) -> Path | None:
    """The repository file a URL of the project's home names, or None for another URL."""
    match = REPO_FILE.match(url)
    return ROOT / match.group("path") if match else None


def _annotation(key: str) -> list[dict[str, str]]:
    value = yaml.safe_load(ANNOTATIONS[key])
    assert isinstance(value, list), f"{key} must be a YAML list in a string"
    return value


class TestChartYaml:
    def test_should_name_the_project_home_and_its_sources(self):
        assert HOME.startswith("https://github.com/")
        assert HOME in CHART_YAML["sources"]

    def test_should_have_an_icon_served_from_the_repository(self):
        icon = _repo_path(CHART_YAML["icon"])
        assert icon is not None, f"icon {CHART_YAML['icon']} is not a file of {HOME}"
        assert icon.is_file(), f"icon {icon.relative_to(ROOT)} does not exist"
        assert ET.parse(icon).getroot().tag == "{http://www.w3.org/2000/svg}svg"
        assert icon.stat().st_size < 10_000, "keep the icon small"

    def test_should_carry_the_project_license(self):
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        assert ANNOTATIONS["artifacthub.io/license"] == project["license"] == "MIT"
        assert (ROOT / "LICENSE").read_text().startswith("MIT License")

    def test_should_link_to_pages_that_exist(self):
        links = _annotation("artifacthub.io/links")
        assert {"Source", "Changelog", "Security policy"} <= {link["name"] for link in links}
        for link in links:
            path = _repo_path(link["url"])
            assert link["url"] == HOME or path is not None, f"{link} is outside {HOME}"
            assert path is None or path.is_file(), f"{link['url']}: no such file in the repo"

    def test_should_list_the_changelog_section_of_its_version_as_changes(self):
        expected = chart_metadata.changes(
            str(CHART_YAML["version"]), (ROOT / "CHANGELOG.md").read_text()
        )
        assert expected, f"CHANGELOG.md's [{CHART_YAML['version']}] section lists no change"
        assert _annotation("artifacthub.io/changes") == expected, (
            "artifacthub.io/changes differs from CHANGELOG.md: run "
            "`python -m tools.chart_metadata --write`"
        )

    def test_should_list_the_images_the_default_values_deploy(self, helm):
        listed = _annotation("artifacthub.io/images")
        assert listed == chart_metadata.expected()["artifacthub.io/images"], (
            "artifacthub.io/images differs from values.yaml: run "
            "`python -m tools.chart_metadata --write`"
        )
        rendered = {
            ctr["image"]
            for _, spec in pod_specs(render_chart(db(), helm=helm))
            for ctr in containers(spec)
        }
        assert {entry["image"] for entry in listed} == rendered

    def test_write_should_restore_derived_annotations_that_drifted(self, tmp_path):
        stale = tmp_path / "Chart.yaml"
        original = (CHART / "Chart.yaml").read_text()
        stale.write_text(original.replace(f":{CHART_YAML['appVersion']}\n", ":0.0.1\n"))
        assert stale.read_text() != original
        assert chart_metadata.write(stale) is True
        assert stale.read_text() == original
        assert chart_metadata.write(stale) is False


class TestChangelogParsing:
    TEXT = (
        "# Changelog\n\n## [Unreleased]\n\n### Added\n- not yet\n\n"
        "## [1.2.0]\n\n### Added\n- a verb `x`,\n  on two lines\n### Fixed\n- a bug\n\n"
        "## [1.1.0]\n\n### Removed\n- old\n"
    )

    def test_should_read_only_the_version_section_with_kinds(self):
        assert chart_metadata.changes("1.2.0", self.TEXT) == [
            {"kind": "added", "description": "a verb `x`, on two lines"},
            {"kind": "fixed", "description": "a bug"},
        ]

    def test_should_say_what_to_do_without_a_section_for_the_version(self):
        with pytest.raises(chart_metadata.MetadataError, match=r"(?s)\[2\.0\.0\].*what to do:"):
            chart_metadata.changes("2.0.0", self.TEXT)

    def test_should_refuse_a_heading_artifact_hub_does_not_know(self):
        text = self.TEXT.replace("### Fixed", "### Tweaked")
        with pytest.raises(chart_metadata.MetadataError, match=r"(?s)Tweaked.*what to do:"):
            chart_metadata.changes("1.2.0", text)


class TestChartReadme:
    README = (CHART / "README.md").read_text()

    def test_should_link_only_inside_the_packaged_chart(self):
        """`helm package` ships the chart folder alone: a relative link must stay in it."""
        outside = []
        for target in MARKDOWN_LINK.findall(self.README):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            path = (CHART / target.split("#")[0]).resolve()
            if not path.is_relative_to(CHART.resolve()) or not path.exists():
                outside.append(target)
        assert outside == [], "link these with the project's home URL instead"

    def test_should_link_project_files_that_exist(self):
        urls = [url for url in MARKDOWN_LINK.findall(self.README) if _repo_path(url)]
        assert urls, "the README links the project's docs"
        missing = [url for url in urls if not _repo_path(url).is_file()]  # type: ignore[union-attr]
        assert missing == []
