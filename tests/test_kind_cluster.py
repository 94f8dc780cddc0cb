"""The grading namespace's fences, proven on a real API server (marked ``kind``; skipped without one).

What tests/test_kind_runtime.py shows on paper (the Role, the quota, the Pod Security labels) is
checked here against the cluster itself: the candidate's kubeconfig, used through the real
kubectl, can read and change its namespace only; the quota stops 50 replicas; a privileged pod is
refused by the API server where it enforces Pod Security (1.23+) and by the grader's own check
everywhere; NetworkPolicy is enforced where the CNI does (``TAKEHOME_EXPECT_NETWORKPOLICY=1``,
set by the GitHub workflow on a stock kind cluster); and ``takehome cleanup`` removes what a
grading that died left in the cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.runtimes import kube_namespace as kns, kube_ops as ops, kube_podsecurity as podsec
from harness.runtimes.kube_cluster import KindCluster

pytestmark = [pytest.mark.kind, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def cluster(kind_cluster: KindCluster) -> Iterator[tuple[KindCluster, Any, int | None]]:
    """The kind cluster, an admin API client, and the server's minor version."""
    private = Path(tempfile.mkdtemp(prefix="takehome-kube-test-"))
    try:
        api = ops.api_client(kind_cluster.kubeconfig(), private)
        _version, minor = ops.server_version(api)
        yield kind_cluster, api, minor
    finally:
        shutil.rmtree(private, ignore_errors=True)


@pytest.fixture
def namespace(cluster: tuple[KindCluster, Any, int | None], tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A grading namespace made exactly as the runtime makes it, and the candidate's kubeconfig for it."""
    kind, api, _minor = cluster
    run_id = uuid.uuid4().hex[:12]
    ns = kns.namespace_name(run_id)
    ops.create_objects(api, kns.namespace_objects(run_id, 8080, {"PORT": "8080"}, None, None))
    try:
        server, ca = kns.admin_endpoint(kind.kubeconfig())
        config = kns.candidate_kubeconfig(server, ca, ops.request_token(api, ns), ns, kind.context_name)
        yield ns, kns.write_private(tmp_path / "candidate.kubeconfig", config)
    finally:
        ops.delete_namespace(api, ns, 120)


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                          input=stdin, timeout=60)


def test_candidate_kubeconfig_reaches_its_namespace_only(namespace: tuple[str, Path]) -> None:
    ns, kc = namespace
    listing = kubectl(kc, "auth", "can-i", "--list")
    assert listing.returncode == 0, listing.stderr
    rules = listing.stdout
    assert "deployments.apps" in rules and "pods/exec" in rules
    # Nothing cluster-wide: no wildcard resource, no RBAC, no nodes, no namespaces.
    for forbidden in ("*.*", "clusterroles", "clusterrolebindings", "nodes ", "namespaces ", "rolebindings"):
        assert forbidden not in rules, (forbidden, rules)
    checks = {("create", "deployments", ns): "yes", ("create", "pods/exec", ns): "yes",
              ("get", "pods", "kube-system"): "no", ("get", "secrets", "default"): "no",
              ("create", "clusterrolebindings", ns): "no", ("create", "rolebindings", ns): "no",
              ("patch", "resourcequotas", ns): "no", ("delete", "networkpolicies", ns): "no",
              ("create", "namespaces", ns): "no", ("get", "nodes", ns): "no"}
    for (verb, resource, where), want in checks.items():
        got = kubectl(kc, "auth", "can-i", verb, resource, "-n", where).stdout.strip()
        assert got == want, f"can-i {verb} {resource} -n {where}: {got} (want {want})"
    denied = kubectl(kc, "get", "pods", "-n", "kube-system")
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()


def _deployment(name: str, replicas: int, **container: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "takehome-absent:never",
                                                           "imagePullPolicy": "Never", **container}]}}}}


def test_quota_stops_fifty_replicas(namespace: tuple[str, Path], cluster: tuple[KindCluster, Any, int | None]) -> None:
    ns, kc = namespace
    _kind, api, _minor = cluster
    applied = kubectl(kc, "apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(_deployment("many", 50)))
    assert applied.returncode == 0, applied.stderr
    from kubernetes import client

    core = client.CoreV1Api(api)
    quota_pods = int(kns.QUOTA["pods"])
    deadline = time.monotonic() + 90
    refused = False
    while time.monotonic() < deadline and not refused:
        events = core.list_namespaced_event(ns).items
        refused = any("exceeded quota" in (e.message or "") for e in events)
        time.sleep(2)
    pods = core.list_namespaced_pod(ns).items
    assert refused, "the ReplicaSet was never told it exceeded the quota"
    assert len(pods) <= quota_pods, f"{len(pods)} pods exist under a quota of {quota_pods}"


def test_privileged_pods_are_refused(namespace: tuple[str, Path], cluster: tuple[KindCluster, Any, int | None]) -> None:
    ns, kc = namespace
    _kind, _api, minor = cluster
    doc = _deployment("escape", 1, securityContext={"privileged": True})
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "escape"}, "spec": doc["spec"]["template"]["spec"]}
    assert podsec.violations(pod["spec"]) == ["container 'c': privileged"], "the grader's own check, on any server"
    applied = kubectl(kc, "apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(pod))
    if podsec.guarantees_missing(minor):
        # 1.20-1.22: the API server admits it; what stops it is the grader (manifests and the
        # check after each command, see test_kind_runtime.py). Say so rather than pretend.
        assert applied.returncode == 0, applied.stderr
    else:
        assert applied.returncode != 0 and "violates PodSecurity" in applied.stderr, applied.stderr


@pytest.mark.skipif(os.environ.get("TAKEHOME_EXPECT_NETWORKPOLICY") != "1",
                    reason="NetworkPolicy enforcement depends on the CNI: set TAKEHOME_EXPECT_NETWORKPOLICY=1 where "
                           "it is enforced (a stock kind cluster's kindnet; not the bridge CNI of a hand-built one)")
def test_network_policy_keeps_pods_from_the_api_server(namespace: tuple[str, Path]) -> None:
    ns, kc = namespace
    image = os.environ.get("TAKEHOME_PROBE_IMAGE", "busybox:1.36")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"},
           "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": image, "command": ["sh", "-c",
                                    "if nc -z -w 3 kubernetes.default.svc.cluster.local 443 || nc -z -w 3 10.96.0.1 443; "
                                    "then echo REACHED; else echo BLOCKED; fi"]}]}}
    assert kubectl(kc, "apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(pod)).returncode == 0
    deadline = time.monotonic() + 120
    phase = ""
    while time.monotonic() < deadline and phase not in ("Succeeded", "Failed"):
        out = kubectl(kc, "get", "pod", "probe", "-n", ns, "-o", "json")
        phase = json.loads(out.stdout).get("status", {}).get("phase", "") if out.returncode == 0 else ""
        time.sleep(2)
    logs = kubectl(kc, "logs", "probe", "-n", ns).stdout
    assert "BLOCKED" in logs and "REACHED" not in logs, logs


def test_cleanup_removes_what_a_dead_grading_left(cluster: tuple[KindCluster, Any, int | None],
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.isolation import records
    from harness.runtimes.kind import cleanup_stale

    kind, api, _minor = cluster
    monkeypatch.setenv("TAKEHOME_CACHE_DIR", str(tmp_path / "cache"))
    dead = subprocess.Popen(["true"])
    dead.wait()
    run_id = uuid.uuid4().hex[:12]
    records.write({"name": f"grading-{run_id}", "grader_pid": dead.pid, "work_dir": str(tmp_path / "w")})
    ops.create_objects(api, kns.namespace_objects(run_id, 8080, {}, None, None))
    ns = kns.namespace_name(run_id)
    assert ns in ops.grader_namespaces(api)
    lines = cleanup_stale(kind)
    assert f"namespace {ns} deleted" in lines, lines
    assert ns not in ops.grader_namespaces(api)


def test_sigkill_mid_grading_then_cleanup_leaves_nothing(cluster: tuple[KindCluster, Any, int | None],
                                                          tmp_path: Path, read_progress_until: Any) -> None:
    """A grader SIGKILLed while the candidate runs in the cluster: its command sandbox dies with it,
    and `takehome cleanup` deletes the namespace (with its PVC, so its PV), and the image on the node."""
    import signal
    import sys

    from calibration.assemble import assemble

    kind, api, _minor = cluster
    root = Path(__file__).resolve().parents[1]
    repo = assemble("reference-fastapi", tmp_path / "candidate")
    env = {**os.environ, "TAKEHOME_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "grader.cli", "grade", "--repo", str(repo), "--runtime", "kind",
                             "--out", str(tmp_path / "out")], cwd=root, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        seen = read_progress_until(proc, "▶ deployment", 600)
        assert "▶ deployment" in seen, seen[-3000:]
        run_id = next(n.removeprefix("takehome-") for n, r in ops.grader_namespace_runs(api).items()
                      if f"namespace {n} ready" in seen)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    ns = kns.namespace_name(run_id)
    from kubernetes import client

    core = client.CoreV1Api(api)
    volumes = [pv.metadata.name for pv in core.list_persistent_volume().items
               if pv.spec.claim_ref is not None and pv.spec.claim_ref.namespace == ns]
    assert ns in ops.grader_namespaces(api), "the killed grading left its namespace"
    clean = subprocess.run([sys.executable, "-m", "grader.cli", "cleanup"], cwd=root, capture_output=True, text=True,
                           timeout=300, env=env)
    assert clean.returncode == 0, clean.stderr
    assert f"kind: namespace {ns} deleted" in clean.stdout, clean.stdout
    assert ns not in ops.grader_namespaces(api)
    deadline = time.monotonic() + 60  # the provisioner deletes released volumes asynchronously
    left = volumes
    while left and time.monotonic() < deadline:
        left = [pv.metadata.name for pv in core.list_persistent_volume().items if pv.metadata.name in volumes]
        time.sleep(2)
    assert not left, f"persistent volumes of {ns} left: {left}"
    node_images = subprocess.run(["docker", "exec", kind.node_container, "crictl", "images"], capture_output=True,
                                 text=True, timeout=60).stdout
    assert f"takehome-candidate  {run_id}" not in " ".join(node_images.split()) and run_id not in node_images
    sandboxes = [p for p in (tmp_path / "cache" / "sandboxes").glob("*.json")]
    assert not sandboxes, f"records left: {sandboxes}"
