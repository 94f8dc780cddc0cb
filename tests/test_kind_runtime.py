"""The kind runtime. Everything that needs no Kubernetes node runs here: manifest loading and
rewriting, the namespace objects, kubeconfigs (checked with the real kubectl and kubernetes
client), collectors, the kind CLI wrapper (against a fake ``kind`` that records its argv), the
Docker network gateway (a real network when an engine is up), and the runtime's orchestration
with the cluster and API calls faked. The end-to-end test (marked ``kind``) grades the reference
solution on a real kind cluster and is skipped, saying why, where kind cannot run.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.errors import GraderFault, SubmissionError
from harness.runtimes import kube_collect as kc, kube_manifests as km, kube_namespace as kns
from harness.runtimes.kube_cluster import KindCluster, gateway_from_network, kubernetes_version, load_config

RUN = "0123456789ab"
NS = kns.namespace_name(RUN)
PLACEHOLDER = "takehome-candidate:latest"
IMAGE = f"takehome-candidate:{RUN}"


def deployment(name: str = "fraud-v1", image: str = PLACEHOLDER, **container: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "fraud"}},
                     "template": {"metadata": {"labels": {"app": "fraud"}},
                                  "spec": {"containers": [{"name": "server", "image": image, **container}]}}}}


def service(name: str = "fraud", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "fraud"}, "ports": [{"port": 80, "targetPort": 8080}], **spec}}


def rewrite(docs: list[dict[str, Any]], **kw: Any) -> km.Rewritten:
    args = {"namespace": NS, "run_id": RUN, "placeholder": PLACEHOLDER, "image": IMAGE, "service_name": "fraud",
            "env": {"PORT": "8080", "TAKEHOME_RUNTIME": "kind"}}
    return km.rewrite(docs, **{**args, **kw})


# --- namespace objects and kubeconfigs --------------------------------------------------------------

def test_namespace_name_is_a_dns_label() -> None:
    assert kns.namespace_name("AbC_12") == "takehome-abc-12"
    assert len(kns.namespace_name("x" * 100)) <= 63


def test_role_stays_inside_the_namespace_and_cannot_escalate() -> None:
    role = next(d for d in kns.rbac_objects(NS, RUN) if d["kind"] == "Role")
    resources = {(r["apiGroups"][0], res) for r in role["rules"] for res in r["resources"]}
    assert ("apps", "deployments") in resources and ("", "pods/log") in resources
    assert not {g for g, _ in resources} & {"rbac.authorization.k8s.io", "networking.k8s.io"}
    assert ("", "namespaces") not in resources and ("", "resourcequotas") in resources
    quota_rule = next(r for r in role["rules"] if "resourcequotas" in r["resources"])
    assert set(quota_rule["verbs"]) == {"get", "list", "watch"}, "the candidate must not lift its own quota"
    assert ("apps", "Deployment") in kns.ALLOWED_KINDS and ("", "Service") in kns.ALLOWED_KINDS
    assert not any(kind in {"Role", "RoleBinding", "NetworkPolicy", "Namespace"} for _, kind in kns.ALLOWED_KINDS)
    binding = next(d for d in kns.rbac_objects(NS, RUN) if d["kind"] == "RoleBinding")
    assert binding["roleRef"]["kind"] == "Role" and binding["subjects"][0]["namespace"] == NS


#: What common deploy/rollback commands need, as (apiGroup, resource, verb). kubectl apply: get +
#: create + patch; rollout status/wait: get/list/watch; rollout undo: list replicasets + patch; scale:
#: the scale subresource; exec into deploy/x: get the deployment, list pods, create pods/exec
#: (websocket exec is authorised as get on recent versions).
COMMAND_NEEDS = [
    ("apps", "deployments", v) for v in ("get", "list", "watch", "create", "patch", "update", "delete")] + [
    ("apps", "replicasets", "list"), ("apps", "deployments/scale", "patch"), ("apps", "statefulsets", "patch"),
    ("", "services", "patch"), ("", "services", "create"), ("", "configmaps", "create"), ("", "pods", "list"),
    ("", "pods", "delete"), ("", "pods/log", "get"), ("", "pods/exec", "create"), ("", "pods/exec", "get"),
    ("", "events", "list"), ("", "persistentvolumeclaims", "create"), ("discovery.k8s.io", "endpointslices", "list"),
    ("batch", "jobs", "create"),
]


def test_role_grants_what_rollout_commands_need() -> None:
    role = next(d for d in kns.rbac_objects(NS, RUN) if d["kind"] == "Role")
    granted = {(r["apiGroups"][0], res, verb) for r in role["rules"] for res in r["resources"] for verb in r["verbs"]}
    assert [need for need in COMMAND_NEEDS if need not in granted] == []
    assert ("", "pods/portforward", "create") not in granted, "the grader never port-forwards; neither may commands"


def test_network_policy_allows_only_what_grading_needs() -> None:
    plain = kns.network_policy(NS, RUN, 8080)
    assert plain["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert plain["spec"]["ingress"][1] == {"ports": [{"protocol": "TCP", "port": 8080}]}
    assert not any("ipBlock" in json.dumps(rule) for rule in plain["spec"]["egress"]), "no egress beyond the cluster"
    hooked = kns.network_policy(NS, RUN, 8080, grader_ip="172.18.0.1", grader_port=38123)
    assert hooked["spec"]["egress"][-1] == {"to": [{"ipBlock": {"cidr": "172.18.0.1/32"}}],
                                            "ports": [{"protocol": "TCP", "port": 38123}]}


def test_namespace_enforces_pod_security_baseline() -> None:
    labels = kns.namespace_object(NS, RUN)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels[kns.RUN_LABEL] == RUN


ADMIN = {"apiVersion": "v1", "kind": "Config", "current-context": "kind-takehome",
         "clusters": [{"name": "kind-takehome", "cluster": {"server": "https://127.0.0.1:41234",
                                                            "certificate-authority-data": "Q0EtREFUQQ=="}}],
         "contexts": [{"name": "kind-takehome", "context": {"cluster": "kind-takehome", "user": "kind-takehome"}}],
         "users": [{"name": "kind-takehome", "user": {"client-certificate-data": "Y2VydA==",
                                                       "client-key-data": "a2V5"}}]}


def test_candidate_kubeconfig_holds_only_the_token(tmp_path: Path) -> None:
    server, ca = kns.admin_endpoint(ADMIN)
    assert (server, ca) == ("https://127.0.0.1:41234", "Q0EtREFUQQ==")
    config = kns.candidate_kubeconfig(server, ca, "tok-123", NS)
    text = yaml.safe_dump(config)
    assert "client-key-data" not in text and "client-certificate-data" not in text
    assert config["users"][0]["user"] == {"token": "tok-123"}
    with pytest.raises(ValueError):
        kns.admin_endpoint({"clusters": []})
    # The real consumers read it: the kubernetes client, and kubectl (offline: config view only).
    from kubernetes import config as kconfig

    api = kconfig.new_client_from_config_dict(config_dict=config, temp_file_path=str(tmp_path))
    assert api.configuration.host == server
    assert "Bearer tok-123" in api.configuration.api_key.values()
    if shutil.which("kubectl"):
        path = tmp_path / "kc"
        path.write_text(text)
        out = subprocess.run(["kubectl", "--kubeconfig", str(path), "config", "view", "--minify", "-o",
                              "jsonpath={.contexts[0].context.namespace}"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and out.stdout == NS, out.stderr


# --- loading manifests ----------------------------------------------------------------------------

def test_parse_documents_flattens_lists_and_names_bad_input() -> None:
    text = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [service()]}) + "---\n---\n" + \
        yaml.safe_dump(deployment())
    assert [d["kind"] for d in km.parse_documents(text, "x")] == ["Service", "Deployment"]
    with pytest.raises(SubmissionError, match="not a mapping"):
        km.parse_documents("- a\n- b\n", "x.yaml")
    with pytest.raises(SubmissionError, match="metadata.name"):
        km.parse_documents("apiVersion: v1\nkind: Service\n", "x.yaml")
    with pytest.raises(SubmissionError, match="not valid YAML"):
        km.parse_documents("a: [", "x.yaml")


def test_render_directory_reads_top_level_files_in_order(tmp_path: Path) -> None:
    (tmp_path / "b-deploy.yaml").write_text(yaml.safe_dump(deployment()))
    (tmp_path / "a-svc.yml").write_text(yaml.safe_dump(service()))
    (tmp_path / "notes.txt").write_text("not a manifest")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text(yaml.safe_dump(service("ignored")))
    text, how = km.render_manifests(tmp_path)
    assert [d["metadata"]["name"] for d in km.parse_documents(text, "dir")] == ["fraud", "fraud-v1"]
    assert "2 file(s)" in how
    (tmp_path / "a-svc.yml").unlink()
    (tmp_path / "b-deploy.yaml").unlink()
    with pytest.raises(SubmissionError, match="no .yaml"):
        km.render_manifests(tmp_path)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_render_kustomization_with_kubectl(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "svc.yaml").write_text(yaml.safe_dump(service()))
    (base / "deploy.yaml").write_text(yaml.safe_dump(deployment()))
    (base / "kustomization.yaml").write_text("resources: [svc.yaml, deploy.yaml]\ncommonLabels: {team: ml}\n")
    text, how = km.render_manifests(base)
    docs = km.parse_documents(text, "kustomize")
    assert {d["kind"] for d in docs} == {"Service", "Deployment"} and "kubectl kustomize" in how
    assert all(d["metadata"]["labels"]["team"] == "ml" for d in docs)
    (base / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(SubmissionError, match="does not render") as err:
        km.render_manifests(base)
    assert "missing.yaml" in err.value.details


def test_manifests_path_must_stay_inside_the_repo(tmp_path: Path) -> None:
    (tmp_path / "k8s").mkdir()
    assert km.resolve_manifests_path(tmp_path, "k8s/") == tmp_path / "k8s"
    with pytest.raises(SubmissionError, match="outside"):
        km.resolve_manifests_path(tmp_path, "../elsewhere")
    with pytest.raises(SubmissionError, match="no such"):
        km.resolve_manifests_path(tmp_path, "deploy/")


# --- rewriting ------------------------------------------------------------------------------------

def test_rewrite_substitutes_the_image_and_forces_pull_policy_and_env() -> None:
    dep = deployment(image="docker.io/library/takehome-candidate:latest", imagePullPolicy="Always",
                     env=[{"name": "PORT", "value": "9999"}])
    dep["spec"]["template"]["spec"]["initContainers"] = [{"name": "init", "image": "takehome-candidate",
                                                          "command": ["true"]}]
    dep["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "busybox:1.36",
                                                          "imagePullPolicy": "Always"})
    out = rewrite([dep, service()])
    pod = out.documents[1]["spec"]["template"]["spec"]
    server, sidecar = pod["containers"]
    assert out.images_replaced == 2 and server["image"] == IMAGE and pod["initContainers"][0]["image"] == IMAGE
    assert server["imagePullPolicy"] == "Never" and sidecar["imagePullPolicy"] == "IfNotPresent"
    env = {e["name"]: e["value"] for e in server["env"]}
    assert env == {"PORT": "9999", "TAKEHOME_RUNTIME": "kind"}, "the candidate's own value wins"
    assert "env" not in sidecar
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"].startswith("docker.io"), "input untouched"


def test_rewrite_forces_the_namespace_and_labels_with_a_note() -> None:
    svc = service()
    svc["metadata"]["namespace"] = "production"
    out = rewrite([deployment(), svc])
    assert all(d["metadata"]["namespace"] == NS for d in out.documents)
    assert all(d["metadata"]["labels"][kns.RUN_LABEL] == RUN for d in out.documents)
    assert any("'production' replaced" in n for n in out.notes)
    assert [d["kind"] for d in out.documents] == ["Service", "Deployment"], "apply order"


@pytest.mark.parametrize("doc,needle", [
    ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mine"}}, "cluster-scoped"),
    ({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "x"}},
     "cluster-scoped"),
    ({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "x"}},
     "cluster-scoped"),
    ({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "x"}}, "cluster-scoped"),
    ({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "x"}}, "not allowed"),
    ({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "x"}}, "not allowed"),
    ({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "x"}}, "not allowed"),
])
def test_rewrite_refuses_kinds_outside_the_namespace_role(doc: dict[str, Any], needle: str) -> None:
    with pytest.raises(SubmissionError) as err:
        rewrite([deployment(), service(), doc])
    assert needle in err.value.details and doc["kind"] in err.value.details


@pytest.mark.parametrize("change, needle", [
    ({"securityContext": {"privileged": True}}, "privileged"),
    ({"securityContext": {"capabilities": {"add": ["NET_ADMIN", "CHOWN"]}}}, "adds capabilities ['NET_ADMIN']"),
    ({"ports": [{"containerPort": 8080, "hostPort": 80}]}, "hostPort 80"),
])
def test_rewrite_refuses_containers_that_break_pod_security_baseline(change: dict[str, Any], needle: str) -> None:
    with pytest.raises(SubmissionError, match="Pod Security baseline") as err:
        rewrite([deployment(**change), service()])
    assert needle in err.value.details and "Deployment/fraud-v1" in err.value.details


def test_rewrite_refuses_host_namespaces_and_host_paths() -> None:
    dep = deployment()
    pod = dep["spec"]["template"]["spec"]
    pod.update(hostNetwork=True, volumes=[{"name": "root", "hostPath": {"path": "/"}}])
    with pytest.raises(SubmissionError, match="Pod Security baseline") as err:
        rewrite([dep, service()])
    assert "hostNetwork: true" in err.value.details and "hostPath '/'" in err.value.details
    from harness.runtimes import kube_podsecurity as podsec

    assert podsec.violations(deployment()["spec"]["template"]["spec"]) == [], "a plain pod is fine"
    assert podsec.violations({"containers": [{"name": "c", "securityContext": {"capabilities": {"add": ["CHOWN"]}}}]}) == []
    assert podsec.guarantees_missing(36) == [] and "no Pod Security admission" in podsec.guarantees_missing(20)[0]


def test_rewrite_pull_policy_follows_how_the_image_reached_the_nodes() -> None:
    pushed = rewrite([deployment(), service()], pull_policy="IfNotPresent").documents
    assert pushed[1]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"


def test_rewrite_requires_the_named_service() -> None:
    with pytest.raises(SubmissionError, match=r"no Service by that name \(Services found: \['other'\]\)"):
        rewrite([deployment(), service("other")])
    with pytest.raises(SubmissionError, match="ExternalName"):
        rewrite([deployment(), service(type="ExternalName", externalName="x.example")])
    with pytest.raises(SubmissionError, match="twice"):
        rewrite([deployment(), service(), service()])


def test_rewrite_leaves_the_service_type_to_the_grader() -> None:
    svc = service(type="LoadBalancer", externalTrafficPolicy="Local")
    svc["spec"]["ports"][0]["nodePort"] = 31999
    out = rewrite([deployment(), svc])
    spec = out.service["spec"] if out.service else {}
    assert "type" not in spec and "nodePort" not in spec["ports"][0] and "externalTrafficPolicy" not in spec
    assert any("LoadBalancer dropped" in n for n in out.notes)
    assert "type" not in rewrite([deployment(), service(type="ClusterIP")]).service["spec"]  # type: ignore[index]


def test_rewrite_notes_when_nothing_runs_the_built_image() -> None:
    out = rewrite([deployment(image="nginx:1.27"), service()])
    assert out.images_replaced == 0 and any("no container uses the image placeholder" in n for n in out.notes)


def test_rewrite_covers_every_workload_kind() -> None:
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "warm"},
           "spec": {"template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "w", "image": PLACEHOLDER}]}}}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": PLACEHOLDER}]}}
    assert rewrite([job, pod, deployment(), service()]).images_replaced == 3


def test_service_port_and_node_port_patch() -> None:
    svc = service()
    svc["spec"]["ports"] = [{"name": "metrics", "port": 9090, "targetPort": 9090},
                            {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
    assert km.service_port(svc, 8080)["name"] == "http"
    assert km.service_port(svc, 1234)["name"] == "metrics", "no match: the first port"
    assert km.node_port_patch(svc, 8080, 30083) == {
        "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30083, "protocol": "TCP"}]}}
    live = json.loads(json.dumps(svc))
    assert km.node_port_of(live, 8080) is None
    live["spec"]["type"] = "NodePort"
    live["spec"]["ports"][1]["nodePort"] = 30083
    assert km.node_port_of(live, 8080) == 30083
    assert km.pick_node_port([30080, 30081, 30082], {30080, 32000}) == [30081, 30082]


# --- collectors -----------------------------------------------------------------------------------

def pod(name: str, waiting: str | None = None, restarts: int = 0, ready: bool = False) -> dict[str, Any]:
    state = {"waiting": {"reason": waiting, "message": "boom"}} if waiting else {"running": {}}
    status = {"name": "server", "ready": ready, "restartCount": restarts, "image": IMAGE, "state": state}
    if restarts:
        status["lastState"] = {"terminated": {"reason": "Error", "exitCode": 3}}
    return {"metadata": {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "server"}]},
            "status": {"phase": "Running" if not waiting else "Pending", "containerStatuses": [status]}}


def test_fatal_problems_stop_the_wait_early() -> None:
    assert kc.fatal_problems([pod("ok", ready=True), pod("starting", "ContainerCreating")]) == []
    assert kc.fatal_problems([pod("crash", "CrashLoopBackOff", restarts=1)]) == []
    problems = kc.fatal_problems([pod("crash", "CrashLoopBackOff", restarts=3), pod("img", "ErrImageNeverPull")])
    assert len(problems) == 2 and "crash/server: waiting: CrashLoopBackOff (boom)" in problems[0]


def unschedulable(name: str, message: str) -> dict[str, Any]:
    doc = pod(name, "ContainerCreating")
    doc["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                    "message": message}]
    return doc


def test_a_full_cluster_is_told_apart_from_a_pod_the_candidate_made_unplaceable() -> None:
    full = unschedulable("fraud-1", "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes ...")
    selector = unschedulable("fraud-2", "0/3 nodes are available: 3 node(s) didn't match Pod's node "
                                        "affinity/selector.")
    assert kc.capacity_shortfall([full, selector, pod("ok", ready=True)]) == [
        "fraud-1: 0/3 nodes are available: 3 Insufficient cpu"]


def test_a_rollout_that_times_out_on_a_full_cluster_is_a_grader_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.runtimes import kube_ops

    def stuck(pods: list[dict[str, Any]]) -> None:
        snap = {"pods": pods, "deployments": [{"metadata": {"name": "fraud-model", "generation": 1},
                                               "spec": {"replicas": 1},
                                               "status": {"observedGeneration": 1, "replicas": 1,
                                                          "updatedReplicas": 1}}],
                "statefulsets": [], "events": []}
        monkeypatch.setattr(kube_ops.collect, "snapshot", lambda api, ns: snap)
        monkeypatch.setattr(kube_ops, "rollout_report", lambda api, ns, snap: "report")
        kube_ops.wait_rollout(object(), "ns", 0.0, lambda _msg: None)

    with pytest.raises(GraderFault, match="no room for the candidate's pods .*Insufficient memory.*--jobs"):
        stuck([unschedulable("fraud-1", "0/1 nodes are available: 1 Insufficient memory.")])
    with pytest.raises(SubmissionError, match="did not complete within 0s"):
        stuck([unschedulable("fraud-1", "0/1 nodes are available: 1 node(s) had untolerated taint.")])


def test_format_pods_shows_states_and_the_previous_exit() -> None:
    text = kc.format_pods([pod("fraud-1", "CrashLoopBackOff", restarts=4)])
    assert "fraud-1" in text and "0/1" in text and "CrashLoopBackOff" in text and "exit 3" in text
    assert kc.format_pods([]) == "(no pods in the namespace)"


def test_rollout_pending_reads_deployment_status() -> None:
    def dep(gen: int, observed: int, updated: int, available: int, total: int, replicas: int = 2,
            conditions: list[dict[str, str]] | None = None) -> dict[str, Any]:
        return {"metadata": {"name": "d", "generation": gen}, "spec": {"replicas": replicas},
                "status": {"observedGeneration": observed, "updatedReplicas": updated, "availableReplicas": available,
                           "replicas": total, "conditions": conditions or []}}
    assert kc.rollout_pending([dep(2, 2, 2, 2, 2)]) == []
    assert kc.rollout_pending([dep(0, 0, 0, 0, 0, replicas=0)]) == []
    assert "not observed generation 3" in kc.rollout_pending([dep(3, 2, 2, 2, 2)])[0]
    assert "1/2 available" in kc.rollout_pending([dep(2, 2, 2, 1, 2)])[0]
    assert "old replica" in kc.rollout_pending([dep(2, 2, 2, 2, 3)])[0]
    stuck = dep(2, 2, 1, 1, 2, conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded",
                                            "message": "timed out"}])
    assert any("progress deadline" in w for w in kc.rollout_pending([stuck]))
    sts = {"metadata": {"name": "s", "generation": 1}, "spec": {"replicas": 1},
           "status": {"observedGeneration": 1, "readyReplicas": 0}}
    assert kc.statefulsets_pending([sts]) == ["s: 0/1 ready"]


def test_events_endpoints_and_deployments_format() -> None:
    events = [{"lastTimestamp": "2026-01-01T00:00:02Z", "type": "Warning", "reason": "BackOff", "count": 5,
               "involvedObject": {"kind": "Pod", "name": "p"}, "message": "Back-off restarting"},
              {"lastTimestamp": "2026-01-01T00:00:01Z", "type": "Normal", "reason": "Pulled",
               "involvedObject": {"kind": "Pod", "name": "p"}, "message": "already present"}]
    text = kc.format_events(events)
    assert text.index("Pulled") < text.index("BackOff") and "(x5)" in text
    slices = [{"endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": True}},
                             {"addresses": ["10.244.0.6"], "conditions": {"ready": False}}]}]
    assert kc.ready_endpoints(slices) == ["10.244.0.5"]
    # Kubernetes 1.20 serves no EndpointSlice v1: the Endpoints object says the same.
    endpoints = {"subsets": [{"addresses": [{"ip": "10.244.0.5"}], "notReadyAddresses": [{"ip": "10.244.0.6"}]}]}
    assert kc.ready_addresses(endpoints) == ["10.244.0.5"] and kc.ready_addresses({}) == []
    dep_text = kc.format_deployments([deployment()])
    assert "fraud-v1: desired 1" in dep_text and PLACEHOLDER in dep_text
    assert kc.format_logs({"p/server (previous)": "line\n"}) == "==> p/server (previous) <==\nline"


# --- the kind CLI wrapper (a fake kind that records its argv) --------------------------------------

FAKE_KIND = r'''#!/usr/bin/env python3
import json, os, sys
state_path, log = os.environ["FAKE_KIND_STATE"], os.environ["FAKE_KIND_LOG"]
state = json.load(open(state_path)) if os.path.exists(state_path) else {"clusters": []}
args = sys.argv[1:]
open(log, "a").write(json.dumps(args) + "\n")
name = args[args.index("--name") + 1] if "--name" in args else "kind"
if args[:2] == ["get", "clusters"]:
    print("\n".join(state["clusters"]) if state["clusters"] else "", end="")
    if not state["clusters"]:
        print("No kind clusters found.", file=sys.stderr)
elif args[:2] == ["create", "cluster"]:
    if os.environ.get("FAKE_KIND_FAIL"):
        print("ERROR: failed to create cluster: failed to pull image kindest/node", file=sys.stderr)
        sys.exit(1)
    state["clusters"].append(name)
elif args[:2] == ["delete", "cluster"]:
    state["clusters"] = [c for c in state["clusters"] if c != name]
elif args[:2] == ["get", "kubeconfig"]:
    print(os.environ["FAKE_KIND_KUBECONFIG"])
json.dump(state, open(state_path, "w"))
'''


@pytest.fixture
def fake_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    script = tmp_path / "bin" / "kind"
    script.parent.mkdir()
    script.write_text(FAKE_KIND)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "kind.log"
    monkeypatch.setenv("FAKE_KIND_STATE", str(tmp_path / "kind-state.json"))
    monkeypatch.setenv("FAKE_KIND_LOG", str(log))
    monkeypatch.setenv("FAKE_KIND_KUBECONFIG", yaml.safe_dump(ADMIN))
    return script, log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_kind_cluster_creates_once_then_reuses(fake_kind: tuple[Path, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    script, log = fake_kind
    monkeypatch.setenv("TAKEHOME_KIND_NODE_IMAGE", "kindest/node:v1.35.0@sha256:" + "0" * 64)
    cluster = KindCluster("grading", kind=str(script), lock_dir=tmp_path / "locks")
    assert cluster.ensure(timeout_s=60) is True and cluster.created
    create = next(c for c in calls(log) if c[:2] == ["create", "cluster"])
    assert create[create.index("--config") + 1].endswith("k8s/kind-config.yaml")
    assert "--image" in create and create[create.index("--wait") + 1] == "30s"
    kubeconfig = create[create.index("--kubeconfig") + 1]
    assert not kubeconfig.startswith(str(Path.home() / ".kube")) and not Path(kubeconfig).exists(), \
        "kind must not touch the user's kubeconfig, and the admin one must not stay on disk"
    again = KindCluster("grading", kind=str(script), lock_dir=tmp_path / "locks")
    assert again.ensure(timeout_s=60) is False and not again.created
    assert again.kubeconfig()["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:41234"
    again.load_images([IMAGE, PLACEHOLDER])
    assert calls(log)[-1] == ["load", "docker-image", IMAGE, PLACEHOLDER, "--name", "grading"]
    cluster.delete()
    assert not cluster.exists()


def test_kind_cluster_failure_keeps_the_command_and_output(fake_kind: tuple[Path, Path], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    script, log = fake_kind
    monkeypatch.setenv("FAKE_KIND_FAIL", "1")
    cluster = KindCluster("broken", kind=str(script), lock_dir=tmp_path / "locks")
    with pytest.raises(GraderFault) as err:
        cluster.ensure(timeout_s=60)
    assert "failed to pull image kindest/node" in err.value.details
    assert err.value.command and "create cluster --name broken" in err.value.command
    assert calls(log)[-1][:2] == ["delete", "cluster"], "a half-built cluster is deleted"


def test_kind_config_version_and_cli_status(monkeypatch: pytest.MonkeyPatch) -> None:
    assert kubernetes_version(load_config()) == "1.36.1"
    from harness.runtimes.kind import KindRuntime

    monkeypatch.setenv("PATH", "/nonexistent")
    ok, why = KindRuntime.is_available()
    assert not ok and "kind is not on PATH" in why and "kind.sigs.k8s.io" in why


def test_gateway_from_network_inspect_data() -> None:
    attrs = {"IPAM": {"Config": [{"Subnet": "fc00:f853:ccd:e793::/64", "Gateway": "fc00:f853:ccd:e793::1"},
                                 {"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]}}
    assert gateway_from_network(attrs) == "172.18.0.1"
    assert gateway_from_network({"IPAM": {"Config": [{"Subnet": "172.19.0.0/16"}]}}) == "172.19.0.1"
    with pytest.raises(GraderFault):
        gateway_from_network({"IPAM": {"Config": []}})


@pytest.mark.docker
def test_gateway_of_a_real_docker_network(docker_engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"takehome-test-{uuid.uuid4().hex[:8]}"
    network = docker_engine.networks.create(name, driver="bridge", labels={"takehome.test": "kind"})
    try:
        network.reload()
        expected = [c.get("Gateway") for c in network.attrs["IPAM"]["Config"] if c.get("Gateway")]
        monkeypatch.setenv("KIND_EXPERIMENTAL_DOCKER_NETWORK", name)
        gateway = KindCluster("x").gateway(docker_engine)
        assert not expected or gateway in expected
        assert gateway.count(".") == 3
    finally:
        network.remove()


def test_port_bindings_read_from_the_node_container() -> None:
    class Containers:
        def get(self, name: str) -> Any:
            assert name == "takehome-control-plane"
            return type("C", (), {"attrs": {"HostConfig": {"PortBindings": {
                "30080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "30080"}],
                "6443/tcp": [{"HostIp": "127.0.0.1", "HostPort": "41234"}]}}}})()
    client = type("D", (), {"containers": Containers()})()
    assert KindCluster("takehome").port_bindings(client) == {30080: "127.0.0.1"}


# --- the image build (the docker runtime's builder, on a real engine) --------------------------------

@pytest.mark.docker
@pytest.mark.timeout(600)
def test_build_tag_and_remove_the_candidate_image(docker_engine: Any, tmp_path: Path) -> None:
    from grader.config import load_config
    from harness.cleanup import CleanupStack
    from harness.contract import parse_contract
    from harness.runtimes.base import RuntimeContext
    from harness.runtimes.kube_image import build_candidate_image, remove_images, tag_alias

    run = uuid.uuid4().hex[:12]
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "Dockerfile").write_text("FROM python:3.11-slim\nCOPY app.txt /app.txt\nCMD [\"cat\", \"/app.txt\"]\n")
    (repo / "app.txt").write_text(run)
    ctx = RuntimeContext(run_id=run, repo_dir=repo, work_dir=tmp_path / "work", contract=parse_contract(
        yaml.safe_dump(CONTRACT)), config=load_config(), cleanup=CleanupStack())
    tag, alias = f"takehome-candidate:{run}", f"takehome-kind-test-{run}:latest"
    try:
        info = build_candidate_image(repo, "Dockerfile", ".", tag, ctx, tmp_path / "build.log")
        image = docker_engine.images.get(tag)
        assert info["image_id"] == image.id and image.labels.get("takehome.run_id") == run
        tag_alias(tag, alias)
        assert docker_engine.images.get(alias).id == image.id
        assert sorted(remove_images([tag, alias], tag)) == sorted([tag, alias])
        assert not docker_engine.images.list(name=f"takehome-kind-test-{run}")
        (repo / "Dockerfile").write_text("FROM python:3.11-slim\nRUN exit 7\n")
        with pytest.raises(SubmissionError, match="docker build failed") as err:
            build_candidate_image(repo, "Dockerfile", ".", tag, ctx, tmp_path / "build.log")
        assert "exit 7" in err.value.details or "returned a non-zero code: 7" in err.value.details
        with pytest.raises(SubmissionError, match="outside the repository"):
            build_candidate_image(repo, "../Dockerfile", ".", tag, ctx, tmp_path / "build.log")
    finally:
        for ref in (tag, alias):
            try:
                docker_engine.images.remove(ref, force=True)
            except Exception:  # noqa: BLE001
                pass


# --- the runtime's orchestration, with the cluster and the API faked -------------------------------

FAKE_KUBECTL = r'''#!/usr/bin/env python3
import json, os, sys
# The state dir: the one place of the grader's that a sandboxed command may write.
with open(os.path.join(os.environ["TAKEHOME_STATE_DIR"], "kubectl.log"), "a") as fh:
    fh.write(json.dumps({"argv": sys.argv[1:], "env": dict(os.environ), "uid": os.getuid()}) + "\n")
print("deployment.apps/fraud-v1 created")
'''

CONTRACT = {
    "version": 1, "serving": {"port": 8080, "predict_path": "/v1/models/fraud:predict"},
    "drift": {"signal": "webhook"},
    "runtimes": {"kind": {"manifests": "k8s/", "service": "fraud", "deploy": "bash deploy.sh {version}",
                          "rollback": "bash deploy.sh v1"}},
}


class FakeCluster:
    """Stands in for KindCluster: records what the runtime asks of the cluster."""

    def __init__(self, created: bool) -> None:
        self.name, self.created, self.deleted = "takehome", False, 0
        self.will_create = created
        self.config_file = Path(__file__).resolve().parents[1] / "k8s" / "kind-config.yaml"
        self.loaded: list[str] = []

    def ensure(self) -> bool:
        self.created = self.will_create
        return self.created

    def kubeconfig(self) -> dict[str, Any]:
        return ADMIN

    context_name = "kind-takehome"
    pull_policy = "Never"

    def describe(self) -> str:
        return "kind cluster 'takehome'"

    def publish_images(self, images: list[str], _client: Any, _progress: Any = None) -> list[str]:
        self.loaded = list(images)
        return list(images)

    def port_bindings(self, _client: Any) -> dict[int, str]:
        return {30080: "127.0.0.1", 30081: "127.0.0.1"}

    def node_ports(self, client: Any) -> list[int]:
        from harness.runtimes.kube_cluster import usable_node_ports

        return usable_node_ports(self, client)  # type: ignore[arg-type]

    def node_address(self, _api: Any) -> str:
        return "127.0.0.1"

    def grader_host(self, _client: Any, _api: Any = None) -> str:
        return "172.18.0.1"

    def unload_images(self, images: list[str], _client: Any) -> list[str]:
        self.unloaded = list(images)
        return list(images)

    def delete(self) -> None:
        self.deleted += 1


class FakeKube:
    """Stands in for the API server and the image store: the kube_ops module as the kind module
    sees it, and kube_image's three calls. Answers from ``record`` and records what was asked;
    anything it does not define is the real kube_ops's (so a new call fails loudly, not silently)."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record

    def __getattr__(self, name: str) -> Any:  # only for names this class does not define
        from harness.runtimes import kube_ops

        return getattr(kube_ops, name)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Put this fake where the kind module calls the API and the image store."""
        from harness.runtimes import kind as kind_mod

        monkeypatch.setattr(kind_mod, "ops", self)
        for name in ("build_candidate_image", "tag_alias", "remove_images"):
            monkeypatch.setattr(kind_mod, name, getattr(self, name))

    # --- kube_ops --------------------------------------------------------------------------------
    def api_client(self, kubeconfig: Any, tmp: Any) -> str:
        return "api"

    def server_version(self, api: Any) -> tuple[str, int]:
        return self.record["version"]

    def create_objects(self, api: Any, docs: list[dict[str, Any]]) -> None:
        self.record["created"].extend(docs)

    def request_token(self, api: Any, ns: str) -> str:
        return "tok-secret"

    def used_node_ports(self, api: Any) -> set[int]:
        return {30080}

    def expose(self, api: Any, ns: str, name: str, port: int, ports: list[int]) -> int:
        return ports[0]

    def wait_rollout(self, *args: Any) -> None:
        return None

    def wait_endpoints(self, *args: Any) -> list[str]:
        return ["10.244.0.7"]

    def read_service(self, *args: Any) -> None:
        return None

    def grader_namespaces(self, api: Any) -> list[str]:
        return self.record["others"]

    def grader_namespace_runs(self, api: Any) -> dict[str, tuple[str, float]]:
        return self.record["runs"]

    def delete_namespace(self, api: Any, ns: str, timeout: float) -> bool:
        self.record["deleted_ns"] += 1
        self.record["deleted"].append(ns)
        return True

    # --- kube_image --------------------------------------------------------------------------------
    def build_candidate_image(self, *args: Any) -> dict[str, Any]:
        return {"image": "built"}

    def tag_alias(self, image: str, alias: str) -> None:
        self.record.setdefault("alias", (image, alias))

    def remove_images(self, refs: list[str], own: str) -> list[str]:
        return list(refs)


def fake_record(**values: Any) -> dict[str, Any]:
    """What a FakeKube answers with and records into."""
    return {"created": [], "deleted_ns": 0, "deleted": [], "others": [], "runs": {},
            "version": ("v1.36.1", 36), **values}


@pytest.fixture
def kind_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A KindRuntime on a tiny repo, with every cluster and API call faked and recorded."""
    from grader.config import load_config
    from harness.cleanup import CleanupStack
    from harness.contract import parse_contract
    from harness.runtimes import kind as kind_mod
    from harness.runtimes.base import RuntimeContext

    repo = tmp_path / "repo"
    (repo / "k8s").mkdir(parents=True)
    (repo / "k8s" / "app.yaml").write_text(yaml.safe_dump_all([deployment(), service()]))
    (repo / "deploy.sh").write_text('echo "deploy $1 ns=$TAKEHOME_NAMESPACE kc=$KUBECONFIG"\n')
    kubectl = tmp_path / "bin" / "kubectl"
    kubectl.parent.mkdir()
    # The base interpreter: the sandbox sees the grader's Python installation, not its venv.
    kubectl.write_text(FAKE_KUBECTL.replace("/usr/bin/env python3", str(Path(sys.base_prefix) / "bin" / "python3")))
    kubectl.chmod(0o755)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "must-not-leak")
    monkeypatch.setenv("TAKEHOME_SCENARIO_SEED", "4242")
    monkeypatch.delenv("TAKEHOME_KEEP_CLUSTER", raising=False)
    record = fake_record()
    FakeKube(record).install(monkeypatch)
    monkeypatch.setattr(kind_mod.KindRuntime, "_kubectl", lambda self: str(kubectl))
    monkeypatch.setattr(kind_mod.KindRuntime, "_docker", lambda self: None)

    def make(created: bool = True, sandbox: bool = True) -> Any:
        config = load_config()
        if sandbox:
            from harness.isolation.bwrap import probe

            ok, why = probe()
            if not ok:
                pytest.skip(f"no sandbox here: {why}")
        else:
            config = config.model_copy(update={"local": config.local.model_copy(update={"sandbox": False})})
        ctx = RuntimeContext(run_id=RUN, repo_dir=repo, work_dir=tmp_path / "work", contract=parse_contract(
            yaml.safe_dump(CONTRACT)), config=config, cleanup=CleanupStack(),
            candidate_env={"TAKEHOME_ALERT_WEBHOOK_URL": "http://172.18.0.1:38123/alerts"})
        runtime = kind_mod.KindRuntime(ctx)
        runtime.cluster = FakeCluster(created)  # type: ignore[assignment]
        runtime.record = record
        runtime.kubectl_log = tmp_path / "work" / "state" / "kubectl.log"
        made.append(runtime)
        return runtime

    made: list[Any] = []
    monkeypatch.setenv("TAKEHOME_CACHE_DIR", str(tmp_path / "cache"))  # sandbox records stay in the test's dir
    yield make
    for runtime in made:  # a test that stops early must not leave its sandbox running
        try:
            runtime.down()
        except Exception:  # noqa: BLE001
            pass


def test_build_and_up_give_the_candidate_only_its_namespace(kind_runtime: Any) -> None:
    rt = kind_runtime()
    assert rt.grader_host() == "172.18.0.1"
    rt.build()
    assert rt.cluster.loaded == [IMAGE, PLACEHOLDER] and rt.record["alias"] == (IMAGE, PLACEHOLDER)
    kinds = [d["kind"] for d in rt.record["created"]]
    assert kinds[0] == "Namespace" and "NetworkPolicy" in kinds and "RoleBinding" in kinds
    policy = next(d for d in rt.record["created"] if d["kind"] == "NetworkPolicy")
    assert {"ipBlock": {"cidr": "172.18.0.1/32"}} in policy["spec"]["egress"][-1]["to"]
    assert policy["spec"]["egress"][-1]["ports"][0]["port"] == 38123
    cm = next(d for d in rt.record["created"] if d["kind"] == "ConfigMap")
    assert cm["data"]["TAKEHOME_ALERT_WEBHOOK_URL"].startswith("http://172.18.0.1") and "TAKEHOME_SCENARIO_SEED" not in cm["data"]
    kubeconfig = rt.ctx.work_dir / "kube" / "candidate.kubeconfig"
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    kc_text = kubeconfig.read_text()
    assert "tok-secret" in kc_text and "client-key-data" not in kc_text
    assert not any("client-key" in p.read_text(errors="ignore") for p in rt.ctx.work_dir.rglob("*") if p.is_file()), \
        "the admin credentials never land in the work dir"

    rt.up()
    assert rt.endpoint() == "http://127.0.0.1:30081", "30080 is taken by another Service"
    apply = [json.loads(line) for line in rt.kubectl_log.read_text().splitlines()][-1]
    assert apply["argv"][:2] == ["apply", "-f"] and apply["env"]["KUBECONFIG"] == str(kubeconfig)
    assert "AWS_SECRET_ACCESS_KEY" not in apply["env"] and "TAKEHOME_SCENARIO_SEED" not in apply["env"]
    applied = list(yaml.safe_load_all(Path(apply["argv"][2]).read_text()))
    assert [d["kind"] for d in applied] == ["Service", "Deployment"]
    assert applied[1]["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    assert all(d["metadata"]["namespace"] == NS for d in applied)


def test_commands_run_scrubbed_with_the_namespace_kubeconfig(kind_runtime: Any) -> None:
    rt = kind_runtime()
    rt.build()
    rt.up()
    result = rt.run_command("deploy v2", "bash deploy.sh v2; env", timeout_s=30, env={"TAKEHOME_MODEL_VERSION": "v2"})
    assert result.ok, result.stderr
    env = dict(line.split("=", 1) for line in result.stdout.splitlines()[1:] if "=" in line)
    assert f"deploy v2 ns={NS} kc={rt.ctx.work_dir / 'kube' / 'candidate.kubeconfig'}" in result.stdout
    assert env["TAKEHOME_RUNTIME"] == "kind" and env["TAKEHOME_ENDPOINT"] == "http://127.0.0.1:30081"
    assert env["TAKEHOME_IMAGE"] == IMAGE and env["TAKEHOME_MODEL_VERSION"] == "v2" and env["PORT"] == "8080"
    assert env["TAKEHOME_RUN_ID"] == RUN and env["HOME"].startswith(str(rt.ctx.work_dir))
    assert "AWS_SECRET_ACCESS_KEY" not in env and "TAKEHOME_SCENARIO_SEED" not in env
    assert "deploy v2" in (rt.ctx.work_dir / "logs" / "commands.log").read_text()
    timed = rt.run_command("hang", "sleep 30", timeout_s=0.5)
    assert timed.timed_out and not timed.ok


def test_commands_run_in_the_sandbox_with_only_the_kubeconfig(kind_runtime: Any, tmp_path: Path) -> None:
    import socket

    canary = tmp_path / "grader-secret.txt"
    canary.write_text("canary-7f3a")
    rt = kind_runtime()
    rt.build()
    rt.up()
    with socket.socket() as outside:  # a grader port that is not relayed: unreachable from inside
        outside.bind(("127.0.0.1", 0))
        outside.listen()
        probe = (f"id -u; cat {canary} || echo NO-SECRET; test -e /var/run/docker.sock || echo NO-DOCKER; "
                 f"cat $KUBECONFIG | grep -c tok-secret; "
                 f"(exec 3<>/dev/tcp/127.0.0.1/{outside.getsockname()[1]}) 2>/dev/null || echo NO-NET; "
                 "(exec 3<>/dev/tcp/127.0.0.1/30081) 2>/dev/null && echo NODEPORT-RELAYED; "
                 "touch /usr/x 2>/dev/null || echo RO-SYSTEM; touch $TAKEHOME_STATE_DIR/x && echo STATE-RW; "
                 "sleep 300 & echo started")
        result = rt.run_command("probe", probe, timeout_s=30)
    assert result.ok, result.stderr
    lines = result.stdout.split()
    assert int(lines[0]) >= 420_000 or os.geteuid() != 0, "an unprivileged uid of its own"
    for word in ("NO-SECRET", "NO-DOCKER", "NO-NET", "NODEPORT-RELAYED", "RO-SYSTEM", "STATE-RW", "started"):
        assert word in lines, (word, result.stdout, result.stderr)
    assert "canary-7f3a" not in result.stdout and lines[1] == "NO-SECRET"
    assert "1" in lines, "the namespace's kubeconfig is readable inside"
    # NODEPORT-RELAYED: the node port (and the API server's) has a relay listening inside.
    apply = [json.loads(line) for line in rt.kubectl_log.read_text().splitlines()]
    assert all(a["uid"] == int(lines[0]) for a in apply), "kubectl (apply, kustomize) ran as the sandbox user too"
    rt.down()
    assert rt.teardown_info["sandbox_killed"] >= 1, "the backgrounded sleep died with the sandbox"
    info = rt.isolation_info()
    assert info["sandbox"] == "bubblewrap" and "host-side commands" in info["scope"] and info["uid"] == int(lines[0])
    assert "usage" in info


def test_unsafe_local_runs_commands_unsandboxed_and_says_so(kind_runtime: Any) -> None:
    rt = kind_runtime(sandbox=False)
    rt.build()
    result = rt.run_command("whoami", "id -u", timeout_s=30)
    assert result.ok and result.stdout.strip() == str(os.getuid())
    assert rt.isolation_info()["sandbox"] == "none" and "WITHOUT a sandbox" in rt.isolation_info()["warning"]


def test_old_server_without_pod_security_gets_the_grader_check(kind_runtime: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.runtimes import kind as kind_mod

    rt = kind_runtime()
    rt.record["version"] = ("v1.20.2", 20)
    privileged = {"metadata": {"name": "escape"},
                  "spec": {"containers": [{"name": "c", "securityContext": {"privileged": True}}]}}
    pods: list[dict[str, Any]] = []
    monkeypatch.setattr(kind_mod.collect, "snapshot", lambda api, ns: {"pods": pods})
    deleted: list[str] = []
    monkeypatch.setattr(kind_mod.ops, "delete_workloads", lambda api, ns: deleted.append(ns) or ["Deployment", "Pod"])
    rt.build()
    assert "Kubernetes v1.20.2" in rt.isolation["cluster"] and "no Pod Security admission" in rt.isolation["notes"][0]
    assert rt.run_command("fine", "true", timeout_s=30).ok and not deleted
    pods.append(privileged)
    result = rt.run_command("deploy v2", "true", timeout_s=30)
    assert not result.ok and "pod escape: container 'c': privileged" in result.error and deleted == [NS]
    assert any("Pod Security baseline broken" in h for h in rt.isolation_info()["limits_hit"])
    from types import SimpleNamespace

    from grader.reports._format import isolation_summary

    line = isolation_summary(SimpleNamespace(isolation=rt.isolation_info()))  # type: ignore[arg-type]
    assert line.startswith("kind cluster 'takehome', Kubernetes v1.20.2; bubblewrap sandbox"), line


def test_down_deletes_namespace_then_the_cluster_it_created(kind_runtime: Any) -> None:
    rt = kind_runtime(created=True)
    rt.build()
    rt.down()
    assert rt.record["deleted_ns"] == 1 and rt.cluster.deleted == 1
    assert rt.teardown_info["cluster_deleted"] is True and not hasattr(rt.cluster, "unloaded")
    rt.down()  # idempotent
    assert rt.record["deleted_ns"] == 1 and rt.cluster.deleted == 1 and rt.teardown_info["calls"] == 2


def test_down_spares_a_shared_or_reused_cluster(kind_runtime: Any) -> None:
    reused = kind_runtime(created=False)
    reused.build()
    reused.down()
    assert reused.record["deleted_ns"] == 1 and reused.cluster.deleted == 0
    assert reused.cluster.unloaded == [IMAGE], "the run's own image leaves the node; the shared alias stays"
    shared = kind_runtime(created=True)
    shared.record["others"].append("takehome-otherrun")
    shared.build()
    shared.down()
    assert shared.cluster.deleted == 0 and "otherrun" in shared.teardown_info["cluster_kept"]


def test_keep_cluster_keeps_cluster_and_namespace(kind_runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAKEHOME_KEEP_CLUSTER", "1")
    rt = kind_runtime(created=True)
    rt.build()
    rt.down()
    assert rt.record["deleted_ns"] == 0 and rt.cluster.deleted == 0
    assert "kind delete cluster --name takehome" in rt.teardown_info["kept"]


def test_up_refuses_cluster_scoped_manifests_before_applying(kind_runtime: Any) -> None:
    rt = kind_runtime()
    (rt.ctx.repo_dir / "k8s" / "ns.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: mine}\n")
    rt.build()
    with pytest.raises(SubmissionError, match="does not apply"):
        rt.up()
    assert not rt.kubectl_log.exists(), "nothing is applied when one object is refused"


def test_cleanup_deletes_only_the_namespaces_of_dead_gradings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.isolation import records
    from harness.runtimes import kind as kind_mod

    monkeypatch.setenv("TAKEHOME_CACHE_DIR", str(tmp_path / "cache"))
    dead = subprocess.Popen(["true"])
    dead.wait()
    records.write({"name": "grading-liverun", "grader_pid": os.getpid(), "work_dir": str(tmp_path / "w1")})
    records.write({"name": "grading-deadrun", "grader_pid": dead.pid, "work_dir": str(tmp_path / "w2")})
    assert records.live_gradings() == {"liverun"}
    record = fake_record(runs={"takehome-deadrun": ("deadrun", 60.0), "takehome-liverun": ("liverun", 60.0),
                               "takehome-norecord": ("norecord", 7 * 3600.0),
                               "takehome-otherhost": ("otherhost", 600.0)})
    deleted = record["deleted"]
    FakeKube(record).install(monkeypatch)
    monkeypatch.setattr(kind_mod, "cli_status", lambda: (True, "fake"))
    cluster = FakeCluster(created=False)
    cluster.exists = lambda: True  # type: ignore[attr-defined]
    lines = kind_mod.cleanup_stale(cluster)  # type: ignore[arg-type]
    assert deleted == ["takehome-deadrun", "takehome-norecord"], lines
    assert any("takehome-liverun kept" in line for line in lines)
    assert any("takehome-otherhost kept: no grading of this host knows it" in line for line in lines), \
        "a recent namespace without a record may be another grader's"
    assert records.known_gradings() == {"liverun", "deadrun"}
    cluster.exists = lambda: False  # type: ignore[attr-defined]
    assert "nothing to clean" in kind_mod.cleanup_stale(cluster)[0]  # type: ignore[arg-type]


# --- end to end on a real kind cluster -------------------------------------------------------------

@pytest.mark.kind
@pytest.mark.timeout(3600)
def test_reference_solution_scores_at_least_95_on_kind(tmp_path: Path, kind_cluster: KindCluster) -> None:
    from calibration.assemble import assemble
    from grader.lifecycle import GradeRequest, grade
    from grader.reports.write import write_reports

    repo = assemble("reference-fastapi", tmp_path / "reference-fastapi")
    report = grade(GradeRequest(repo=str(repo), runtime="kind", progress=print))
    write_reports(report, Path(os.environ.get("TAKEHOME_KIND_REPORTS", tmp_path / "reports")))
    assert report.status == "completed", report.error
    assert report.score >= 95, [(s.id, s.points, s.max_points) for s in report.sections]
