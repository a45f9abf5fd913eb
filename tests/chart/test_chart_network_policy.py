"""templates/app/networkpolicy.yaml, migration/networkpolicy.yaml and
migration/contract-networkpolicy.yaml: app ingress from the configured peers, egress to DNS and the
database for every pod, to the API server for the contract Job only."""

from __future__ import annotations

import pytest

from .render import (
    VALUES_FILES,
    annotations,
    component,
    of_kind,
    only,
    render_chart,
    strategy_values,
)

PROD = [f for f in VALUES_FILES if f.name == "prod.yaml"]
CIDRS = ["10.20.0.0/16"]
NP = {"enabled": True, "database": {"cidrs": CIDRS}}


def _values(strategy: str = "hook", network: dict | None = None, **migration) -> dict:
    return {**strategy_values(strategy, **migration), "networkPolicy": network or NP}


def _named(docs, name: str) -> dict:
    return only([d for d in of_kind(docs, "NetworkPolicy") if d["metadata"]["name"] == name])


def _pod_labels(doc: dict) -> dict:
    if doc["kind"] == "Pod":
        return doc["metadata"]["labels"]
    return doc["spec"]["template"]["metadata"]["labels"]


def _selects(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        assert expr["operator"] == "In"
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def _egress_ports(policies: list[dict]) -> set[tuple[int, str]]:
    return {
        (p["port"], p["protocol"])
        for np in policies
        for rule in np["spec"].get("egress") or []
        for p in rule["ports"]
    }


class TestNetworkPolicy:
    def test_should_be_off_by_default(self, helm):
        assert not of_kind(render_chart(strategy_values("hook"), helm=helm), "NetworkPolicy")

    def test_should_let_app_pods_take_traffic_on_their_port_only(self, helm):
        peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}
        network = {**NP, "ingressFrom": [peer]}
        app = _named(render_chart(_values(network=network), helm=helm), "fast-note")
        spec = app["spec"]
        assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "app"
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        assert spec["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}], "from": [peer]}]

    def test_should_let_every_pod_reach_dns_and_the_database_only(self, helm):
        docs = render_chart(_values(contract={"enabled": True}), helm=helm)
        policies = of_kind(docs, "NetworkPolicy")
        pods = [d for d in docs if d["kind"] in ("Deployment", "Job", "Pod")]
        assert len(pods) == 4  # app, hook Job, contract Job, test Pod
        for pod in pods:
            labels = _pod_labels(pod)
            selecting = [p for p in policies if _selects(p["spec"]["podSelector"], labels)]
            name = pod["metadata"]["name"]
            assert selecting, f"{name} is selected by no NetworkPolicy"
            allowed = _egress_ports(selecting)
            assert {(53, "UDP"), (53, "TCP"), (5432, "TCP")} <= allowed, name
            api = name == "fast-note-migrate-contract"
            assert ((443, "TCP") in allowed) == api, name
            db_rules = [
                r
                for p in selecting
                for r in p["spec"]["egress"]
                if r["ports"] == [{"port": 5432, "protocol": "TCP"}]
            ]
            assert all(r["to"] == [{"ipBlock": {"cidr": CIDRS[0]}}] for r in db_rules), name

    def test_should_exist_before_the_pre_install_hook(self, helm):
        docs = render_chart(_values(), helm=helm)
        hook = _named(docs, "fast-note-migration-hook")
        job = only(component(docs, "Job", "migration"))
        assert annotations(hook)["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert int(annotations(hook)["helm.sh/hook-weight"]) < int(
            annotations(job)["helm.sh/hook-weight"]
        )
        # The ordinary copy serves upgrades, `helm test` and strategy job.
        plain = _named(docs, "fast-note-migration")
        assert not annotations(plain)
        assert plain["spec"] == hook["spec"]
        assert plain["spec"]["ingress"] == []

    def test_should_be_an_argocd_presync_hook_in_argocd_mode(self, helm):
        docs = render_chart(_values("job", argocd=True), helm=helm)
        hook = _named(docs, "fast-note-migration-hook")
        assert annotations(hook)["argocd.argoproj.io/hook"] == "PreSync"
        assert "helm.sh/hook" not in annotations(hook)

    def test_should_open_the_api_server_to_the_contract_job_only(self, helm):
        network = {**NP, "apiServer": {"cidrs": ["172.20.0.1/32"], "ports": [443]}}
        docs = render_chart(_values(network=network, contract={"enabled": True}), helm=helm)
        api = _named(docs, "fast-note-migrate-contract")
        assert annotations(api)["helm.sh/hook"] == "post-install,post-upgrade"
        assert api["spec"]["egress"] == [
            {
                "ports": [{"port": 443, "protocol": "TCP"}],
                "to": [{"ipBlock": {"cidr": "172.20.0.1/32"}}],
            }
        ]
        selected = [
            d["metadata"]["name"]
            for d in docs
            if d["kind"] in ("Deployment", "Job", "Pod")
            and _selects(api["spec"]["podSelector"], _pod_labels(d))
        ]
        assert selected == ["fast-note-migrate-contract"]

    @pytest.mark.parametrize(
        ("strategy", "expected"),
        [
            ("initContainer", {"fast-note", "fast-note-migration"}),
            ("job", {"fast-note", "fast-note-migration"}),
            ("none", {"fast-note", "fast-note-migration"}),
        ],
    )
    def test_should_cover_each_strategy(self, helm, strategy, expected):
        docs = render_chart(_values(strategy), helm=helm)
        assert {d["metadata"]["name"] for d in of_kind(docs, "NetworkPolicy")} == expected

    def test_should_render_no_migrator_policy_without_migrator_pods(self, helm):
        values = {"migration": {"strategy": "none"}, "tests": {"enabled": False}}
        values["database"] = {"existingSecret": "s"}
        docs = render_chart({**values, "networkPolicy": NP}, helm=helm)
        assert [d["metadata"]["name"] for d in of_kind(docs, "NetworkPolicy")] == ["fast-note"]

    def test_should_be_on_in_prod(self, helm):
        docs = render_chart(helm=helm, values_files=PROD)
        names = {d["metadata"]["name"] for d in of_kind(docs, "NetworkPolicy")}
        assert names == {
            "fast-note",
            "fast-note-migration",
            "fast-note-migration-hook",
            "fast-note-migrate-contract",
        }
