"""templates/_pod.tpl: one migrator container, one copy-migrations init container and one pod
security context, shared by the Deployment, the Jobs and the test Pod."""

from __future__ import annotations

import copy

from .render import MIGRATOR_IMAGE, containers, pod_specs, render_chart, strategy_values

MIGRATOR_NAMES = {"migrate", "wait-for-migrations", "verify", "migrate-contract"}


def _normalised(ctr: dict) -> dict:
    """A migrator container without what legitimately differs: name, args and the Secret name."""
    ctr = copy.deepcopy(ctr)
    ctr.pop("name")
    ctr.pop("args")
    for var in ctr["env"]:
        if var["name"] == "DATABASE_URL":
            var["valueFrom"]["secretKeyRef"].pop("name")
    return ctr


def _all(values: dict, helm: str):
    docs = render_chart(values, helm=helm)
    return [(name, spec) for name, spec in pod_specs(docs)]


class TestPodFragments:
    def test_should_render_every_migrator_container_alike(self, helm):
        found = []
        for values in (
            strategy_values("hook", contract={"enabled": True}),
            strategy_values("initContainer"),
            strategy_values("job"),
        ):
            for _, spec in _all(values, helm):
                found += [c for c in containers(spec) if c["name"] in MIGRATOR_NAMES]
        assert {c["name"] for c in found} == MIGRATOR_NAMES
        first = _normalised(found[0])
        assert all(_normalised(c) == first for c in found)
        assert first["image"] == MIGRATOR_IMAGE

    def test_should_copy_migrations_the_same_way_everywhere(self, helm):
        copies = [
            c
            for _, spec in _all(strategy_values("job"), helm)
            for c in containers(spec)
            if c["name"] == "copy-migrations"
        ]
        assert len(copies) == 3  # Deployment, Job, test Pod
        assert all(c == copies[0] for c in copies)

    def test_should_share_the_pod_security_context_and_tmp_volume(self, helm):
        values = {
            **strategy_values("hook"),
            "podSecurityContext": {"runAsUser": 20000},
            "tmpSizeLimit": "32Mi",
        }
        specs = _all(values, helm)
        assert len(specs) == 3  # Deployment, hook Job, test Pod
        for name, spec in specs:
            assert spec["securityContext"]["runAsUser"] == 20000, name
            tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
            assert tmp == {"name": "tmp", "emptyDir": {"sizeLimit": "32Mi"}}, name

    def test_should_pass_image_pull_secrets_to_every_pod(self, helm):
        specs = _all({**strategy_values("hook"), "imagePullSecrets": ["registry-creds"]}, helm)
        assert all(spec["imagePullSecrets"] == [{"name": "registry-creds"}] for _, spec in specs)

    def test_should_pin_the_migrator_image_by_digest(self, helm):
        digest = "sha256:" + "a" * 64
        specs = _all(strategy_values("hook", image={"digest": digest}), helm)
        images = {
            c["image"] for _, spec in specs for c in containers(spec) if c["name"] in MIGRATOR_NAMES
        }
        assert images == {f"fast-note-migrate@{digest}"}
