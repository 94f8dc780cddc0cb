"""Collectors for the kind runtime: what a reviewer needs when a rollout fails (pods with their
container states, Deployments with their conditions, the namespace's events, pod logs including
the previous container), and the rollout and fatal-state checks.

Formatting functions take plain dicts (API objects as the Kubernetes API serialises them, i.e.
camelCase keys), so they are tested without a cluster. ``snapshot()`` fetches those dicts with
the kubernetes client; ``pod_logs()`` fetches logs.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

#: Container waiting reasons that will not fix themselves: stop waiting for the rollout.
FATAL_WAITING = frozenset({"ErrImageNeverPull", "InvalidImageName", "CreateContainerConfigError",
                           "CreateContainerError", "RunContainerError", "ImageInspectError"})
#: CrashLoopBackOff and image pull back-offs count as fatal after this many tries.
CRASH_RESTARTS = 3
LOG_TAIL_LINES = 200
#: Seconds any one Kubernetes API call may take.
API_TIMEOUT_S = 30


def _age(ts: Any, now: datetime | None = None) -> str:
    if not ts:
        return "?"
    if isinstance(ts, str):
        try:
            ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            return "?"
    now = now or datetime.now(timezone.utc)
    secs = max(0, int((now - ts).total_seconds()))
    return f"{secs}s" if secs < 120 else f"{secs // 60}m" if secs < 7200 else f"{secs // 3600}h"


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", "?"))


def _state(state: dict[str, Any] | None) -> str:
    """One container state as a short phrase: ``running``, ``waiting: CrashLoopBackOff (msg)``..."""
    if not state:
        return "-"
    for key in ("running", "waiting", "terminated"):
        detail = state.get(key)
        if detail is None:
            continue
        if key == "running":
            return "running"
        reason = detail.get("reason") or ""
        extra = f" exit {detail['exitCode']}" if key == "terminated" and "exitCode" in detail else ""
        msg = (detail.get("message") or "").strip().replace("\n", " ")
        return f"{key}: {reason}{extra}" + (f" ({msg[:300]})" if msg else "")
    return "-"


def container_statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def format_pods(pods: list[dict[str, Any]], now: datetime | None = None) -> str:
    """A ``kubectl get pods -o wide``-like table, then each container's state and last state."""
    if not pods:
        return "(no pods in the namespace)"
    lines = [f"{'NAME':<48} {'PHASE':<10} {'READY':<6} {'RESTARTS':<9} AGE"]
    details = []
    for pod in pods:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        ready = sum(1 for c in statuses if c.get("ready"))
        restarts = sum(int(c.get("restartCount") or 0) for c in container_statuses(pod))
        lines.append(f"{_name(pod):<48} {(pod.get('status') or {}).get('phase', '?'):<10} "
                     f"{ready}/{len(statuses) or len((pod.get('spec') or {}).get('containers') or [])!s:<4} "
                     f"{restarts:<9} {_age((pod.get('metadata') or {}).get('creationTimestamp'), now)}")
        for c in container_statuses(pod):
            details.append(f"  {_name(pod)}/{c.get('name')}: {_state(c.get('state'))}; image {c.get('image')}"
                           + (f"; last: {_state(c.get('lastState'))}" if c.get("lastState") else ""))
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("status") != "True" and cond.get("message"):
                details.append(f"  {_name(pod)} {cond.get('type')}=False: {cond.get('reason', '')} {cond['message']}")
    return "\n".join(lines + ([""] + details if details else []))


def format_deployments(deployments: list[dict[str, Any]]) -> str:
    """Replicas (desired/updated/ready/available), generations, images and conditions of each Deployment."""
    if not deployments:
        return "(no deployments in the namespace)"
    out = []
    for dep in deployments:
        spec, status = dep.get("spec") or {}, dep.get("status") or {}
        images = [c.get("image") for c in ((spec.get("template") or {}).get("spec") or {}).get("containers") or []]
        out.append(f"{_name(dep)}: desired {spec.get('replicas', 1)}, updated {status.get('updatedReplicas', 0)}, "
                   f"ready {status.get('readyReplicas', 0)}, available {status.get('availableReplicas', 0)}; "
                   f"generation {(dep.get('metadata') or {}).get('generation')} observed "
                   f"{status.get('observedGeneration')}; images {images}")
        for cond in status.get("conditions") or []:
            out.append(f"  {cond.get('type')}={cond.get('status')} {cond.get('reason', '')}: {cond.get('message', '')}")
    return "\n".join(out)


def _event_time(ev: dict[str, Any]) -> str:
    return str(ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("firstTimestamp")
               or (ev.get("metadata") or {}).get("creationTimestamp") or "")


def format_events(events: list[dict[str, Any]], limit: int = 80) -> str:
    """The namespace's events, oldest first (the last ``limit``)."""
    if not events:
        return "(no events)"
    rows = []
    for ev in sorted(events, key=_event_time)[-limit:]:
        obj = ev.get("involvedObject") or ev.get("regarding") or {}
        count = ev.get("count") or 1
        rows.append(f"{_event_time(ev)} {ev.get('type', ''):<7} {ev.get('reason', ''):<22} "
                    f"{obj.get('kind', '?')}/{obj.get('name', '?')}: {(ev.get('message') or ev.get('note') or '').strip()}"
                    + (f" (x{count})" if count > 1 else ""))
    return "\n".join(rows)


def fatal_problems(pods: list[dict[str, Any]]) -> list[str]:
    """Pod states that will not recover by waiting (bad image, crash loop, config error)."""
    problems = []
    for pod in pods:
        for c in container_statuses(pod):
            waiting = (c.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason") or ""
            restarts = int(c.get("restartCount") or 0)
            # ImagePullBackOff: the pull failed at least once; the grader's cluster may have no registry.
            if reason in FATAL_WAITING or reason == "ImagePullBackOff" or \
                    (reason == "CrashLoopBackOff" and restarts >= CRASH_RESTARTS):
                problems.append(f"{_name(pod)}/{c.get('name')}: {_state(c.get('state'))}")
    return problems


#: The scheduler's words for a node without enough free resources (not a taint, a selector or a
#: volume, which the candidate's manifests decide).
_CAPACITY = re.compile(r"Insufficient (cpu|memory|ephemeral-storage|pods)|Too many pods")


def capacity_shortfall(pods: list[dict[str, Any]]) -> list[str]:
    """Pods the scheduler cannot place only because the nodes lack free CPU, memory or pod slots.

    Their requests were admitted by the run's namespace quota and limits, so they are within the
    budget the grader gave the candidate: the cluster being full is the grading's environment."""
    short = []
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") != "Pending":
            continue
        for cond in status.get("conditions") or []:
            message = cond.get("message") or ""
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False" \
                    and cond.get("reason") == "Unschedulable" and _CAPACITY.search(message):
                short.append(f"{_name(pod)}: {message.split('. ')[0]}")
    return short


def rollout_pending(deployments: list[dict[str, Any]]) -> list[str]:
    """Deployments whose rollout is not complete, each with why (empty when all are available)."""
    waiting = []
    for dep in deployments:
        spec, status = dep.get("spec") or {}, dep.get("status") or {}
        want = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        generation = int((dep.get("metadata") or {}).get("generation") or 0)
        observed = int(status.get("observedGeneration") or 0)
        updated, available = int(status.get("updatedReplicas") or 0), int(status.get("availableReplicas") or 0)
        total = int(status.get("replicas") or 0)
        if observed < generation:
            waiting.append(f"{_name(dep)}: the controller has not observed generation {generation} yet")
        elif updated < want or available < want or total > updated:
            waiting.append(f"{_name(dep)}: {updated}/{want} updated, {available}/{want} available"
                           + (f", {total - updated} old replica(s) left" if total > updated else ""))
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
                waiting.append(f"{_name(dep)}: progress deadline exceeded: {cond.get('message', '')}")
    return waiting


def statefulsets_pending(statefulsets: list[dict[str, Any]]) -> list[str]:
    """StatefulSets with fewer ready (or updated) replicas than desired."""
    waiting = []
    for sts in statefulsets:
        spec, status = sts.get("spec") or {}, sts.get("status") or {}
        want = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        ready = int(status.get("readyReplicas") or 0)
        if ready < want or int(status.get("observedGeneration") or 0) < int((sts.get("metadata") or {}).get("generation") or 0):
            waiting.append(f"{_name(sts)}: {ready}/{want} ready")
    return waiting


def ready_endpoints(slices: list[dict[str, Any]]) -> list[str]:
    """Addresses of ready endpoints in a Service's EndpointSlices."""
    out: list[str] = []
    for sl in slices:
        for ep in sl.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready", True):
                out.extend(ep.get("addresses") or [])
    return out


def ready_addresses(endpoints: dict[str, Any]) -> list[str]:
    """Addresses of ready endpoints in a core/v1 Endpoints object (``notReadyAddresses`` left out)."""
    return [a["ip"] for sub in endpoints.get("subsets") or [] for a in sub.get("addresses") or [] if a.get("ip")]


# --- live collection (kubernetes client) ----------------------------------------------------------

def snapshot(api_client: Any, namespace: str) -> dict[str, list[dict[str, Any]]]:
    """Pods, Deployments, StatefulSets and events of ``namespace`` as plain dicts."""
    from kubernetes import client

    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    ser = api_client.sanitize_for_serialization
    return {
        "pods": [ser(p) for p in core.list_namespaced_pod(namespace, _request_timeout=API_TIMEOUT_S).items],
        "deployments": [ser(d) for d in apps.list_namespaced_deployment(namespace, _request_timeout=API_TIMEOUT_S).items],
        "statefulsets": [ser(s) for s in apps.list_namespaced_stateful_set(namespace, _request_timeout=API_TIMEOUT_S).items],
        "events": [ser(e) for e in core.list_namespaced_event(namespace, _request_timeout=API_TIMEOUT_S).items],
    }


def pod_logs(api_client: Any, namespace: str, pods: list[dict[str, Any]], *, tail_lines: int | None = LOG_TAIL_LINES,
             limit_bytes: int | None = None, previous: bool = True) -> dict[str, str]:
    """Logs per ``pod/container`` (and ``pod/container (previous)`` after a restart). Never raises."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    out: dict[str, str] = {}
    for pod in pods:
        name = _name(pod)
        restarted = {c.get("name") for c in container_statuses(pod) if int(c.get("restartCount") or 0) > 0}
        spec = pod.get("spec") or {}
        for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            cname = c.get("name")
            kinds = [False, True] if previous and cname in restarted else [False]
            for prev in kinds:
                label = f"{name}/{cname}" + (" (previous)" if prev else "")
                try:
                    text = core.read_namespaced_pod_log(name, namespace, container=cname, previous=prev,
                                                        tail_lines=tail_lines, limit_bytes=limit_bytes,
                                                        _request_timeout=API_TIMEOUT_S)
                except Exception as exc:  # noqa: BLE001 - a collector reports, it never fails the run
                    text = f"(logs unavailable: {getattr(exc, 'reason', None) or exc})"
                out[label] = text if isinstance(text, str) else str(text)
    return out


def format_logs(logs: dict[str, str]) -> str:
    return "\n".join(f"==> {label} <==\n{text.rstrip()}" for label, text in logs.items()) or "(no pods)"
