"""The candidate's Kubernetes manifests: load them (a directory of YAML or a kustomization), then
rewrite them for the grader's cluster.

Pure apart from reading files and running ``kubectl kustomize`` (which renders locally, without a
cluster). The rewrite substitutes the built image for the placeholder, forces the run's namespace,
sets ``imagePullPolicy`` so no pod tries a registry for the candidate's image, adds the TAKEHOME_*
variables to the candidate's containers, refuses kinds the candidate may not create (with the
reason), and prepares the named Service to become a NodePort on a port the kind config maps.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import SubmissionError
from harness.runtimes import kube_podsecurity as podsec
from harness.runtimes.kube_namespace import ALLOWED_KINDS, labels

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
KUSTOMIZE_TIMEOUT_S = 60.0

#: Kinds that are cluster-scoped (or cluster-wide in effect): never accepted from a candidate.
CLUSTER_SCOPED = frozenset({
    "Namespace", "Node", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "StorageClass", "PriorityClass", "IngressClass", "RuntimeClass", "APIService", "CSIDriver", "CSINode",
    "VolumeAttachment", "CertificateSigningRequest", "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding", "FlowSchema", "PriorityLevelConfiguration",
    "ClusterTrustBundle", "DeviceClass", "ComponentStatus", "IPAddress", "ServiceCIDR", "VolumeAttributesClass",
})
#: Workload kinds and where their pod spec lives.
_POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"), "ReplicaSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"), "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"), "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
#: Apply order: what others refer to first (like Helm's install order).
_APPLY_ORDER = ["ServiceAccount", "Secret", "ConfigMap", "PersistentVolumeClaim", "Service",
                "Deployment", "StatefulSet", "ReplicaSet", "Job", "Pod"]


def _group(api_version: str) -> str:
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def _describe(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"


# --- loading -------------------------------------------------------------------------------------

class _NoAliasLoader(yaml.SafeLoader):
    """A SafeLoader that refuses aliases before anything is expanded: a few hundred bytes of
    nested aliases (a "billion laughs" bomb) would otherwise take gigabytes when the grader
    copies or dumps the manifests."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, f"YAML aliases (*{event.anchor}) are not allowed in "
                                              "the manifests; write the values out", event.start_mark)
        return super().compose_node(parent, index)


def parse_documents(text: str, source: str) -> list[dict[str, Any]]:
    """The non-empty YAML documents of ``text``, with ``kind: List`` flattened. Aliases are refused."""
    try:
        raw = [d for d in yaml.load_all(text, Loader=_NoAliasLoader) if d is not None]  # a SafeLoader
    except yaml.YAMLError as exc:
        raise SubmissionError(f"{source}: not valid YAML: {exc}") from None
    docs: list[dict[str, Any]] = []
    for index, doc in enumerate(raw):
        if not isinstance(doc, dict):
            raise SubmissionError(f"{source}: document {index + 1} is a {type(doc).__name__}, not a mapping")
        if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
            docs.extend(i for i in doc["items"] if isinstance(i, dict))
        else:
            docs.append(doc)
    for doc in docs:
        if not doc.get("apiVersion") or not doc.get("kind") or not (doc.get("metadata") or {}).get("name"):
            raise SubmissionError(f"{source}: every object needs apiVersion, kind and metadata.name "
                                  f"(found {_describe(doc)} without one)")
    return docs


def is_kustomization(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in KUSTOMIZATION_FILES)


def resolve_manifests_path(repo_dir: Path, rel: str) -> Path:
    """``runtimes.kind.manifests`` as a path inside the repository (else SubmissionError)."""
    repo = repo_dir.resolve()
    path = (repo / rel).resolve()
    if Path(rel).is_absolute() or not path.is_relative_to(repo):
        raise SubmissionError(f"runtimes.kind.manifests ({rel!r}) points outside the repository")
    if not path.exists():
        raise SubmissionError(f"takehome.yaml names {rel!r} as runtimes.kind.manifests, but the repository has "
                              "no such file or directory")
    return path


def render_manifests(path: Path, kubectl: str = "kubectl", env: dict[str, str] | None = None,
                     timeout_s: float = KUSTOMIZE_TIMEOUT_S, wrap: Callable[[list[str]], list[str]] | None = None,
                     preexec: Callable[[], None] | None = None) -> tuple[str, str]:
    """The manifests as one YAML stream, and how they were read (for the report).

    A kustomization is rendered with ``kubectl kustomize`` (locally; no plugins, no Helm); a
    directory is read like ``kubectl apply -f DIR`` (its ``.yaml``/``.yml``/``.json`` files, not
    sub-directories, in name order); a file is read as is. ``wrap`` and ``preexec`` run
    ``kubectl kustomize`` in the candidate's sandbox: the kustomization is candidate input.
    """
    if is_kustomization(path):
        argv = [kubectl, "kustomize", str(path)]
        try:
            proc = subprocess.run(wrap(argv) if wrap else argv, capture_output=True, text=True, timeout=timeout_s,
                                  env=env, stdin=subprocess.DEVNULL, preexec_fn=preexec)
        except subprocess.TimeoutExpired:
            raise SubmissionError(f"kubectl kustomize did not finish within {timeout_s:.0f}s",
                                  command=" ".join(argv)) from None
        except OSError as exc:
            raise SubmissionError(f"could not run kubectl kustomize: {exc}", command=" ".join(argv)) from None
        if proc.returncode != 0:
            raise SubmissionError("your kustomization does not render (kubectl kustomize failed)",
                                  command=" ".join(argv), details=(proc.stderr or proc.stdout)[-4000:])
        return proc.stdout, f"kustomization {path.name}/ rendered with kubectl kustomize"
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
        if not files:
            raise SubmissionError(f"the manifests directory {path.name}/ holds no .yaml, .yml or .json file "
                                  "(sub-directories are not read; use a kustomization to combine them)")
        texts = [f"# source: {p.name}\n" + p.read_text(encoding="utf-8", errors="replace") for p in files]
        return "\n---\n".join(texts), f"{len(files)} file(s) in {path.name}/"
    return path.read_text(encoding="utf-8", errors="replace"), f"file {path.name}"


# --- rewriting ------------------------------------------------------------------------------------

@dataclass
class Rewritten:
    """The manifests ready to apply, what was changed, and what the grader must know."""

    documents: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    images_replaced: int = 0
    service: dict[str, Any] | None = None

    def yaml(self) -> str:
        return "".join("---\n" + yaml.safe_dump(d, sort_keys=False) for d in self.documents)


def check_kinds(docs: list[dict[str, Any]]) -> None:
    """Refuse cluster-scoped kinds and kinds outside the candidate's Role, naming each one."""
    allowed = sorted(k for _, k in ALLOWED_KINDS)
    problems = []
    for doc in docs:
        kind, group = str(doc["kind"]), _group(str(doc["apiVersion"]))
        if kind in CLUSTER_SCOPED:
            problems.append(f"{_describe(doc)}: {kind} is cluster-scoped; a submission may only create objects "
                            "in the namespace the grader gives it")
        elif (group, kind) not in ALLOWED_KINDS:
            problems.append(f"{_describe(doc)} ({doc['apiVersion']}): not allowed in the grading namespace "
                            f"(allowed kinds: {', '.join(allowed)})")
    if problems:
        raise SubmissionError(f"the manifests contain {len(problems)} object(s) the grader does not apply",
                              details="\n".join(problems))


def check_pod_security(docs: list[dict[str, Any]]) -> None:
    """Refuse pod templates the namespace's Pod Security ``baseline`` forbids, naming each violation.

    The API server enforces it too from Kubernetes 1.23; older ones do not, so the grader checks.
    """
    problems = [f"{_describe(doc)}: {problem}" for doc in docs
                for problem in podsec.violations(pod_spec(doc) or {}, pod_annotations(doc))]
    if problems:
        raise SubmissionError("the manifests break the Pod Security baseline the grading namespace enforces "
                              "(no privileged containers, host namespaces, hostPath volumes, host ports or added "
                              "capabilities)", details="\n".join(problems))


def pod_annotations(doc: dict[str, Any]) -> dict[str, str]:
    """The annotations of the pods a workload makes (a Pod's own)."""
    if doc.get("kind") == "Pod":
        return dict((doc.get("metadata") or {}).get("annotations") or {})
    spec = pod_spec(doc)
    node: Any = doc
    for key in _POD_SPEC_PATHS.get(str(doc.get("kind")), ())[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    return dict(((node or {}).get("metadata") or {}).get("annotations") or {}) if spec is not None else {}


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec inside a workload object, or None."""
    node: Any = doc
    for key in _POD_SPEC_PATHS.get(str(doc.get("kind")), ()):
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) and doc.get("kind") in _POD_SPEC_PATHS else None


def _same_image(ref: str, placeholder: str) -> bool:
    def norm(r: str) -> str:
        r = r.strip()
        for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/"):
            if r.startswith(prefix):
                r = r[len(prefix):]
        last = r.rsplit("/", 1)[-1]
        return r if ":" in last or "@" in last else r + ":latest"
    return norm(ref) == norm(placeholder)


def _rewrite_containers(spec: dict[str, Any], placeholder: str, image: str, env: dict[str, str],
                        pull_policy: str = "Never") -> int:
    replaced = 0
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            if not isinstance(container, dict):
                continue
            if _same_image(str(container.get("image", "")), placeholder):
                container["image"] = image
                container["imagePullPolicy"] = pull_policy  # Never: loaded into the node, no registry to ask
                replaced += 1
                have = {e.get("name") for e in container.get("env") or [] if isinstance(e, dict)}
                extra = [{"name": k, "value": v} for k, v in sorted(env.items()) if k not in have]
                if extra:
                    container["env"] = [*(container.get("env") or []), *extra]
            elif container.get("imagePullPolicy") == "Always":
                container["imagePullPolicy"] = "IfNotPresent"  # no registry may be reachable
    return replaced


def rewrite(docs: list[dict[str, Any]], *, namespace: str, run_id: str, placeholder: str, image: str,
            service_name: str, env: dict[str, str] | None = None, pull_policy: str = "Never") -> Rewritten:
    """Make the candidate's objects fit the grading namespace (see the module docstring).

    ``pull_policy`` for the containers that run the built image: ``Never`` where it was loaded into
    the nodes, ``IfNotPresent`` where it was pushed to a registry.
    """
    check_kinds(docs)
    check_pod_security(docs)
    out = Rewritten(documents=[])
    seen: set[tuple[str, str]] = set()
    for original in docs:
        doc = yaml.safe_load(yaml.safe_dump(original))  # a deep copy that stays plain YAML
        meta = doc.setdefault("metadata", {})
        key = (str(doc["kind"]), str(meta["name"]))
        if key in seen:
            raise SubmissionError(f"the manifests define {key[0]}/{key[1]} twice")
        seen.add(key)
        declared = meta.get("namespace")
        if declared and declared != namespace:
            out.notes.append(f"{_describe(doc)}: namespace {declared!r} replaced by {namespace!r}")
        meta["namespace"] = namespace
        meta["labels"] = {**(meta.get("labels") or {}), **labels(run_id)}
        spec = pod_spec(doc)
        if spec is not None:
            out.images_replaced += _rewrite_containers(spec, placeholder, image, env or {}, pull_policy)
        if doc["kind"] == "Service" and meta["name"] == service_name:
            out.service = doc
            _prepare_service(doc, out.notes)
        out.documents.append(doc)
    if out.service is None:
        names = [d["metadata"]["name"] for d in out.documents if d["kind"] == "Service"]
        raise SubmissionError(f"takehome.yaml names the Service {service_name!r} (runtimes.kind.service), but the "
                              f"manifests define no Service by that name (Services found: {names or 'none'})")
    if out.images_replaced == 0:
        out.notes.append(f"no container uses the image placeholder {placeholder!r}: nothing in the manifests runs "
                         "the image the grader built (the deploy command must create the workloads)")
    out.documents.sort(key=lambda d: _APPLY_ORDER.index(d["kind"]) if d["kind"] in _APPLY_ORDER else 99)
    return out


def _prepare_service(doc: dict[str, Any], notes: list[str]) -> None:
    """Leave the Service's type to the grader: it becomes a NodePort by a patch after the apply.

    Patching (rather than applying) the type keeps it out of ``last-applied-configuration``, so a
    deploy command that re-applies the candidate's own Service file leaves the NodePort in place.
    """
    spec = doc.setdefault("spec", {})
    kind = spec.get("type", "ClusterIP")
    if kind == "ExternalName":
        raise SubmissionError(f"Service {doc['metadata']['name']!r} is an ExternalName Service; the grader needs "
                              "one that selects your pods")
    if not spec.get("ports"):
        raise SubmissionError(f"Service {doc['metadata']['name']!r} declares no ports")
    if kind != "ClusterIP" or "type" in spec:
        spec.pop("type", None)
        if kind != "ClusterIP":
            notes.append(f"Service {doc['metadata']['name']}: type {kind} dropped; the grader makes it a NodePort")
    for key in ("externalTrafficPolicy", "loadBalancerIP", "loadBalancerSourceRanges", "allocateLoadBalancerNodePorts"):
        spec.pop(key, None)
    for port in spec["ports"]:
        if isinstance(port, dict):
            port.pop("nodePort", None)


def service_port(service: dict[str, Any], serving_port: int) -> dict[str, Any]:
    """The Service port that carries ``serving.port``: its ``targetPort`` (or ``port``) equals it, else the
    only/first port."""
    ports = [p for p in (service.get("spec") or {}).get("ports") or [] if isinstance(p, dict)]
    if not ports:
        raise SubmissionError(f"Service {service.get('metadata', {}).get('name')!r} declares no ports")
    for p in ports:
        if str(p.get("targetPort", p.get("port"))) == str(serving_port):
            return p
    for p in ports:
        if str(p.get("port")) == str(serving_port):
            return p
    return ports[0]


def node_port_patch(service: dict[str, Any], serving_port: int, node_port: int) -> dict[str, Any]:
    """Strategic-merge patch turning the Service into a NodePort with ``node_port`` on the serving port."""
    port = service_port(service, serving_port)
    entry: dict[str, Any] = {"port": port["port"], "nodePort": node_port}
    if port.get("protocol"):
        entry["protocol"] = port["protocol"]
    return {"spec": {"type": "NodePort", "ports": [entry]}}


def node_port_of(live_service: dict[str, Any], serving_port: int) -> int | None:
    """The node port on the serving port of a live Service (None unless it is a NodePort)."""
    spec = live_service.get("spec") or {}
    if spec.get("type") not in ("NodePort", "LoadBalancer"):
        return None
    try:
        value = service_port(live_service, serving_port).get("nodePort")
    except SubmissionError:
        return None
    return int(value) if value else None


def pick_node_port(mapped: list[int], in_use: set[int]) -> list[int]:
    """The mapped node ports not taken by another Service, in order (the caller tries each)."""
    return [p for p in mapped if p not in in_use]
