"""Every Kubernetes manifest the kit ships, validated against the schemas of the Kubernetes version
the kind config pins (``kubernetes-validate``, offline, strict: unknown fields are errors).

Covered: ``k8s/**`` (the generated namespace template included), the reference solutions'
manifests (``calibration/candidates/*/k8s``, rendered with ``kubectl kustomize`` when they are a
kustomization), the objects the kind runtime generates for a run, and the reference manifests
after the runtime's rewrite. The kind config itself is checked structurally.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.runtimes import kube_manifests as km, kube_namespace as kns
from harness.runtimes.kube_cluster import (DEFAULT_CONFIG, KIND_VERSION, NODE_PORT_RANGE, kubernetes_version,
                                          load_config, mapped_node_ports, node_image)

kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (dev extra)")

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"
NOT_RESOURCES = {"kind-config.yaml"}  # kind's own config, not a Kubernetes object


def _version() -> str:
    return kubernetes_version(load_config(DEFAULT_CONFIG))


def validate(doc: dict[str, Any], source: str) -> None:
    """Strict schema validation; the failure names the file, the object and the field."""
    try:
        kv.validate(doc, _version(), strict=True)
    except kv.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{source}: {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}: {where}: {exc.message}")
    except kv.SchemaNotFoundError as exc:
        pytest.fail(f"{source}: {exc.message} (a typo in apiVersion/kind, or a custom resource)")


def _shipped_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*") if p.suffix in (".yaml", ".yml") and p.name not in NOT_RESOURCES)


def _candidate_manifest_dirs() -> list[Path]:
    return sorted(p for p in (ROOT / "calibration" / "candidates").glob("*/k8s") if p.is_dir() and any(p.rglob("*.y*ml")))


# --- the kind config -----------------------------------------------------------------------------

def test_kind_config_is_a_kind_cluster_with_a_pinned_node_image() -> None:
    config = load_config(DEFAULT_CONFIG)
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4" and config["kind"] == "Cluster"
    image = node_image(config)
    assert image.startswith("kindest/node:v") and "@sha256:" in image, "pin the node image by digest"
    assert len(image.split("@sha256:")[1]) == 64
    roles = [n.get("role") for n in config["nodes"]]
    assert roles.count("control-plane") == 1


def test_kind_config_maps_node_ports_on_loopback_only() -> None:
    config = load_config(DEFAULT_CONFIG)
    mappings = config["nodes"][0]["extraPortMappings"]
    assert len(mappings) >= 4, "one mapped port per concurrent grading"
    for m in mappings:
        assert NODE_PORT_RANGE[0] <= m["containerPort"] <= NODE_PORT_RANGE[1], m
        assert m["hostPort"] == m["containerPort"], m
        assert m["listenAddress"] == "127.0.0.1", "never publish a candidate's service beyond this machine"
        assert m.get("protocol", "TCP") == "TCP"
    assert mapped_node_ports(config) == sorted(m["containerPort"] for m in mappings)
    assert config.get("networking", {}).get("apiServerAddress", "127.0.0.1") == "127.0.0.1"


def test_pinned_kubernetes_version_has_schemas() -> None:
    version = _version()
    major_minor = ".".join(version.split(".")[:2])
    available = {".".join(v.split(".")[:2]) for v in kv.utils.all_versions()}
    assert major_minor in available, f"kubernetes-validate {kv.__version__} has no schemas for {version}"


def test_ci_workflow_pins_the_same_kind_release() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "kind-e2e.yml").read_text())
    env = workflow["jobs"]["kind-e2e"]["env"]
    assert env["KIND_VERSION"] == KIND_VERSION
    assert env["KUBECTL_VERSION"] == f"v{_version()}", "kubectl should match the cluster's Kubernetes version"
    assert KIND_VERSION in DEFAULT_CONFIG.read_text(), "the kind config's comment names the kind release"


# --- shipped manifests ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", _shipped_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_manifests_validate(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs, f"{path} holds no object"
    for doc in docs:
        validate(doc, str(path.relative_to(ROOT)))


def test_namespace_template_is_up_to_date() -> None:
    assert (K8S / "namespace-template.yaml").read_text() == kns.render_template(), \
        "regenerate: python -m harness.runtimes.kube_namespace > k8s/namespace-template.yaml"


@pytest.mark.parametrize("manifests", _candidate_manifest_dirs(), ids=lambda p: p.parent.name)
def test_reference_solution_manifests_validate(manifests: Path) -> None:
    if km.is_kustomization(manifests) and shutil.which("kubectl") is None:
        pytest.skip("kubectl is needed to render a kustomization")
    text, _how = km.render_manifests(manifests)
    docs = km.parse_documents(text, str(manifests))
    for doc in docs:
        validate(doc, str(manifests.relative_to(ROOT)))
    contract = yaml.safe_load((manifests.parent / "takehome.yaml").read_text())
    kind = (contract.get("runtimes") or {}).get("kind")
    if not kind:
        pytest.skip(f"{manifests.parent.name} declares no kind runtime")
    rewritten = km.rewrite(docs, namespace="takehome-0123456789ab", run_id="0123456789ab",
                           placeholder=kind.get("image_placeholder", "takehome-candidate:latest"),
                           image="takehome-candidate:0123456789ab", service_name=kind["service"],
                           env={"PORT": "8080", "TAKEHOME_RUNTIME": "kind"})
    assert rewritten.images_replaced >= 1, "the reference's manifests should run the image the grader builds"
    for doc in rewritten.documents:
        validate(doc, f"{manifests.relative_to(ROOT)} (rewritten)")


# --- generated objects -----------------------------------------------------------------------------

@pytest.mark.parametrize("webhook", [None, ("172.18.0.1", 38123)], ids=["no-webhook", "webhook"])
def test_generated_namespace_objects_validate(webhook: tuple[str, int] | None) -> None:
    ip, port = webhook or (None, None)
    docs = kns.namespace_objects("a1b2c3d4e5f6", 8080, {"PORT": "8080", "TAKEHOME_RUN_ID": "a1b2c3d4e5f6"},
                                 grader_ip=ip, grader_port=port)
    assert [d["kind"] for d in docs] == ["Namespace", "ResourceQuota", "LimitRange", "NetworkPolicy",
                                         "ServiceAccount", "Role", "RoleBinding", "ConfigMap"]
    for doc in docs:
        validate(doc, "kube_namespace.namespace_objects")


def test_token_request_validates() -> None:
    validate({**kns.token_request(), "metadata": {"name": kns.CANDIDATE_SA}}, "kube_namespace.token_request")


def test_node_port_patch_applied_to_a_service_validates() -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "fraud", "namespace": "ns"},
               "spec": {"selector": {"app": "fraud"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}
    patch = km.node_port_patch(service, 8080, 30081)
    merged = {**service, "spec": {**service["spec"], "type": patch["spec"]["type"],
                                  "ports": [{**service["spec"]["ports"][0], **patch["spec"]["ports"][0]}]}}
    validate(merged, "node_port_patch")


def test_validation_catches_a_broken_object() -> None:
    """Guard against a validator that accepts anything (e.g. a missing schema silently skipped)."""
    bad = kns.resource_quota("ns", "run")
    bad["spec"]["hrad"] = bad["spec"].pop("hard")
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, _version(), strict=True)
    policy = kns.network_policy("ns", "run", 8080)
    policy["spec"]["ingress"][1]["ports"][0]["port"] = [8080]
    with pytest.raises(kv.ValidationError):
        kv.validate(policy, _version(), strict=True)


def test_candidate_manifests_with_yaml_aliases_are_refused() -> None:
    """A billion-laughs bomb in a candidate's manifests is refused before anything expands it."""
    from harness.errors import SubmissionError
    from harness.runtimes.kube_manifests import parse_documents

    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
    with pytest.raises(SubmissionError, match="aliases"):
        parse_documents(bomb, "k8s/bomb.yaml")
