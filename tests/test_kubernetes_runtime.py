"""The kubernetes runtime's cluster provider (an existing cluster named by a kubeconfig context).

The grading itself is the kind runtime's (tests/test_kind_runtime.py); what is new here is how the
cluster, its credentials, the image and the addresses are found. kubectl is the real one where
installed; the image push goes to a real Docker engine (to a registry that is not there).
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from grader.config import ConfigError, KubernetesConfig, load_config
from harness.errors import GraderFault
from harness.runtimes.kubernetes import ExistingCluster, KubernetesRuntime, source_address_towards
from harness.runtimes.registry import NAMES, get


def two_context_kubeconfig(tmp_path: Path) -> Path:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\nZmFrZQ==\n-----END CERTIFICATE-----\n")
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "dev",
        "clusters": [{"name": "dev", "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority": str(ca)}},
                     {"name": "prod", "cluster": {"server": "https://10.0.0.1:6443",
                                                  "certificate-authority-data": "Q0E="}}],
        "contexts": [{"name": "dev", "context": {"cluster": "dev", "user": "dev"}},
                     {"name": "prod", "context": {"cluster": "prod", "user": "prod"}}],
        "users": [{"name": "dev", "user": {"token": "dev-token"}}, {"name": "prod", "user": {"token": "prod-token"}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def test_registered_and_configured_from_the_grader_config() -> None:
    assert "kubernetes" in NAMES and get("kubernetes") is KubernetesRuntime
    cfg = load_config().kubernetes
    assert cfg.registry is None and cfg.load_command is None and cfg.node_ports[0] == 30080
    with pytest.raises(ValueError, match="outside the NodePort range"):
        KubernetesConfig(node_ports=[8080])


def test_bad_kubernetes_section_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "grader.yaml"
    bad.write_text("kubernetes:\n  registy: example.com\n")
    with pytest.raises(ConfigError, match="registy"):
        load_config(bad)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubeconfig_is_the_named_context_only_with_files_inlined(tmp_path: Path) -> None:
    path = two_context_kubeconfig(tmp_path)
    dev = ExistingCluster(KubernetesConfig(kubeconfig=str(path))).kubeconfig()
    assert [c["name"] for c in dev["clusters"]] == ["dev"] and dev["current-context"] == "dev"
    assert base64.b64decode(dev["clusters"][0]["cluster"]["certificate-authority-data"]).startswith(b"-----BEGIN")
    assert "prod-token" not in yaml.safe_dump(dev)
    prod = ExistingCluster(KubernetesConfig(kubeconfig=str(path), context="prod"))
    assert prod.kubeconfig()["users"][0]["user"]["token"] == "prod-token" and prod.context_name == "prod"
    with pytest.raises(GraderFault, match="could not read the kubeconfig context"):
        ExistingCluster(KubernetesConfig(kubeconfig=str(path), context="nope")).kubeconfig()
    with pytest.raises(GraderFault, match="does not exist"):
        ExistingCluster(KubernetesConfig(kubeconfig=str(tmp_path / "missing"))).ensure()


def test_load_command_gets_each_image_quoted(tmp_path: Path) -> None:
    log = tmp_path / "loaded.txt"
    cluster = ExistingCluster(KubernetesConfig(load_command=f"echo {{image}} >> {log}"))
    assert cluster.publish_images(["takehome-candidate:abc", "takehome-candidate:latest"], None) == [
        "takehome-candidate:abc", "takehome-candidate:latest"]
    assert log.read_text().split() == ["takehome-candidate:abc", "takehome-candidate:latest"]
    failing = ExistingCluster(KubernetesConfig(load_command="echo cannot load {image} >&2; exit 3"))
    with pytest.raises(GraderFault, match="kubernetes.load_command") as err:
        failing.publish_images(["x:1"], None)
    assert "cannot load x:1" in err.value.details


def test_no_way_to_publish_says_what_to_set() -> None:
    with pytest.raises(GraderFault, match="kubernetes.registry .* or kubernetes.load_command"):
        ExistingCluster(KubernetesConfig()).publish_images(["x:1"], None)


def test_push_to_a_registry_that_does_not_answer_is_a_clear_fault(docker_engine: Any) -> None:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:  # a one-file image: nothing to pull
        info = tarfile.TarInfo("hello.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    tag = "takehome-candidate:k8s-push-test"
    docker_engine.api.import_image_from_data(buf.getvalue(), repository="takehome-candidate", tag="k8s-push-test")
    try:
        cluster = ExistingCluster(KubernetesConfig(registry="127.0.0.1:1/takehome"))
        with pytest.raises(GraderFault, match="push"):
            cluster.publish_images([tag], docker_engine)
    finally:
        for ref in (tag, "127.0.0.1:1/takehome/takehome-candidate:k8s-push-test"):
            try:
                docker_engine.images.remove(ref)
            except Exception:  # noqa: BLE001
                pass


def test_addresses_come_from_the_config_or_the_cluster() -> None:
    cluster = ExistingCluster(KubernetesConfig(node_address="10.1.2.3", grader_host="10.1.2.1", node_ports=[30100]))
    assert cluster.node_address(None) == "10.1.2.3" and cluster.grader_host(None) == "10.1.2.1"
    assert cluster.node_ports(None) == [30100] and cluster.unload_images(["x:1"], None) == []
    assert source_address_towards("127.0.0.1") == "127.0.0.1"
    with pytest.raises(GraderFault, match="set kubernetes.grader_host"):
        ExistingCluster(KubernetesConfig(node_address="127.0.0.1")).grader_host(None, None)

    node = SimpleNamespace(status=SimpleNamespace(addresses=[SimpleNamespace(type="Hostname", address="n1"),
                                                             SimpleNamespace(type="InternalIP", address="172.18.0.2")]))

    class FakeCore:
        def __init__(self, api: Any) -> None:
            pass

        def list_node(self, **_kw: Any) -> Any:
            return SimpleNamespace(items=[node])

    import kubernetes.client

    mp = pytest.MonkeyPatch()
    mp.setattr(kubernetes.client, "CoreV1Api", FakeCore)
    try:
        assert ExistingCluster(KubernetesConfig()).node_address("api") == "172.18.0.2"
    finally:
        mp.undo()


def test_runtime_refuses_before_building_when_the_image_cannot_reach_the_nodes(tmp_path: Path) -> None:
    from harness.cleanup import CleanupStack
    from harness.contract import parse_contract
    from harness.runtimes.base import RuntimeContext

    contract = {"version": 1, "serving": {"port": 8080, "predict_path": "/p"}, "drift": {"signal": "webhook"},
                "runtimes": {"kind": {"manifests": "k8s/", "service": "fraud", "deploy": "echo {version}", "rollback": "true"}}}
    ctx = RuntimeContext(run_id="0123456789ab", repo_dir=tmp_path, work_dir=tmp_path / "work",
                         contract=parse_contract(yaml.safe_dump(contract)), config=load_config(), cleanup=CleanupStack())
    runtime = KubernetesRuntime(ctx)
    assert runtime.name == "kubernetes" and isinstance(runtime.cluster, ExistingCluster)
    with pytest.raises(GraderFault, match="kubernetes.registry"):
        runtime.build()
    assert not (tmp_path / "work" / "logs" / "build.log").exists(), "nothing was built"


def test_cleanup_of_an_existing_cluster_needs_its_kubeconfig(tmp_path: Path) -> None:
    from harness.runtimes.kind import cleanup_stale

    missing = ExistingCluster(KubernetesConfig(kubeconfig=str(tmp_path / "nope")))
    assert cleanup_stale(missing) == [f"no cluster of context 'current-context' ({tmp_path / 'nope'}): nothing to clean"]
