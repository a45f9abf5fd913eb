"""The chart as a dependency of an umbrella chart: Helm passes `global` to it (the strict schema
allows it), and global.imageRegistry / global.imagePullSecrets apply as in Bitnami charts."""

from __future__ import annotations

import functools
import json
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from .render import (
    CHART,
    HELM_BIN,
    KUBE_VERSIONS,
    NAMESPACE,
    RenderError,
    _validate,
    containers,
    pod_specs,
    render_chart,
    strategy_values,
)

CHART_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
UMBRELLA_VALUES = {
    "global": {
        "imageRegistry": "registry.example.com",
        "imagePullSecrets": [{"name": "registry-creds"}],
        "storageClass": "gp3",  # another chart's global: must pass the strict schema
    },
    "fast-note": {
        "database": {"existingSecret": "fast-note-secrets"},
        "migration": {"strategy": "hook", "contract": {"enabled": True}},
        "imagePullSecrets": ["team-creds", "registry-creds"],
    },
}


@functools.cache
def _umbrella_render(helm: str) -> str:
    """`helm dependency build` (offline: file:// only) then `helm template` of an umbrella."""
    binary = str(HELM_BIN[helm])
    with tempfile.TemporaryDirectory() as tmp:
        umbrella = Path(tmp) / "umbrella"
        umbrella.mkdir()
        chart_yaml = {
            "apiVersion": "v2",
            "name": "umbrella",
            "version": "1.0.0",
            "dependencies": [
                {
                    "name": "fast-note",
                    "version": CHART_VERSION,
                    "repository": f"file://{CHART}",
                }
            ],
        }
        (umbrella / "Chart.yaml").write_text(yaml.safe_dump(chart_yaml))
        (umbrella / "values.yaml").write_text(yaml.safe_dump(UMBRELLA_VALUES))
        build = [binary, "dependency", "build", str(umbrella), "--skip-refresh"]
        proc = subprocess.run(build, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert list((umbrella / "charts").glob("fast-note-*.tgz")), "dependency not vendored"
        cmd = [binary, "template", "shop", str(umbrella), "--namespace", NAMESPACE]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout


def _docs(helm: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(_umbrella_render(helm)) if d]


class TestUmbrellaChart:
    def test_should_render_valid_objects_as_a_dependency(self, helm):
        docs = _docs(helm)
        assert {"Deployment", "Job", "Pod", "Role"} <= {d["kind"] for d in docs}
        for doc in docs:
            for version in KUBE_VERSIONS:
                _validate(json.dumps(doc, sort_keys=True), version)
            assert doc["metadata"]["namespace"] == NAMESPACE

    def test_should_pull_every_image_from_the_global_registry(self, helm):
        specs = list(pod_specs(_docs(helm)))
        assert len(specs) == 4  # app, hook Job, contract Job, test Pod
        images = {c["image"] for _, spec in specs for c in containers(spec)}
        assert images == {
            f"registry.example.com/fast-note/fast-note-example:{CHART_VERSION}",
            f"registry.example.com/fast-note/fast-note-migrate:{CHART_VERSION}",
        }
        for name, spec in specs:
            assert spec["imagePullSecrets"] == [
                {"name": "registry-creds"},
                {"name": "team-creds"},
            ], name


class TestImageRegistry:
    def test_should_prefix_each_image_with_its_own_registry(self, helm):
        values = strategy_values("hook", image={"registry": "mirror.example.com/ops"})
        values["image"] = {"registry": "mirror.example.com/apps"}
        images = {
            c["image"]
            for _, spec in pod_specs(render_chart(values, helm=helm))
            for c in containers(spec)
        }
        assert images == {
            f"mirror.example.com/apps/fast-note/fast-note-example:{CHART_VERSION}",
            f"mirror.example.com/ops/fast-note/fast-note-migrate:{CHART_VERSION}",
        }

    def test_should_let_the_global_registry_win(self, helm):
        values = strategy_values("hook")
        values["image"] = {"registry": "mirror.example.com", "digest": "sha256:" + "b" * 64}
        values["global"] = {"imageRegistry": "registry.example.com:5000"}
        images = {
            c["image"]
            for _, spec in pod_specs(render_chart(values, helm=helm))
            for c in containers(spec)
        }
        assert f"registry.example.com:5000/fast-note/fast-note-example@sha256:{'b' * 64}" in images
        assert f"registry.example.com:5000/fast-note/fast-note-migrate:{CHART_VERSION}" in images

    @pytest.mark.parametrize("registry", ["https://registry.example.com", "a registry"])
    def test_should_refuse_a_registry_that_is_no_host(self, helm, registry):
        with pytest.raises(RenderError, match="imageRegistry"):
            render_chart(
                {**strategy_values("hook"), "global": {"imageRegistry": registry}}, helm=helm
            )
