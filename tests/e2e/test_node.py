"""The local node itself (``testkit/kube/node.py``): it runs what Kubernetes promises, and it
leaves the machine as it found it."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from testkit.harness import Cluster, Kube
from testkit.kube import images
from testkit.kube.node import POD_SUBNET, LocalNode, cgroup_hierarchies, read_sysctls

pytestmark = pytest.mark.usefixtures("local_node")


@pytest.fixture
def local_node(cluster: Cluster) -> LocalNode:
    node = cluster.local.local_node if cluster.local is not None else None
    if node is None:
        pytest.skip("tests of the local node")
    return node


def links(netns: str | None = None) -> dict[str, list[str]]:
    """Interface name -> its IPv4 addresses, in the host's or a network namespace."""
    prefix = ["nsenter", f"--net={netns}"] if netns else []
    out = subprocess.run([*prefix, "ip", "-j", "-4", "addr"], check=True, capture_output=True)
    return {
        link["ifname"]: [a["local"] for a in link.get("addr_info", [])]
        for link in json.loads(out.stdout)
    }


def restricted_pod(name: str, image: str, command: list[str], **security: Any) -> str:
    context = {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
        **security,
    }
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "main",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "command": command,
                        "securityContext": context,
                    }
                ],
            },
        }
    )


def test_pod_gets_an_address_on_the_node_bridge_and_the_host_network_is_untouched(
    kube: Kube, local_node: LocalNode
) -> None:
    """A pod's address is on the node's own bridge, inside the node's network namespace;
    the host has no bridge, no pod address, and its kubelet sysctls have their old values."""
    host_before = links()
    kube.apply(restricted_pod("net", images.migrator_image(), ["fast-note-migrate", "--version"]))
    pod = kube.wait_for(
        "the pod to finish",
        lambda: p if (p := kube.get("pod", "net"))["status"].get("phase") == "Succeeded" else None,
    )
    assert pod["status"]["podIP"].startswith(POD_SUBNET.rsplit(".", 1)[0] + ".")
    inside = links(str(local_node.netns))
    assert "10.244.0.1" in inside.get("cni0", []), inside
    assert links() == host_before and "cni0" not in host_before
    assert read_sysctls() == local_node.host_sysctls, "the kubelet changed the host's sysctls"


def test_job_with_the_charts_security_context_runs_the_migrator_image(kube: Kube) -> None:
    """The migrator image as uid 10001 with a read-only root, no capabilities and the
    runtime's seccomp profile: it runs and prints its version."""
    kube.apply(
        restricted_pod("version", images.migrator_image(), ["fast-note-migrate", "--version"])
    )
    kube.wait_for(
        "the pod to finish",
        lambda: kube.get("pod", "version")["status"].get("phase") in ("Succeeded", "Failed"),
    )
    assert kube.get("pod", "version")["status"]["phase"] == "Succeeded"
    assert "fast-note-migrate" in kube.kubectl("logs", "version").stdout


def test_run_as_non_root_refuses_an_image_that_runs_as_root(kube: Kube) -> None:
    """runAsNonRoot without runAsUser on an image whose user is root: the kubelet refuses to
    create the container (CreateContainerConfigError), as on any real node."""
    manifest = json.loads(restricted_pod("root", images.PAUSE_IMAGE, ["/pause"]))
    del manifest["spec"]["containers"][0]["securityContext"]["runAsUser"]
    del manifest["spec"]["containers"][0]["securityContext"]["runAsGroup"]
    kube.apply(json.dumps(manifest))

    def reason() -> str | None:
        statuses = kube.get("pod", "root")["status"].get("containerStatuses", [])
        waiting = statuses[0]["state"].get("waiting", {}) if statuses else {}
        return waiting.get("reason") if waiting.get("reason") != "ContainerCreating" else None

    assert kube.wait_for("the container's waiting reason", reason) == "CreateContainerConfigError"


def test_a_stopped_node_leaves_no_process_cgroup_mount_or_link(cluster: Cluster) -> None:
    """A second node (its own namespaces, containerd root and cgroups) runs a pod and is
    stopped: no process of it is left, its cgroups and the mounts it made are gone, the
    host's links are as before."""
    assert cluster.local is not None
    mounts_before = Path("/proc/self/mountinfo").read_text()
    links_before = links()
    with tempfile.TemporaryDirectory(prefix="fast-note-e2e-node2-") as tmp:
        node = cluster.local.second_node(Path(tmp), name="second")
        try:
            kube = Kube(cluster.kubeconfig, "default")
            pod = json.loads(restricted_pod("on-second", images.PAUSE_IMAGE, ["/pause"]))
            pod["spec"]["nodeName"] = "second"
            pod["metadata"]["name"] = f"on-second-{os.getpid()}"
            kube.apply(json.dumps(pod))
            kube.wait_for(
                "the pod on the second node to run",
                lambda: (
                    kube.get("pod", pod["metadata"]["name"])["status"].get("phase") == "Running"
                ),
            )
            mnt = os.readlink(f"/proc/{node.holder_pid}/ns/mnt")
            cgroups = [h / node.cgroup_name for h in cgroup_hierarchies()]
            assert all(p.exists() for p in cgroups)
        finally:
            node.stop()
            kube.kubectl(
                "delete", "pod", pod["metadata"]["name"], "--force", "--grace-period=0", check=False
            )
            kube.kubectl("delete", "node", "second", check=False)
    left = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _mnt(p) == mnt]
    assert left == [], f"processes left in the node's mount namespace: {left}"
    assert not any(p.exists() for p in cgroups), "cgroups left"
    assert Path("/proc/self/mountinfo").read_text() == mounts_before
    assert links() == links_before


def _mnt(proc: Path) -> str:
    try:
        return os.readlink(proc / "ns" / "mnt")
    except OSError:
        return ""
