"""The test infrastructure itself: the control plane's controllers and the node agent.

Hand-written Pods, Jobs and Deployments with trivial commands, so a failure here points at
the infrastructure, not at the chart or the migrator.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from testkit.database import Database
from testkit.harness import Cluster, Images, Kube, migrate, pod_ready

DB_ENV = "{name: DATABASE_URL, valueFrom: {secretKeyRef: {name: fast-note-db, key: database-url}}}"


@pytest.fixture(autouse=True)
def _local_only(cluster: Cluster) -> None:
    if cluster.local is None:
        pytest.skip("tests of the node agent: local control plane only")


def test_job_runs_init_container_then_main_with_volumes_and_env(
    kube: Kube, cluster: Cluster
) -> None:
    """A Job's pod runs its init container, then its container; emptyDir, Secret and
    ConfigMap volumes and env from literals, secretKeyRef, configMapKeyRef and envFrom work."""
    kube.kubectl("create", "secret", "generic", "s", "--from-literal=password=hunter2")
    kube.kubectl(
        "create", "configmap", "c", "--from-literal=greeting=hello", "--from-literal=MODE=test"
    )
    kube.apply("""
apiVersion: batch/v1
kind: Job
metadata: {name: hello}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      volumes:
        - {name: scratch, emptyDir: {}}
        - {name: secret, secret: {secretName: s}}
        - {name: config, configMap: {name: c, items: [{key: greeting, path: sub/greeting.txt}]}}
      initContainers:
        - name: fill
          image: busybox
          command: [sh, -c, 'echo "$(GREETING) from init" > /scratch/msg']
          env: [{name: GREETING, valueFrom: {configMapKeyRef: {name: c, key: greeting}}}]
          volumeMounts: [{name: scratch, mountPath: /scratch}]
      containers:
        - name: main
          image: busybox
          command: [sh, -c]
          args: ['cat /scratch/msg /etc/s/password /etc/c/sub/greeting.txt; echo "$PW $MODE $POD"']
          env:
            - {name: PW, valueFrom: {secretKeyRef: {name: s, key: password}}}
            - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
          envFrom: [{configMapRef: {name: c}}]
          volumeMounts:
            - {name: scratch, mountPath: /scratch}
            - {name: secret, mountPath: /etc/s, readOnly: true}
            - {name: config, mountPath: /etc/c}
""")
    job = kube.wait_for(
        "the Job to complete",
        lambda: j if (j := kube.get("job", "hello")).get("status", {}).get("succeeded") else None,
    )
    assert job["status"]["succeeded"] == 1
    pod = kube.items("pods", "job-name=hello")[0]
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    name = pod["metadata"]["name"]
    logs = cluster.container_logs(kube.namespace)
    # (the Secret and ConfigMap files have no final newline)
    assert logs[f"{name}/main"].splitlines() == [
        "hello from init",
        f"hunter2hellohunter2 test {name}",
    ]


def test_failed_job_reports_exit_code_and_keeps_its_pod(kube: Kube) -> None:
    """restartPolicy Never: the container's exit code is reported, the pod is Failed and the
    Job controller marks the Job failed after backoffLimit."""
    kube.apply("""
apiVersion: batch/v1
kind: Job
metadata: {name: boom}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{name: main, image: busybox, command: [sh, -c, 'echo failing; exit 7']}]
""")
    kube.wait_for(
        "the Job to fail",
        lambda: any(
            c["type"] == "Failed" and c["status"] == "True"
            for c in kube.get("job", "boom").get("status", {}).get("conditions", [])
        ),
    )
    pod = kube.items("pods", "job-name=boom")[0]
    assert pod["status"]["phase"] == "Failed"
    state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["exitCode"] == 7
    assert state["reason"] == "Error"


def test_deployment_pods_become_ready_when_the_app_can_read_the_database(
    kube: Kube, database: Database, images: Images
) -> None:
    """The stand-in app answers 503 until ``_prisma_migrations`` exists, the readiness probe
    follows, and the Deployment becomes available once the schema is there."""
    tag = images.app("infra-1", {"20240101000000_init": "CREATE TABLE t (id int);"})
    kube.apply(f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
        - name: app
          image: fast-note:{tag}
          ports: [{{name: http, containerPort: 3000}}]
          env: [{DB_ENV}]
          readinessProbe: {{httpGet: {{path: /healthz, port: http}}, periodSeconds: 5}}
""")
    pods = kube.wait_for(
        "2 running pods",
        lambda: (
            p
            if len(
                p := [
                    x
                    for x in kube.items("pods", "app=web")
                    if x["status"].get("phase") == "Running"
                ]
            )
            == 2
            else None
        ),
    )
    assert not any(pod_ready(p) for p in pods)
    migrate(database, "deploy", migrations=images.migrations_dir(tag))
    kube.wait_for(
        "the Deployment to be available",
        lambda: kube.get("deployment", "web").get("status", {}).get("readyReplicas") == 2,
    )
    ports = {}
    for pod in kube.items("pods", "app=web"):
        assert pod["status"]["podIP"] == "127.0.0.1"
        ports[pod["metadata"]["name"]] = pod
    assert len(ports) == 2


def test_init_container_failure_is_retried_with_backoff(kube: Kube) -> None:
    """restartPolicy Always: a failed init container is restarted (restartCount grows) and
    the pod starts once it succeeds; deleting the pod stops its processes."""
    kube.apply("""
apiVersion: v1
kind: Pod
metadata: {name: flaky}
spec:
  volumes: [{name: data, emptyDir: {}}]
  initContainers:
    - name: once
      image: busybox
      command: [sh, -c, 'test -f /data/seen || { touch /data/seen; echo first try fails; exit 1; }']
      volumeMounts: [{name: data, mountPath: /data}]
  containers:
    - {name: main, image: busybox, command: [sleep, "3600"]}
""")
    pod = kube.wait_for(
        "the pod to be ready",
        lambda: p if pod_ready(p := kube.get("pod", "flaky")) else None,
        timeout=30,
    )
    assert pod["status"]["initContainerStatuses"][0]["restartCount"] == 1
    kube.kubectl("delete", "pod", "flaky", "--wait=true", "--timeout=30s")


def test_standin_app_reports_image_and_migrations(
    kube: Kube, database: Database, images: Images, cluster: Cluster
) -> None:
    """The stand-in serves on the PORT the agent gives it and tells which image it runs."""
    tag = images.app("infra-2", {"20240101000000_init": "CREATE TABLE t (id int);"})
    migrate(database, "deploy", migrations=images.migrations_dir(tag))
    kube.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: app}}
spec:
  containers:
    - name: app
      image: registry.example.com/acme/fast-note:{tag}
      ports: [{{name: http, containerPort: 3000}}]
      env: [{DB_ENV}]
      readinessProbe: {{httpGet: {{path: /ready, port: 3000}}}}
""")
    kube.wait_for("the pod to be ready", lambda: pod_ready(kube.get("pod", "app")), timeout=30)
    port = cluster.pod_ports(kube.namespace, "app")["http"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/") as resp:
        body = json.loads(resp.read())
    assert body["image"].endswith(f"fast-note:{tag}")
    assert body["applied_migrations"] == ["20240101000000_init"]
    assert body["missing_migrations"] == []
