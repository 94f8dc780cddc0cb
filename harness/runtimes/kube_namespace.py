"""What the kind runtime creates for one candidate: a namespace fenced by quota, limits, a network
policy and Pod Security, a ServiceAccount whose Role stops at the namespace, and a kubeconfig
holding only that ServiceAccount's token.

Every function here is pure (plain dicts in, plain dicts out), so the objects can be validated
against the Kubernetes schemas and reviewed without a cluster. ``python -m
harness.runtimes.kube_namespace`` prints them for a sample run (``k8s/namespace-template.yaml``).

Choices, in one place:

* **RBAC**: the candidate's deploy and rollback commands, and the apply of their manifests, run
  as ``takehome-candidate``. Its Role covers what a rollout needs (Deployments, ReplicaSets,
  StatefulSets, their ``scale``; Pods, ``pods/log``, ``pods/exec``; Services, ConfigMaps, Secrets,
  ServiceAccounts, PVCs, Jobs) with every verb, and read-only access to events, endpoints,
  EndpointSlices, the quota and the limits. No RBAC objects, no NetworkPolicies, nothing
  cluster-scoped: Kubernetes' own escalation check then stops the candidate from granting more.
* **NetworkPolicy**: ingress from pods of the same namespace, and from anywhere to
  ``serving.port`` only (the grader's NodePort traffic reaches the pod from the node's address
  after kube-proxy, so a narrower source cannot be written portably; kindnet exempts kubelet
  probes). Egress only to the same namespace, to cluster DNS, and, when the grader listens for
  webhooks, to the grader's address on that one port: the prompt says "no network access beyond
  the grader" at run time.
* **Pod Security**: ``baseline`` is enforced (no privileged pods, host namespaces, hostPath or
  host ports: the ways out of a pod onto the node), ``restricted`` is only warned about.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

#: Label carried by every object the grader creates, so teardown never relies on memory.
RUN_LABEL = "takehome.run_id"
MANAGED_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "takehome-grader"
#: ServiceAccount, Role and RoleBinding name.
CANDIDATE_SA = "takehome-candidate"
#: ConfigMap with the TAKEHOME_* variables, for pods the candidate's own commands create (envFrom).
ENV_CONFIGMAP = "takehome-env"
#: Lifetime of the candidate's token: longer than any grading run (the namespace dies first).
TOKEN_EXPIRATION_S = 4 * 3600

_ALL = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]
_READ = ["get", "list", "watch"]

#: (apiGroup, resources, verbs) of the candidate's Role. Single source of truth: the kinds a
#: candidate may put in its manifests are derived from it (``ALLOWED_KINDS``).
ROLE_RULES: list[tuple[str, list[str], list[str]]] = [
    ("", ["pods", "services", "configmaps", "secrets", "serviceaccounts", "persistentvolumeclaims"], _ALL),
    ("", ["pods/log"], ["get"]),
    ("", ["pods/exec"], ["get", "create"]),
    ("", ["events", "endpoints", "resourcequotas", "limitranges"], _READ),
    ("apps", ["deployments", "replicasets", "statefulsets"], _ALL),
    ("apps", ["deployments/scale", "replicasets/scale", "statefulsets/scale"], ["get", "update", "patch"]),
    ("apps", ["controllerrevisions"], _READ),
    ("batch", ["jobs"], _ALL),
    ("discovery.k8s.io", ["endpointslices"], _READ),
    ("events.k8s.io", ["events"], _READ),
]

#: Manifest kinds per writable resource of ``ROLE_RULES``.
_KIND_OF: dict[tuple[str, str], str] = {
    ("", "pods"): "Pod", ("", "services"): "Service", ("", "configmaps"): "ConfigMap",
    ("", "secrets"): "Secret", ("", "serviceaccounts"): "ServiceAccount",
    ("", "persistentvolumeclaims"): "PersistentVolumeClaim", ("apps", "deployments"): "Deployment",
    ("apps", "replicasets"): "ReplicaSet", ("apps", "statefulsets"): "StatefulSet", ("batch", "jobs"): "Job",
}

#: (apiGroup, kind) a candidate's manifests may contain.
ALLOWED_KINDS: frozenset[tuple[str, str]] = frozenset(
    (group, _KIND_OF[(group, res)]) for group, resources, verbs in ROLE_RULES if "create" in verbs
    for res in resources if (group, res) in _KIND_OF)

#: Default and maximum container resources (LimitRange) and the namespace's totals (ResourceQuota).
#: CPU limits are generous on purpose: CFS throttling under a tight limit wrecks p99 latency.
LIMITS = {
    "default": {"cpu": "2", "memory": "2Gi"},
    "defaultRequest": {"cpu": "100m", "memory": "256Mi"},
    "max": {"cpu": "4", "memory": "6Gi"},
}
QUOTA = {
    "pods": "20", "requests.cpu": "4", "requests.memory": "8Gi", "limits.cpu": "16", "limits.memory": "24Gi",
    "services": "10", "services.nodeports": "4", "services.loadbalancers": "0",
    "persistentvolumeclaims": "4", "requests.storage": "10Gi", "configmaps": "30", "secrets": "30",
    "count/deployments.apps": "10", "count/statefulsets.apps": "4", "count/jobs.batch": "10",
}


def namespace_name(run_id: str) -> str:
    """The run's namespace: ``takehome-<run_id>`` (a DNS label: lower case, at most 63 characters)."""
    safe = "".join(c if c.isalnum() else "-" for c in run_id.lower()).strip("-")
    return f"takehome-{safe}"[:63].rstrip("-")


def labels(run_id: str) -> dict[str, str]:
    """Labels on every object the grader creates for a run."""
    return {RUN_LABEL: run_id, MANAGED_LABEL: MANAGED_BY}


def _meta(name: str, namespace: str, run_id: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": labels(run_id)}


#: Set in a grading Job's pod (``takehome batch --on-cluster``); its value labels the namespace.
GRADER_JOB_ENV, GRADER_JOB_LABEL = "TAKEHOME_GRADER_JOB", "takehome.grader-job"


def namespace_object(namespace: str, run_id: str) -> dict[str, Any]:
    """The Namespace, with Pod Security admission labels (and, when a grading Job of
    ``takehome batch --on-cluster`` grades, the Job's name: its collector deletes what an
    evicted or timed-out pod left behind)."""
    job = os.environ.get(GRADER_JOB_ENV, "")
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {
                **labels(run_id), **({GRADER_JOB_LABEL: job} if job else {}),
                "pod-security.kubernetes.io/enforce": "baseline",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted"}}}


def network_policy(namespace: str, run_id: str, serving_port: int,
                   grader_ip: str | None = None, grader_port: int | None = None) -> dict[str, Any]:
    """Deny by default; allow what grading needs (see the module docstring)."""
    egress: list[dict[str, Any]] = [
        {"to": [{"podSelector": {}}]},
        {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                 "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
         "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
    ]
    if grader_ip and grader_port:
        egress.append({"to": [{"ipBlock": {"cidr": f"{grader_ip}/32"}}],
                       "ports": [{"protocol": "TCP", "port": grader_port}]})
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _meta("takehome-isolation", namespace, run_id),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                     "ingress": [{"from": [{"podSelector": {}}]},
                                 {"ports": [{"protocol": "TCP", "port": serving_port}]}],
                     "egress": egress}}


def resource_quota(namespace: str, run_id: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": _meta("takehome-quota", namespace, run_id),
            "spec": {"hard": dict(QUOTA)}}


def limit_range(namespace: str, run_id: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "LimitRange", "metadata": _meta("takehome-limits", namespace, run_id),
            "spec": {"limits": [{"type": "Container", **{k: dict(v) for k, v in LIMITS.items()}}]}}


def rbac_objects(namespace: str, run_id: str) -> list[dict[str, Any]]:
    """The candidate's ServiceAccount, its namespace-bound Role, and the RoleBinding."""
    rules = [{"apiGroups": [group], "resources": list(resources), "verbs": list(verbs)}
             for group, resources, verbs in ROLE_RULES]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(CANDIDATE_SA, namespace, run_id),
         "automountServiceAccountToken": False},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": _meta(CANDIDATE_SA, namespace, run_id), "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": _meta(CANDIDATE_SA, namespace, run_id),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": CANDIDATE_SA},
         "subjects": [{"kind": "ServiceAccount", "name": CANDIDATE_SA, "namespace": namespace}]},
    ]


def env_configmap(namespace: str, run_id: str, env: dict[str, str]) -> dict[str, Any]:
    """The TAKEHOME_* variables pods get, for ``envFrom`` in pods the candidate's commands create."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(ENV_CONFIGMAP, namespace, run_id),
            "data": dict(sorted(env.items()))}


def namespace_objects(run_id: str, serving_port: int, env: dict[str, str],
                      grader_ip: str | None = None, grader_port: int | None = None) -> list[dict[str, Any]]:
    """Everything created for a run, in creation order (the Namespace first)."""
    ns = namespace_name(run_id)
    return [namespace_object(ns, run_id), resource_quota(ns, run_id), limit_range(ns, run_id),
            network_policy(ns, run_id, serving_port, grader_ip, grader_port), *rbac_objects(ns, run_id),
            env_configmap(ns, run_id, env)]


# --- kubeconfigs ---------------------------------------------------------------------------------

def admin_endpoint(admin_kubeconfig: dict[str, Any]) -> tuple[str, str]:
    """(server URL, base64 CA data) of the current context's cluster in a kubeconfig (kind's)."""
    clusters = {c.get("name"): c.get("cluster", {}) for c in admin_kubeconfig.get("clusters") or []}
    contexts = {c.get("name"): c.get("context", {}) for c in admin_kubeconfig.get("contexts") or []}
    current = contexts.get(admin_kubeconfig.get("current-context"), {})
    cluster = clusters.get(current.get("cluster")) or (next(iter(clusters.values())) if clusters else {})
    server, ca = cluster.get("server"), cluster.get("certificate-authority-data")
    if not server or not ca:
        raise ValueError("the cluster's kubeconfig has no server or certificate-authority-data")
    return str(server), str(ca)


def candidate_kubeconfig(server: str, ca_data: str, token: str, namespace: str,
                         cluster_name: str = "takehome") -> dict[str, Any]:
    """A kubeconfig that holds only the candidate ServiceAccount's token, defaulting to its namespace."""
    user = f"{CANDIDATE_SA}@{namespace}"
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": cluster_name, "cluster": {"server": server, "certificate-authority-data": ca_data}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": namespace, "context": {"cluster": cluster_name, "user": user, "namespace": namespace}}],
        "current-context": namespace,
    }


def write_private(path: Path, kubeconfig: dict[str, Any]) -> Path:
    """Write a kubeconfig readable by its owner only (mode 0600 from creation, never wider)."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(kubeconfig, fh, sort_keys=False)
    return path


def token_request(expiration_s: int = TOKEN_EXPIRATION_S) -> dict[str, Any]:
    """Body of the TokenRequest (authentication.k8s.io/v1) for the candidate's token."""
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": int(expiration_s)}}


def main() -> None:  # pragma: no cover - exercised by the golden-file test through render_template
    sys.stdout.write(render_template())


def render_template() -> str:
    """The objects of a sample run as YAML (``k8s/namespace-template.yaml``)."""
    import yaml

    env = {"PORT": "8080", "TAKEHOME_RUNTIME": "kind", "TAKEHOME_RUN_ID": "0123456789ab",
           "TAKEHOME_ALERT_WEBHOOK_URL": "http://172.18.0.1:38123/alerts"}
    docs = namespace_objects("0123456789ab", 8080, env, grader_ip="172.18.0.1", grader_port=38123)
    head = ("# GENERATED by `python -m harness.runtimes.kube_namespace`: what the kind runtime creates\n"
            "# for one grading run (sample run id 0123456789ab, serving.port 8080, a webhook receiver on\n"
            "# 172.18.0.1:38123). Do not edit; tests/test_k8s_manifests.py checks it is up to date.\n")
    return head + "".join("---\n" + yaml.safe_dump(d, sort_keys=False) for d in docs)


if __name__ == "__main__":  # pragma: no cover
    main()
