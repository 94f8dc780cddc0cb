"""Kubernetes API operations of the kind runtime, through the official client with the cluster's
admin credentials (which never leave the grader process): create the run's namespace objects,
mint the candidate's token, give the Service its NodePort, wait for a rollout, delete the
namespace and wait until it is gone.

Every call carries a request timeout; API errors become :class:`~harness.errors.GraderFault`
(the grader's cluster misbehaved) or, where the candidate caused them, SubmissionError.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import GraderFault, SubmissionError
from harness.runtimes import kube_collect as collect
from harness.runtimes.kube_collect import API_TIMEOUT_S
from harness.runtimes.kube_manifests import node_port_of, node_port_patch
from harness.runtimes.kube_namespace import CANDIDATE_SA, MANAGED_BY, MANAGED_LABEL, RUN_LABEL, token_request


def api_client(kubeconfig: dict[str, Any], temp_dir: Path) -> Any:
    """An ApiClient for ``kubeconfig``; the client's certificate files go to ``temp_dir`` (private)."""
    from kubernetes import config

    try:
        return config.new_client_from_config_dict(config_dict=kubeconfig, temp_file_path=str(temp_dir))
    except Exception as exc:  # noqa: BLE001 - the client raises many types for a bad config
        raise GraderFault(f"cannot use the kind cluster's kubeconfig: {exc}") from None


def _fault(what: str, exc: Exception) -> GraderFault:
    body = getattr(exc, "body", None)
    return GraderFault(f"kubernetes: {what} failed: {getattr(exc, 'reason', None) or exc}",
                       details=(body.decode(errors="replace") if isinstance(body, bytes) else str(body or ""))[-2000:])


def _status(exc: Exception) -> int | None:
    return getattr(exc, "status", None)


def create_objects(api: Any, docs: list[dict[str, Any]], on_created: Callable[[str], None] = lambda _d: None) -> None:
    """Create the namespace objects (``kube_namespace.namespace_objects``) in order; existing ones are kept."""
    from kubernetes import client

    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    net = client.NetworkingV1Api(api)
    creators: dict[str, Callable[[str, dict[str, Any]], Any]] = {
        "ResourceQuota": lambda ns, b: core.create_namespaced_resource_quota(ns, b, _request_timeout=API_TIMEOUT_S),
        "LimitRange": lambda ns, b: core.create_namespaced_limit_range(ns, b, _request_timeout=API_TIMEOUT_S),
        "NetworkPolicy": lambda ns, b: net.create_namespaced_network_policy(ns, b, _request_timeout=API_TIMEOUT_S),
        "ServiceAccount": lambda ns, b: core.create_namespaced_service_account(ns, b, _request_timeout=API_TIMEOUT_S),
        "Role": lambda ns, b: rbac.create_namespaced_role(ns, b, _request_timeout=API_TIMEOUT_S),
        "RoleBinding": lambda ns, b: rbac.create_namespaced_role_binding(ns, b, _request_timeout=API_TIMEOUT_S),
        "ConfigMap": lambda ns, b: core.create_namespaced_config_map(ns, b, _request_timeout=API_TIMEOUT_S),
    }
    for doc in docs:
        what = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            if doc["kind"] == "Namespace":
                core.create_namespace(doc, _request_timeout=API_TIMEOUT_S)
            else:
                creators[doc["kind"]](doc["metadata"]["namespace"], doc)
        except Exception as exc:  # noqa: BLE001
            if _status(exc) != 409:  # 409: already there (a retried up())
                raise _fault(f"creating {what}", exc) from None
        on_created(what)


def request_token(api: Any, namespace: str) -> str:
    """A bound token for the candidate's ServiceAccount (TokenRequest API)."""
    from kubernetes import client

    try:
        resp = client.CoreV1Api(api).create_namespaced_service_account_token(
            CANDIDATE_SA, namespace, token_request(), _request_timeout=API_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001
        raise _fault("requesting the candidate's token", exc) from None
    token = getattr(getattr(resp, "status", None), "token", None)
    if not token:
        raise GraderFault("the TokenRequest API returned no token")
    return str(token)


def used_node_ports(api: Any) -> set[int]:
    """Node ports taken by any Service in the cluster."""
    from kubernetes import client

    try:
        services = client.CoreV1Api(api).list_service_for_all_namespaces(_request_timeout=API_TIMEOUT_S).items
    except Exception as exc:  # noqa: BLE001
        raise _fault("listing services", exc) from None
    return {int(p.node_port) for s in services for p in (s.spec.ports or []) if p.node_port}


def read_service(api: Any, namespace: str, name: str) -> dict[str, Any] | None:
    from kubernetes import client

    try:
        svc = client.CoreV1Api(api).read_namespaced_service(name, namespace, _request_timeout=API_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001
        if _status(exc) == 404:
            return None
        raise _fault(f"reading Service {name}", exc) from None
    return api.sanitize_for_serialization(svc)


def expose(api: Any, namespace: str, name: str, serving_port: int, candidates: list[int]) -> int:
    """Patch the Service to a NodePort on the first free candidate port; returns the port."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    live = read_service(api, namespace, name)
    if live is None:
        raise SubmissionError(f"the Service {name!r} does not exist after applying the manifests")
    current = node_port_of(live, serving_port)
    if current in candidates:
        return current
    last: Exception | None = None
    for port in candidates:
        try:
            core.patch_namespaced_service(name, namespace, node_port_patch(live, serving_port, port),
                                          _request_timeout=API_TIMEOUT_S)
            return port
        except Exception as exc:  # noqa: BLE001
            if _status(exc) in (409, 422):  # taken meanwhile by another run, or a quota: try the next
                last = exc
                continue
            raise _fault(f"patching Service {name} to a NodePort", exc) from None
    detail = getattr(last, "body", "") if last else ""
    raise GraderFault(f"no free mapped node port for Service {name} (tried {candidates}); too many gradings "
                      "share this cluster, or the namespace quota refused it", details=str(detail)[-2000:])


def wait_rollout(api: Any, namespace: str, timeout_s: float, progress: Callable[[str], None]) -> None:
    """Wait until every Deployment and StatefulSet is rolled out; SubmissionError on a fatal pod state or timeout."""
    deadline = time.monotonic() + timeout_s
    last_note = ""
    while True:
        try:
            snap = collect.snapshot(api, namespace)
        except Exception as exc:  # noqa: BLE001
            raise _fault("reading the rollout status", exc) from None
        fatal = collect.fatal_problems(snap["pods"])
        if fatal:
            raise SubmissionError("the rollout cannot succeed: " + "; ".join(fatal[:5]),
                                  details=rollout_report(api, namespace, snap))
        pending = collect.rollout_pending(snap["deployments"]) + collect.statefulsets_pending(snap["statefulsets"])
        if not pending:
            return
        note = "; ".join(pending)
        if note != last_note:
            progress(f"waiting for the rollout: {note}")
            last_note = note
        if time.monotonic() > deadline:
            short = collect.capacity_shortfall(snap["pods"])
            if short:  # within the run's quota, but the nodes are full: not the candidate's doing
                raise GraderFault(f"the cluster had no room for the candidate's pods within {timeout_s:.0f}s "
                                  f"({'; '.join(short[:3])}); their requests fit the run's namespace quota. "
                                  "Free node capacity: fewer gradings at once (--jobs), a smaller "
                                  "grading_jobs.cpu / memory, or more nodes",
                                  details=rollout_report(api, namespace, snap))
            raise SubmissionError(f"the rollout did not complete within {timeout_s:.0f}s: {note}",
                                  details=rollout_report(api, namespace, snap))
        time.sleep(1.0)


def service_endpoints(api: Any, namespace: str, name: str) -> list[str]:
    """Ready endpoint addresses behind Service ``name``: from its EndpointSlices (discovery.k8s.io/v1,
    Kubernetes 1.21+), else from its Endpoints object (what older servers have)."""
    from kubernetes import client

    try:
        slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={name}", _request_timeout=API_TIMEOUT_S).items
        return collect.ready_endpoints([api.sanitize_for_serialization(s) for s in slices])
    except Exception as exc:
        if _status(exc) != 404:  # 404: the server does not serve discovery.k8s.io/v1
            raise
    try:
        endpoints = client.CoreV1Api(api).read_namespaced_endpoints(name, namespace, _request_timeout=API_TIMEOUT_S)
    except Exception as exc:
        if _status(exc) == 404:
            return []
        raise
    return collect.ready_addresses(api.sanitize_for_serialization(endpoints))


def wait_endpoints(api: Any, namespace: str, name: str, timeout_s: float) -> list[str]:
    """Wait until the Service has a ready endpoint; SubmissionError (naming its selector) if never."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ready = service_endpoints(api, namespace, name)
        except Exception as exc:  # noqa: BLE001
            raise _fault(f"reading the endpoints of Service {name}", exc) from None
        if ready:
            return ready
        if time.monotonic() > deadline:
            svc = read_service(api, namespace, name) or {}
            selector = (svc.get("spec") or {}).get("selector")
            raise SubmissionError(f"the Service {name!r} has no ready pod behind it after the rollout (selector "
                                  f"{selector}); check that the selector matches your pods' labels and that "
                                  "they pass their readiness probe", details=rollout_report(api, namespace))
        time.sleep(0.5)


def rollout_report(api: Any, namespace: str, snap: dict[str, list[dict[str, Any]]] | None = None) -> str:
    """Collectors as one text: pods, deployments, events and the tail of every pod's logs. Never raises."""
    try:
        snap = snap or collect.snapshot(api, namespace)
        logs = collect.pod_logs(api, namespace, snap["pods"], tail_lines=60)
        return "\n\n".join([
            "pods:\n" + collect.format_pods(snap["pods"]),
            "deployments:\n" + collect.format_deployments(snap["deployments"]),
            "events:\n" + collect.format_events(snap["events"], limit=40),
            "pod logs (tail):\n" + collect.format_logs(logs),
        ])
    except Exception as exc:  # noqa: BLE001 - collectors must not hide the real error
        return f"(collectors failed: {exc})"


def delete_namespace(api: Any, namespace: str, timeout_s: float) -> bool:
    """Delete the namespace and wait until it is gone. True when gone; False if still terminating."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    try:
        core.delete_namespace(namespace, _request_timeout=API_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001
        if _status(exc) != 404:
            raise _fault(f"deleting namespace {namespace}", exc) from None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            core.read_namespace(namespace, _request_timeout=API_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001
            if _status(exc) == 404:
                return True
            raise _fault(f"reading namespace {namespace}", exc) from None
        time.sleep(1.0)
    return False


def grader_namespaces(api: Any) -> list[str]:
    """Every namespace any grading run created (by label), e.g. to decide whether a shared cluster is idle."""
    return list(grader_namespace_runs(api))


def grader_namespace_runs(api: Any) -> dict[str, tuple[str, float]]:
    """{namespace: (run id, age in seconds)} of every namespace a grading run created (by label)."""
    import datetime
    from kubernetes import client

    try:
        items = client.CoreV1Api(api).list_namespace(label_selector=f"{MANAGED_LABEL}={MANAGED_BY},{RUN_LABEL}",
                                                     _request_timeout=API_TIMEOUT_S).items
    except Exception as exc:  # noqa: BLE001
        raise _fault("listing namespaces", exc) from None
    now = datetime.datetime.now(datetime.timezone.utc)
    return {ns.metadata.name: ((ns.metadata.labels or {}).get(RUN_LABEL, ""),
                               (now - ns.metadata.creation_timestamp).total_seconds()
                               if ns.metadata.creation_timestamp else 0.0) for ns in items}


def server_version(api: Any) -> tuple[str, int | None]:
    """The API server's version ("v1.20.2") and minor number (None if it cannot be read)."""
    from kubernetes import client

    try:
        info = client.VersionApi(api).get_code(_request_timeout=API_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001
        raise _fault("reading the server version", exc) from None
    digits = "".join(ch for ch in str(info.minor or "") if ch.isdigit())
    return str(info.git_version), int(digits) if digits else None


def delete_workloads(api: Any, namespace: str) -> list[str]:
    """Delete every workload and pod in ``namespace`` (foreground). Returns the kinds deleted; never raises."""
    from kubernetes import client

    apps, batch, core = client.AppsV1Api(api), client.BatchV1Api(api), client.CoreV1Api(api)
    calls = [("Deployment", apps.delete_collection_namespaced_deployment),
             ("StatefulSet", apps.delete_collection_namespaced_stateful_set),
             ("DaemonSet", apps.delete_collection_namespaced_daemon_set),
             ("ReplicaSet", apps.delete_collection_namespaced_replica_set),
             ("CronJob", batch.delete_collection_namespaced_cron_job),  # batch/v1: 1.21+; 404 before
             ("Job", batch.delete_collection_namespaced_job),
             ("Pod", core.delete_collection_namespaced_pod)]
    done = []
    for kind, call in calls:
        try:
            call(namespace, grace_period_seconds=0, _request_timeout=API_TIMEOUT_S)
            done.append(kind)
        except Exception:  # noqa: BLE001 - the rest still go
            continue
    return done
