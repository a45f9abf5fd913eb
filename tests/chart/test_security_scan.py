"""A Kubernetes security scan (checkov) of the prod render shows nothing beyond the findings
accepted, each with its reason, in charts/fast-note/ci/security-scan-accepted.yaml; every accepted
finding still occurs (the list stays honest); docs/chart.md's "Security scan" section is generated
from that file.

checkov lives in its own virtualenv .tools/checkov (`make scan-tools`, a prerequisite of
`make test` and `make chart-test`).
"""

from __future__ import annotations

import re

import pytest

from tools import security_scan
from tools.fetch_tools import PINS

from .render import CHART

DIGEST = "sha256:" + "0" * 64


@pytest.fixture(scope="module")
def policy() -> security_scan.Policy:
    return security_scan.load_policy()


def _scan(policy: security_scan.Policy, extra: tuple[str, ...] = ()) -> security_scan.ScanResult:
    if security_scan.installed_version() != PINS["checkov"].version:
        pytest.fail(
            f"checkov {PINS['checkov'].version} missing in .tools/checkov: run `make scan-tools`",
            pytrace=False,
        )
    return security_scan.run_scan(policy, extra=extra)


@pytest.fixture(scope="module")
def scan(policy: security_scan.Policy) -> security_scan.ScanResult:
    """One checkov run over every render of the policy, with Helm 3 and Helm 4."""
    return _scan(policy)


def test_the_scanner_is_the_pinned_checkov(scan: security_scan.ScanResult) -> None:
    assert scan.version == PINS["checkov"].version


def test_nothing_beyond_the_accepted_findings(
    policy: security_scan.Policy, scan: security_scan.ScanResult, helm: str
) -> None:
    unexpected = sorted(scan.findings_of(helm) - policy.accepted_findings())
    assert not unexpected, (
        "fix the chart, or accept these with their reason in "
        f"{security_scan.ACCEPTED.relative_to(security_scan.ROOT)} (then `make scan-docs`): "
        + "; ".join(f"{c} {r}: {scan.titles[c]}" for c, r in unexpected)
    )


def test_every_accepted_finding_still_occurs(
    policy: security_scan.Policy, scan: security_scan.ScanResult, helm: str
) -> None:
    stale = sorted(policy.accepted_findings() - scan.findings_of(helm))
    assert not stale, f"no longer found, remove from the accepted list: {stale}"


def test_accepted_titles_are_checkov_s(
    policy: security_scan.Policy, scan: security_scan.ScanResult
) -> None:
    assert {a.check: a.title for a in policy.accepted} == {
        a.check: scan.titles.get(a.check) for a in policy.accepted
    }


def test_checkov_checked_every_object_it_has_checks_for(
    policy: security_scan.Policy, scan: security_scan.ScanResult
) -> None:
    """No parsing error, no object of a kind checkov knows left unchecked, and the kinds it has
    no check for (documented) are exactly those of its registry."""
    assert security_scan.coverage_problems(policy, scan) == []
    assert scan.objects and all(scan.scanned[name] for name in scan.objects)


def test_every_kind_the_chart_can_render_is_scanned(scan: security_scan.ScanResult) -> None:
    template_kinds = {
        match
        for path in (CHART / "templates").rglob("*.yaml")
        for match in re.findall(r"^kind: *(\w+)", path.read_text(), re.MULTILINE)
    }
    scanned_kinds = {o.split("/")[0] for objects in scan.objects.values() for o in objects}
    assert template_kinds <= scanned_kinds


def test_digests_clear_the_image_findings(policy: security_scan.Policy) -> None:
    """The reason given for CKV_K8S_15 and CKV_K8S_43: deployed with digests, both pass."""
    with_digests = _scan(
        policy,
        ("--set", f"image.digest={DIGEST}", "--set", f"migration.image.digest={DIGEST}"),
    )
    checks = {check for found in with_digests.findings.values() for check, _ in found}
    assert {"CKV_K8S_15", "CKV_K8S_43"} & checks == set()
    assert checks == {a.check for a in policy.accepted} - {"CKV_K8S_15", "CKV_K8S_43"}


def test_the_docs_section_is_generated_from_the_accepted_list(
    policy: security_scan.Policy,
) -> None:
    drift = security_scan.docs_drift(policy)
    assert not drift, "run `make scan-docs`:\n" + "\n".join(drift)


def test_the_accepted_list_is_well_formed(policy: security_scan.Policy) -> None:
    assert policy.accepted and all(a.reason for a in policy.accepted)
    assert policy.renders[0].name == "prod"
    assert policy.renders[0].values == ("values/prod.yaml",) and not policy.renders[0].set
