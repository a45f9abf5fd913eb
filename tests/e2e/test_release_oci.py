"""The chart installed from an OCI registry, as users of a release install it: packaged as
`make package` packages it, pushed to Debian's docker-registry on loopback, then `helm upgrade
--install oci://…` with Helm 3 and Helm 4 on the local cluster, and `helm test`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fast_note_migrate import __version__
from testkit import catalogue
from testkit.database import Database
from testkit.harness import RELEASE, Helm, Kube, example_migrations
from testkit.harness import release_values as values
from testkit.registry import DOCKER_REGISTRY, LocalRegistry
from tools import release


@pytest.mark.parametrize("helm_major", ["helm3", "helm4"])
def test_install_from_an_oci_registry_migrates_and_helm_test_passes(
    helm: Helm, kube: Kube, database: Database, tmp_path: Path
) -> None:
    """`helm push` the packaged chart, `helm upgrade --install oci://…`: the hook Job
    migrates, the release records the chart of the project version, `helm test` passes."""
    if not DOCKER_REGISTRY.exists():
        pytest.skip(f"{DOCKER_REGISTRY} is not installed: apt-get install docker-registry")
    (tmp_path / "dist").mkdir()
    (tmp_path / "registry").mkdir()
    chart = release.package_chart(tmp_path / "dist")
    values_file = tmp_path / "values.json"
    values_file.write_text(json.dumps(values("hook", catalogue.CURRENT)))
    with LocalRegistry(tmp_path / "registry") as registry:
        helm("push", str(chart), f"oci://{registry.host}/charts", "--plain-http")
        reference = f"oci://{registry.host}/charts/fast-note"
        helm(
            *("upgrade", "--install", RELEASE, reference, "--version", __version__),
            *("--plain-http", "-f", str(values_file), "--wait", "--timeout", "3m"),
        )
    [listed] = json.loads(helm("list", "-o", "json").stdout)
    assert (listed["chart"], listed["status"]) == (f"fast-note-{__version__}", "deployed")
    applied = sorted(r.name for r in database.history() if r.applied)
    assert applied == sorted(example_migrations())
    result = helm.test(RELEASE)
    assert "[ok] no pending migration" in result.stdout + result.stderr, result
    assert len([p for p in kube.app_pods(RELEASE) if p["status"].get("phase") == "Running"]) == 2
