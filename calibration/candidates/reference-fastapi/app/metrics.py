"""Prometheus metrics (one registry for the process, exposed at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401 - re-exported for the server

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter("takehome_requests", "HTTP requests by route and status code", ["route", "status"],
                   registry=REGISTRY)
LATENCY = Histogram("takehome_request_latency_seconds", "Request latency by route (server side)", ["route"],
                    buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0,
                             2.5), registry=REGISTRY)
ROWS = Counter("takehome_rows", "Instances scored", ["version"], registry=REGISTRY)
PREDICTION = Histogram("takehome_prediction_probability", "Predicted fraud probability", ["version"],
                       buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9), registry=REGISTRY)
MODEL_INFO = Gauge("takehome_model_info", "The live model (value 1)", ["version", "sha256"], registry=REGISTRY)
RELOADS = Counter("takehome_model_reloads", "Model reloads by outcome", ["result"], registry=REGISTRY)

DRIFT = Gauge("takehome_drift_detected", "1 when the latest drift evaluation found drift", registry=REGISTRY)
FEATURE_DRIFT = Gauge("takehome_feature_drift", "1 when this feature drifted in the latest evaluation",
                      ["feature"], registry=REGISTRY)
FEATURE_PVALUE = Gauge("takehome_feature_drift_p_value", "Smallest p-value of the feature's drift tests",
                       ["feature"], registry=REGISTRY)
DRIFT_EVALS = Counter("takehome_drift_evaluations", "Drift evaluations by outcome", ["result"], registry=REGISTRY)
DRIFT_EVAL_SECONDS = Histogram("takehome_drift_evaluation_seconds", "Wall time of one drift evaluation",
                               buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY)
DRIFT_WINDOW_ROWS = Gauge("takehome_drift_window_rows", "Rows in the drift window", registry=REGISTRY)
DRIFT_ROWS_SEEN = Gauge("takehome_drift_rows_seen", "Rows fed to the drift monitor since start", registry=REGISTRY)
LOG_DROPPED = Gauge("takehome_request_log_dropped", "Request log lines dropped (writer behind)",
                    registry=REGISTRY)


def set_model(version: str, sha256: str) -> None:
    MODEL_INFO.clear()
    MODEL_INFO.labels(version=version, sha256=sha256[:12]).set(1)


def render() -> bytes:
    return generate_latest(REGISTRY)
