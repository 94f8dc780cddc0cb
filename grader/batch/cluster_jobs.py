"""Grading Jobs on a Kubernetes cluster (``takehome batch --on-cluster``): the objects, the report
archive a Job hands back through its log, and what a finished Job's status means.

Pure functions over plain dicts (the manifests) and over the API's status objects read as dicts,
so each decision is unit-tested without a cluster; ``cluster_runner`` does the talking.

One Job per candidate, in the team's grading namespace:

* ``backoffLimit: 0``: a grading is not idempotent (it deploys, loads and rolls back a live
  service), so a failed pod is reported, never silently run again;
* ``activeDeadlineSeconds``: the batch's wall-clock cap, enforced by the cluster even when the
  batch process is gone;
* the scenario seed comes from the batch's Secret (``secretKeyRef``), never from the manifest;
* the grader's pod grades through the ``kubernetes`` runtime into its own namespace, labelled
  ``takehome.grader-job=<job name>`` so that a pod that was evicted or timed out leaves nothing
  the collector cannot find and delete.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tarfile
from pathlib import Path
from typing import Any

import yaml

from harness.runtimes.kube_namespace import GRADER_JOB_ENV, GRADER_JOB_LABEL

MANAGED_LABEL, MANAGED_BY = "app.kubernetes.io/managed-by", "takehome-grader"
BATCH_LABEL = "takehome.batch"
CANDIDATE_LABEL = "takehome.candidate"
#: On the namespace a Job's grading creates, from the env var the Job sets.
JOB_LABEL, JOB_ENV = GRADER_JOB_LABEL, GRADER_JOB_ENV
SECRET_SEED_KEY, SECRET_CONFIG_KEY = "scenario-seed", "config.yaml"
CONFIG_MOUNT = "/etc/takehome"
#: The report folder travels back in the pod's log between these lines, base64 of a tar.gz.
ARCHIVE_BEGIN = "----- takehome report archive begin -----"
ARCHIVE_END = "----- takehome report archive end -----"
#: Kubelets rotate container logs at 10 MiB by default; a report folder is far smaller.
ARCHIVE_MAX_BYTES = 8 * 2**20
_LINE = 76


def _dns_label(text: str, limit: int = 63) -> str:
    safe = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if len(safe) <= limit:
        return safe
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{safe[:limit - 9].rstrip('-')}-{digest}"


def job_name(batch_id: str, candidate: str) -> str:
    """The candidate's Job: stable for the batch, so ``--resume`` finds a Job still running."""
    return _dns_label(f"takehome-{batch_id[:8]}-{candidate}")


def secret_name(batch_id: str) -> str:
    return _dns_label(f"takehome-{batch_id[:8]}-seed")


def _labels(batch_id: str, candidate: str | None = None) -> dict[str, str]:
    labels = {MANAGED_LABEL: MANAGED_BY, BATCH_LABEL: batch_id[:63]}
    if candidate:
        labels[CANDIDATE_LABEL] = _dns_label(candidate)
    return labels


#: Keys of the config's ``kubernetes`` section that describe the batch host's view of the cluster:
#: inside a Job the grader reaches the API through the pod's ServiceAccount, and candidates'
#: pods reach the grader at the pod's own address.
HOST_ONLY_KUBERNETES_KEYS = ("kubeconfig", "context", "grader_host")


def pod_config_text(config_text: str) -> str:
    """The batch's grader config as a Job's grader uses it: without the host-only keys of its
    ``kubernetes`` section (a kubeconfig path on the team's machine does not exist in the pod)."""
    doc = yaml.safe_load(config_text)
    if not isinstance(doc, dict) or not isinstance(doc.get("kubernetes"), dict):
        return config_text
    doc["kubernetes"] = {k: v for k, v in doc["kubernetes"].items() if k not in HOST_ONLY_KUBERNETES_KEYS}
    return yaml.safe_dump(doc, sort_keys=False)


def seed_secret(batch_id: str, namespace: str, seed: int | None, config_text: str | None) -> dict[str, Any]:
    """The batch's Secret: the team's scenario seed and grader config (which may hold it too),
    the config as :func:`pod_config_text` gives it."""
    data: dict[str, str] = {}
    if seed is not None:
        data[SECRET_SEED_KEY] = base64.b64encode(str(seed).encode()).decode()
    if config_text is not None:
        data[SECRET_CONFIG_KEY] = base64.b64encode(pod_config_text(config_text).encode()).decode()
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": secret_name(batch_id), "namespace": namespace, "labels": _labels(batch_id)},
            "data": data}


def grading_job(*, batch_id: str, candidate: str, repo: str, ref: str | None, namespace: str, cfg: Any,
                cap_s: float, has_config: bool) -> dict[str, Any]:
    """The Job that grades one candidate (``cfg``: the config's ``grading_jobs`` section)."""
    name = job_name(batch_id, candidate)
    args = ["job-run", "--repo", repo]
    if ref:
        args += ["--ref", ref]
    if has_config:
        args += ["--config", f"{CONFIG_MOUNT}/{SECRET_CONFIG_KEY}"]
    env: list[dict[str, Any]] = [
        {"name": "TAKEHOME_SCENARIO_SEED", "valueFrom": {"secretKeyRef": {
            "name": secret_name(batch_id), "key": SECRET_SEED_KEY, "optional": True}}},
        {"name": JOB_ENV, "value": name},
        # Each Job has its pod to itself; gradings on other nodes do not share its CPU.
        {"name": "TAKEHOME_CONCURRENT_GRADINGS", "value": "1"},
    ]
    mounts: list[dict[str, Any]] = [{"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True}]
    volumes: list[dict[str, Any]] = [{"name": "config", "secret": {
        "secretName": secret_name(batch_id), "optional": True, "defaultMode": 0o400}}]
    if cfg.docker_host:
        env.append({"name": "DOCKER_HOST", "value": cfg.docker_host})
    elif cfg.docker_socket:
        mounts.append({"name": "docker", "mountPath": "/var/run/docker.sock"})
        volumes.append({"name": "docker", "hostPath": {"path": cfg.docker_socket, "type": "Socket"}})
    container: dict[str, Any] = {
        "name": "grader", "image": cfg.image, "imagePullPolicy": cfg.image_pull_policy,
        "args": args, "env": env, "volumeMounts": mounts,
        "resources": {"requests": {"cpu": cfg.cpu, "memory": cfg.memory},
                      "limits": {"cpu": cfg.cpu, "memory": cfg.memory}},
        # The candidate's commands run in the bubblewrap sandbox inside this pod, which needs
        # namespaces an unprivileged pod cannot create. The pod runs the kit's code only.
        "securityContext": {"privileged": True},
    }
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "serviceAccountName": cfg.service_account,
                                "terminationGracePeriodSeconds": int(cfg.termination_grace_s),
                                "containers": [container], "volumes": volumes}
    if cfg.node_selector:
        pod_spec["nodeSelector"] = dict(cfg.node_selector)
    labels = _labels(batch_id, candidate)
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": namespace, "labels": labels,
                         "annotations": {"takehome/candidate": candidate, "takehome/repo": repo}},
            "spec": {"backoffLimit": 0, "activeDeadlineSeconds": max(1, int(cap_s)), "completions": 1,
                     "parallelism": 1,
                     "template": {"metadata": {"labels": labels}, "spec": pod_spec}}}


def setup_objects(namespace: str, service_account: str) -> list[dict[str, Any]]:
    """What a cluster admin applies once: the grading namespace and the graders' ServiceAccount.

    The grader creates a namespace, Role, RoleBinding, quota and NetworkPolicy per grading and
    grants the candidate a Role; Kubernetes only lets it grant what it holds, hence cluster-admin.
    """
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": {
            MANAGED_LABEL: MANAGED_BY, "pod-security.kubernetes.io/enforce": "privileged"}}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": service_account, "namespace": namespace, "labels": {MANAGED_LABEL: MANAGED_BY}}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": f"{namespace}-{service_account}", "labels": {MANAGED_LABEL: MANAGED_BY}},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
         "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}]},
    ]


# --- the report archive -------------------------------------------------------------------------

def pack_reports(folder: Path) -> list[str]:
    """The lines a Job prints last: ``folder`` as base64 of a tar.gz between the two markers."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    raw = buf.getvalue()
    if len(raw) > ARCHIVE_MAX_BYTES:
        raise ValueError(f"the report folder packs to {len(raw)} bytes, above {ARCHIVE_MAX_BYTES}")
    text = base64.b64encode(raw).decode()
    return [ARCHIVE_BEGIN, *(text[i:i + _LINE] for i in range(0, len(text), _LINE)), ARCHIVE_END]


def unpack_reports(log: str, dest: Path) -> bool:
    """Extract the archive found in a Job's ``log`` into ``dest``; False when it has none (the
    pod died first) or it is cut off. Members that would land outside ``dest`` are refused."""
    lines = log.splitlines()
    try:
        start = len(lines) - 1 - lines[::-1].index(ARCHIVE_BEGIN)
        end = lines.index(ARCHIVE_END, start)
    except ValueError:
        return False
    try:
        raw = base64.b64decode("".join(line.strip() for line in lines[start + 1:end]), validate=True)
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
            members = tar.getmembers()
            root = dest.resolve()
            for m in members:
                target = (dest / m.name).resolve()
                if not m.isfile() or not target.is_relative_to(root):
                    raise ValueError(f"unexpected member {m.name!r}")
            dest.mkdir(parents=True, exist_ok=True)
            for m in members:
                src = tar.extractfile(m)
                assert src is not None
                (dest / m.name).parent.mkdir(parents=True, exist_ok=True)
                (dest / m.name).write_bytes(src.read())
    except (ValueError, tarfile.TarError, OSError, EOFError):
        return False
    return True


def progress_lines(log: str) -> list[str]:
    """The grading's own lines in a Job's log (everything before the archive)."""
    lines = log.splitlines()
    if ARCHIVE_BEGIN in lines:
        lines = lines[:lines.index(ARCHIVE_BEGIN)]
    return [line for line in lines if line.strip()]


# --- what a Job's status means --------------------------------------------------------------------

def job_outcome(job: dict[str, Any], pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    """``(state, message)`` of a finished Job, None while it runs.

    State: ``succeeded`` (the pod exited 0), ``failed`` (it exited non-zero: the report, if
    any, says why), ``timed_out`` (the cluster stopped it at ``activeDeadlineSeconds``),
    ``evicted`` (the node took the pod away: pressure, drain, preemption).
    """
    status = job.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    pod = pods[-1] if pods else {}
    pod_status = pod.get("status") or {}
    if pod_status.get("reason") == "Evicted" or any(
            c.get("type") == "DisruptionTarget" for c in pod_status.get("conditions") or []
            if c.get("status") == "True"):
        return "evicted", f"the pod was evicted from its node: {pod_status.get('message') or 'no message'}"
    if "Complete" in conditions:
        return "succeeded", "the grading pod exited 0"
    failed = conditions.get("Failed")
    if failed is None:
        return None
    reason = failed.get("reason") or ""
    if reason == "DeadlineExceeded":
        return "timed_out", f"the cluster stopped the Job at its deadline: {failed.get('message') or reason}"
    term = _terminated(pod_status)
    if term.get("reason") == "OOMKilled":
        return "failed", "the grading pod ran out of memory (OOMKilled): raise grading_jobs.memory"
    exit_code = term.get("exitCode")
    return "failed", (f"the grading pod exited {exit_code}" if exit_code is not None
                      else f"the Job failed: {failed.get('message') or reason or 'no reason given'}")


def _terminated(pod_status: dict[str, Any]) -> dict[str, Any]:
    for cs in pod_status.get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term:
            return dict(term)
    return {}


def waiting_problem(pods: list[dict[str, Any]]) -> str | None:
    """Why a pod that is not running cannot start (image pull, bad config), for the progress line."""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError",
                                         "InvalidImageName", "CreateContainerError"):
                return f"{waiting['reason']}: {waiting.get('message') or ''}".strip()
    return None
