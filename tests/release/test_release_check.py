"""`make release-check` (python -m tools.release check): one version everywhere, the published
images in the chart's defaults, the changelog and the tag; each mismatch refused with exit 1,
what is wrong and a `what to do:` line."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from fast_note_migrate import __version__
from tools import release

ROOT = Path(__file__).resolve().parents[2]
# What the check reads, copied into a scratch checkout per test.
CHECKED = (
    "hooks/fast_note_migrate/__init__.py",
    "hooks/Dockerfile",
    "pyproject.toml",
    "charts/fast-note/Chart.yaml",
    "charts/fast-note/values.yaml",
    "CHANGELOG.md",
)
OTHER = "9.9.9" if __version__ != "9.9.9" else "9.9.8"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    for name in CHECKED:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    return tmp_path


def release_check(root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RELEASE_"))}
    argv = [sys.executable, "-m", "tools.release", "check", "--root", str(root)]
    argv += ["--dist", str(root / "dist")]
    return subprocess.run(
        argv, cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    """Replace the first ``count`` matches of the regex ``old`` (0: all)."""
    text = path.read_text()
    assert re.search(old, text, re.MULTILINE), f"{old!r} not in {path}"
    path.write_text(re.sub(old, new, text, count=count, flags=re.MULTILINE))


def refused(result: subprocess.CompletedProcess[str], what: str, fix: str) -> None:
    assert result.returncode == 1, result
    assert what in result.stderr, result.stderr
    assert f"what to do: {fix}" in result.stderr, result.stderr


def test_should_accept_the_repository() -> None:
    """The checkout itself: one version everywhere, exit 0."""
    result = release_check(ROOT)
    assert result.returncode == 0, result.stderr
    assert f"release-check: {__version__} everywhere" in result.stdout


MISMATCHES: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "Chart.yaml appVersion": (
        lambda root: edit(
            root / "charts/fast-note/Chart.yaml", "^appVersion: .*$", f'appVersion: "{OTHER}"'
        ),
        f"Chart.yaml appVersion is {OTHER}, the project version is {__version__}",
        f"set appVersion in charts/fast-note/Chart.yaml to {__version__}",
    ),
    "migrator tag pinned to another version": (
        lambda root: edit(
            root / "charts/fast-note/values.yaml",
            r"^(  image:\n(?:    .*\n)*?)    tag: \"\"",
            rf'\1    tag: "{OTHER}"',
        ),
        f"migration.image.tag is {OTHER}",
        'set migration.image.tag to "" (the chart\'s appVersion)',
    ),
    "app image nobody publishes": (
        lambda root: edit(
            root / "charts/fast-note/values.yaml",
            "^  repository: fast-note/fast-note-example$",
            "  repository: fast-note",
        ),
        "values.yaml image is ghcr.io/fast-note, "
        "the releases publish it as ghcr.io/fast-note/fast-note-example",
        "set image.registry to ghcr.io and image.repository to fast-note/fast-note-example",
    ),
    "Dockerfile version label": (
        lambda root: (root / "hooks/Dockerfile").write_text(
            (root / "hooks/Dockerfile").read_text() + f"ARG VERSION={OTHER}\n"
        ),
        f"hooks/Dockerfile has ARG VERSION={OTHER}",
        f"set ARG VERSION={__version__} in hooks/Dockerfile",
    ),
    "static version in pyproject.toml": (
        lambda root: edit(
            root / "pyproject.toml", r'^dynamic = \["version"\]$', f'version = "{OTHER}"'
        ),
        "pyproject.toml does not read the version from __version__",
        'keep `dynamic = ["version"]`',
    ),
    "changelog without a section": (
        lambda root: edit(root / "CHANGELOG.md", r"^## \[(.*)\]", r"## \1", count=0),
        f"CHANGELOG.md has neither a section [{__version__}] nor [Unreleased]",
        "record the changes under a `## [Unreleased]` section",
    ),
}


@pytest.mark.parametrize("case", MISMATCHES)
def test_should_refuse_a_mismatch(checkout: Path, case: str) -> None:
    """Each place the version or the published image is written: a mismatch is named, with
    what to do, and exits 1."""
    change, what, fix = MISMATCHES[case]
    change(checkout)
    refused(release_check(checkout), what, fix)


def test_should_refuse_a_tag_of_another_version(checkout: Path) -> None:
    """Run on a release tag (RELEASE_TAG, or GitHub's ref of type tag), the tag is the version."""
    refused(
        release_check(checkout, RELEASE_TAG=f"v{OTHER}"),
        f"the release tag is v{OTHER}, the project version is {__version__}",
        f"tag the commit v{__version__}",
    )
    result = release_check(checkout, GITHUB_REF_NAME=f"v{OTHER}", GITHUB_REF_TYPE="tag")
    assert result.returncode == 1 and f"release tag is v{OTHER}" in result.stderr
    branch = release_check(checkout, GITHUB_REF_NAME="main", GITHUB_REF_TYPE="branch")
    assert branch.returncode == 0, branch.stderr


def test_should_want_the_version_s_changelog_section_on_its_tag(checkout: Path) -> None:
    """Before the tag [Unreleased] is enough; on the tag the version needs its own section."""
    edit(checkout / "CHANGELOG.md", rf"^## \[{re.escape(__version__)}\]", "## [0.0.0]")
    assert release_check(checkout).returncode == 0
    refused(
        release_check(checkout, RELEASE_TAG=f"v{__version__}"),
        f"CHANGELOG.md has no section [{__version__}] for the release tag v{__version__}",
        f"rename [Unreleased] to [{__version__}]",
    )


def test_should_refuse_a_dist_that_does_not_match_its_sums(checkout: Path) -> None:
    """A dist/ of an incomplete or later modified `make package` is refused."""
    dist = checkout / "dist"
    dist.mkdir()
    chart = release.package_chart(dist)
    digest = hashlib.sha256(chart.read_bytes()).hexdigest()
    (dist / "SHA256SUMS").write_text(f"{digest}  {chart.name}\n")
    missing = release.artifacts(__version__)["wheel"]
    refused(release_check(checkout), f"SHA256SUMS lists no wheel {missing}", "run `make package`")
    with chart.open("ab") as stream:
        stream.write(b"\0")
    refused(release_check(checkout), f"{chart} does not match", "run `make package` again")
