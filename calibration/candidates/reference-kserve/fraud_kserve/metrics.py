"""Prometheus metrics, on the default registry that KServe's own ``/metrics`` route exposes.

KServe contributes ``request_preprocess_seconds``, ``request_predict_seconds`` and
``request_postprocess_seconds`` (per model); these add what the on-call engineer needs on top:
HTTP requests by route and status (rejected input included, which KServe's histograms never see),
end-to-end latency, rows and predictions by model version, the live version, and the drift
monitor and webhook state.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

REQUESTS = Counter("fraud_http_requests", "HTTP requests by route and status code", ["route", "status"],
                   registry=REGISTRY)
LATENCY = Histogram("fraud_http_request_duration_seconds", "Server-side request latency by route", ["route"],
                    buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5),
                    registry=REGISTRY)
ROWS = Counter("fraud_rows_scored", "Instances scored", ["version"], registry=REGISTRY)
PREDICTION = Histogram("fraud_prediction_probability", "Predicted fraud probability", ["version"],
                       buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9), registry=REGISTRY)
MODEL_INFO = Gauge("fraud_model_info", "The live model version (value 1)", ["version", "sha256"], registry=REGISTRY)
RELOADS = Counter("fraud_model_reloads", "Model switches by outcome", ["result"], registry=REGISTRY)

DRIFT = Gauge("fraud_drift_detected", "1 when the latest drift evaluation found drift", registry=REGISTRY)
FEATURE_DRIFT = Gauge("fraud_feature_drift", "1 when this feature drifted in the latest evaluation", ["feature"],
                      registry=REGISTRY)
FEATURE_PVALUE = Gauge("fraud_feature_drift_p_value", "Smallest p-value of the feature's drift tests", ["feature"],
                       registry=REGISTRY)
DRIFT_EVALS = Counter("fraud_drift_evaluations", "Drift evaluations by outcome", ["result"], registry=REGISTRY)
DRIFT_EVAL_SECONDS = Histogram("fraud_drift_evaluation_seconds", "Wall time of one drift evaluation",
                               buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25), registry=REGISTRY)
DRIFT_WINDOW_ROWS = Gauge("fraud_drift_window_rows", "Rows in the drift window", registry=REGISTRY)
DRIFT_ROWS_SEEN = Gauge("fraud_drift_rows_seen", "Rows fed to the drift monitor since start", registry=REGISTRY)
ALERT_SENDS = Counter("fraud_alert_webhook_posts", "Alert webhook POSTs by result", ["result"], registry=REGISTRY)
LOG_DROPPED = Gauge("fraud_request_log_dropped", "Request log lines dropped (writer behind)", registry=REGISTRY)


def set_model(version: str, sha256: str) -> None:
    MODEL_INFO.clear()
    MODEL_INFO.labels(version=version, sha256=sha256[:12]).set(1)
