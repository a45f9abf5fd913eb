"""templates/app/horizontalpodautoscaler.yaml, poddisruptionbudget.yaml and ingress.yaml: optional
objects whose API version follows the cluster (.Capabilities), down to the Kubernetes 1.20 API
server of the end-to-end tests."""

from __future__ import annotations

import pytest

from .render import VALUES_FILES, db, only, render_chart

OLD = "1.20.2"


def _one(docs, kind):
    return only([d for d in docs if d["kind"] == kind])


class TestHorizontalPodAutoscaler:
    values = db(
        autoscaling={
            "enabled": True,
            "minReplicas": 2,
            "maxReplicas": 6,
            "targetMemoryUtilizationPercentage": 70,
        }
    )

    def test_should_use_autoscaling_v2_on_current_clusters(self, helm):
        hpa = _one(render_chart(self.values, helm=helm), "HorizontalPodAutoscaler")
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "fast-note",
        }
        assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu", "memory"]

    def test_should_fall_back_to_v2beta2_on_kubernetes_1_20(self, helm):
        hpa = _one(
            render_chart(self.values, helm=helm, kube_version=OLD), "HorizontalPodAutoscaler"
        )
        assert hpa["apiVersion"] == "autoscaling/v2beta2"

    def test_should_follow_the_cluster_api_list(self, helm):
        docs = render_chart(
            self.values, helm=helm, api_versions=["autoscaling/v2beta2/HorizontalPodAutoscaler"]
        )
        assert _one(docs, "HorizontalPodAutoscaler")["apiVersion"] == "autoscaling/v2beta2"
        docs = render_chart(
            self.values,
            helm=helm,
            kube_version=OLD,
            api_versions=["autoscaling/v2/HorizontalPodAutoscaler"],
        )
        assert _one(docs, "HorizontalPodAutoscaler")["apiVersion"] == "autoscaling/v2"

    def test_should_be_off_by_default(self, helm):
        assert not [
            d for d in render_chart(db(), helm=helm) if d["kind"] == "HorizontalPodAutoscaler"
        ]


class TestPodDisruptionBudget:
    values = db(podDisruptionBudget={"enabled": True, "minAvailable": 2}, replicaCount=3)

    def test_should_use_policy_v1_on_current_clusters(self, helm):
        pdb = _one(render_chart(self.values, helm=helm), "PodDisruptionBudget")
        assert pdb["apiVersion"] == "policy/v1"
        assert pdb["spec"]["minAvailable"] == 2
        assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "app"

    def test_should_let_one_pod_go_at_a_time_by_default(self, helm):
        """minAvailable: 2 with 2 replicas blocked every node drain: the default is
        maxUnavailable: 1, and a drain may also evict unready pods."""
        pdb = _one(
            render_chart(db(podDisruptionBudget={"enabled": True}), helm=helm),
            "PodDisruptionBudget",
        )
        assert pdb["spec"]["maxUnavailable"] == 1
        assert "minAvailable" not in pdb["spec"]
        assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"

    @pytest.mark.parametrize(
        ("kube_version", "api_versions"),
        [("1.25.0", ()), (OLD, ()), ("1.29.0", ("policy/v1beta1/PodDisruptionBudget",))],
    )
    def test_should_leave_out_the_unhealthy_pod_policy_where_unsupported(
        self, helm, kube_version, api_versions
    ):
        pdb = _one(
            render_chart(
                db(podDisruptionBudget={"enabled": True}),
                helm=helm,
                kube_version=kube_version,
                api_versions=api_versions,
            ),
            "PodDisruptionBudget",
        )
        assert "unhealthyPodEvictionPolicy" not in pdb["spec"]
        assert pdb["spec"]["maxUnavailable"] == 1

    def test_should_drain_prod_one_pod_at_a_time(self, helm):
        prod = [f for f in VALUES_FILES if f.name == "prod.yaml"]
        pdb = _one(render_chart(helm=helm, values_files=prod), "PodDisruptionBudget")
        assert pdb["spec"] == {
            "maxUnavailable": 1,
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
            "selector": pdb["spec"]["selector"],
        }

    def test_should_fall_back_to_v1beta1_on_kubernetes_1_20(self, helm):
        pdb = _one(render_chart(self.values, helm=helm, kube_version=OLD), "PodDisruptionBudget")
        assert pdb["apiVersion"] == "policy/v1beta1"

    def test_should_follow_the_cluster_api_list(self, helm):
        docs = render_chart(
            self.values, helm=helm, api_versions=["policy/v1beta1/PodDisruptionBudget"]
        )
        assert _one(docs, "PodDisruptionBudget")["apiVersion"] == "policy/v1beta1"
        docs = render_chart(
            self.values, helm=helm, kube_version=OLD, api_versions=["policy/v1/PodDisruptionBudget"]
        )
        assert _one(docs, "PodDisruptionBudget")["apiVersion"] == "policy/v1"

    def test_should_accept_max_unavailable_as_percentage(self, helm):
        values = db(
            podDisruptionBudget={"enabled": True, "minAvailable": "", "maxUnavailable": "25%"}
        )
        pdb = _one(render_chart(values, helm=helm), "PodDisruptionBudget")
        assert pdb["spec"] == {
            "maxUnavailable": "25%",
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
            "selector": pdb["spec"]["selector"],
        }


class TestIngress:
    values = db(
        ingress={
            "enabled": True,
            "className": "nginx",
            "host": "notes.example.test",
            "extraHosts": ["www.notes.example.test"],
            "tls": [{"secretName": "tls", "hosts": ["notes.example.test"]}],
        }
    )

    def test_should_route_every_host_to_the_service(self, helm):
        ing = _one(render_chart(self.values, helm=helm), "Ingress")
        assert ing["apiVersion"] == "networking.k8s.io/v1"
        assert ing["spec"]["ingressClassName"] == "nginx"
        assert [r["host"] for r in ing["spec"]["rules"]] == [
            "notes.example.test",
            "www.notes.example.test",
        ]
        backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend == {"name": "fast-note", "port": {"number": 80}}

    @pytest.mark.parametrize("kube_version", [OLD, None])
    def test_should_render_on_every_supported_cluster(self, helm, kube_version):
        assert _one(render_chart(self.values, helm=helm, kube_version=kube_version), "Ingress")
