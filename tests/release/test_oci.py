"""The chart as a release publishes it: packaged as `make package` packages it, pushed to a real
OCI registry (Debian's docker-registry on loopback) and pulled, shown, rendered and installed
from there, with Helm 3 and Helm 4 on either side."""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fast_note_migrate import __version__
from testkit.registry import DOCKER_REGISTRY, LocalRegistry
from tools import release

ROOT = Path(__file__).resolve().parents[2]
PROD_VALUES = ROOT / "values" / "prod.yaml"
MAJORS = ("helm3", "helm4")
# (the major that pushed, the major that reads): each reads what the other published
PUBLISHED = {
    release.published_image("image", __version__),
    release.published_image("migration.image", __version__),
}
PAIRS = pytest.mark.parametrize(("pusher", "reader"), list(itertools.product(MAJORS, MAJORS)))

pytestmark = pytest.mark.skipif(
    not DOCKER_REGISTRY.exists(),
    reason=f"{DOCKER_REGISTRY} is not installed: apt-get install docker-registry (.ci/run does)",
)


def helm(major: str, home: Path, *args: str) -> str:
    """Run one Helm major with its config, cache and registry logins kept in ``home``; its
    output (stdout and stderr)."""
    env = dict(
        os.environ,
        HELM_CONFIG_HOME=str(home / major / "config"),
        HELM_CACHE_HOME=str(home / major / "cache"),
        HELM_DATA_HOME=str(home / major / "data"),
        KUBECONFIG=str(home / "no-cluster"),  # nothing here talks to a cluster
    )
    result = subprocess.run(
        [str(release.HELMS[major]), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{major} {' '.join(args)}:\n{result.stdout}"
    return result.stdout


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-home")


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart .tgz as `make package` builds it (linted by both majors)."""
    return release.package_chart(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    with LocalRegistry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture(scope="module")
def pushed(chart: Path, registry: LocalRegistry, home: Path) -> dict[str, str]:
    """The chart pushed by each major to oci://HOST/<major>/charts: major -> the digest it
    reported."""
    digests = {}
    for major in MAJORS:
        target = f"oci://{registry.host}/{major}/charts"
        output = helm(major, home, "push", str(chart), target, "--plain-http")
        found = re.search(r"Digest: (sha256:[0-9a-f]{64})", output)
        assert found, output
        digests[major] = found[1]
    return digests


def published(registry: LocalRegistry, pusher: str) -> list[str]:
    """The arguments naming the chart ``pusher`` pushed: reference, version, plain HTTP."""
    return [
        f"oci://{registry.host}/{pusher}/charts/fast-note",
        "--version",
        __version__,
        "--plain-http",
    ]


def images_in(manifest: str) -> set[str]:
    return set(re.findall(r'^\s+image: "?([^"\s]+)"?$', manifest, re.MULTILINE))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_should_package_the_chart_under_the_project_version(chart: Path) -> None:
    """`make package` names the chart after __version__, the version inside it too."""
    assert chart.name == f"fast-note-{__version__}.tgz"


def test_should_publish_the_same_artifact_with_either_helm_major(pushed: dict[str, str]) -> None:
    """Helm 3 and Helm 4 push the packaged chart as one OCI artifact: one digest."""
    assert pushed["helm3"] == pushed["helm4"]


@PAIRS
def test_should_pull_exactly_the_packaged_chart(
    pushed: dict[str, str],
    registry: LocalRegistry,
    chart: Path,
    home: Path,
    tmp_path: Path,
    pusher: str,
    reader: str,
) -> None:
    """What a user pulls from the registry is the packaged .tgz, byte for byte."""
    output = helm(reader, home, "pull", *published(registry, pusher), "-d", str(tmp_path))
    assert pushed[pusher] in output
    assert sha256(tmp_path / chart.name) == sha256(chart)


@PAIRS
def test_should_show_the_project_version_from_the_registry(
    pushed: dict[str, str], registry: LocalRegistry, home: Path, pusher: str, reader: str
) -> None:
    """`helm show chart oci://…`: version and appVersion are the project version."""
    shown = yaml.safe_load(helm(reader, home, "show", "chart", *published(registry, pusher)))
    assert shown["name"] == "fast-note"
    assert (shown["version"], shown["appVersion"]) == (__version__, __version__)


@PAIRS
def test_should_render_the_published_images_from_the_registry(
    pushed: dict[str, str], registry: LocalRegistry, home: Path, pusher: str, reader: str
) -> None:
    """`helm template oci://…` with the prod values deploys the images the release publishes,
    tagged with the project version."""
    chart = published(registry, pusher)
    output = helm(reader, home, "template", "fast-note", *chart, "-f", str(PROD_VALUES))
    assert images_in(output) == PUBLISHED


@pytest.mark.parametrize("pusher", MAJORS)
def test_should_install_from_the_registry(
    pushed: dict[str, str], registry: LocalRegistry, home: Path, pusher: str
) -> None:
    """`helm install oci://…` (Helm 4, `--dry-run=client`: no cluster; Helm 3 needs one even for
    a client dry run, so tests/e2e installs from the registry into the local cluster with both)."""
    chart = published(registry, pusher)
    prod = ["-n", "fast-note-prod", "-f", str(PROD_VALUES)]
    output = helm("helm4", home, "install", "fast-note", *chart, *prod, "--dry-run=client")
    assert "STATUS: pending-install" in output
    assert f"helm.sh/chart: fast-note-{__version__}" in output
    assert images_in(output) == PUBLISHED
