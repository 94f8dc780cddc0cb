"""Prometheus metrics, on BentoML's built-in ``/metrics``.

Two kinds, for a reason:

* **Counters and histograms** (rows scored, predicted probabilities, reloads, rejected requests) are
  plain prometheus_client objects (BentoML 1.4 deprecated ``bentoml.metrics`` for exactly that). BentoML runs prometheus_client in multiprocess mode (one mmap file
  per process in ``$PROMETHEUS_MULTIPROC_DIR``) and its ``/metrics`` merges them; request counts
  and latency histograms per endpoint (``bentoml_service_request_*``) come with BentoML already.
* **State** (the drift verdict per feature, p-values, window fill, the live model version) is not
  accumulated but *read* at scrape time from the objects that own it, by a custom collector, and
  appended by the service's ``__metrics__`` hook. A multiprocess gauge would need a
  ``multiprocess_mode`` and would keep a dead worker's last value; reading the state at scrape time
  has neither problem, and lets the scrape wait for a verdict that covers the rows just sent.
"""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace
from typing import Any, Callable, Iterator


@lru_cache(maxsize=1)
def counters() -> SimpleNamespace:
    """The process's counters and histograms, created on first use.

    prometheus_client picks single- or multi-process storage when it is first imported, from
    ``$PROMETHEUS_MULTIPROC_DIR``, so it is imported only once the worker serves, never when
    ``service.py`` is imported (the ``bentoml serve`` supervisor imports it too, and BentoML's own
    deprecated ``bentoml.metrics`` module defers the import for the same reason).
    """
    from prometheus_client import Counter, Histogram

    return SimpleNamespace(
        rows=Counter("fraud_rows_scored", "Instances scored, by model version", ["version"]),
        prediction=Histogram("fraud_prediction_probability", "Predicted fraud probability, by model version",
                             ["version"], buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)),
        scoring=Histogram("fraud_scoring_seconds", "Model time per request (validation and HTTP excluded)",
                          buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)),
        rejected=Counter("fraud_rejected_requests", "Prediction requests answered 4xx/5xx, by status", ["status"]),
        reloads=Counter("fraud_model_reloads", "Model swaps, by result", ["result"]),
        drift_evals=Counter("fraud_drift_evaluations", "Drift evaluations, by result", ["result"]),
    )


class StateCollector:
    """Collects the live state at scrape time. ``state()`` returns what the service knows now."""

    def __init__(self, state: Callable[[], dict[str, Any]]) -> None:
        self.state = state

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        st = self.state()
        model = st.get("model") or {}
        info = GaugeMetricFamily("fraud_model_info", "The model version being served (value 1)",
                                 labels=["version", "sha256", "fast_path"])
        if model:
            info.add_metric([model["version"], model["sha256"][:12], str(bool(model.get("fast_path"))).lower()], 1)
        yield info

        drift = st.get("drift") or {}
        details = drift.get("details") or {}
        features = st.get("features") or []
        firing = set(drift.get("features") or [])
        per_feature = GaugeMetricFamily(
            "fraud_feature_drift", "1 while the drift monitor blames this feature, else 0 (the alarm)",
            labels=["feature"])
        pvalue = GaugeMetricFamily("fraud_feature_drift_p_value",
                                   "Smallest p-value of the feature's drift tests at the last evaluation",
                                   labels=["feature"])
        for name in features:
            per_feature.add_metric([name], 1.0 if name in firing else 0.0)
            p = (details.get(name) or {}).get("min_p_value")
            if p is not None:
                pvalue.add_metric([name], float(p))
        yield per_feature
        yield pvalue
        yield GaugeMetricFamily("fraud_drift_detected", "1 while any feature drifts", value=1.0 if firing else 0.0)
        yield GaugeMetricFamily("fraud_drift_window_rows", "Rows in the drift window",
                                value=float(drift.get("window_rows") or 0))
        yield GaugeMetricFamily("fraud_drift_rows_seen", "Rows fed to the drift monitor since start",
                                value=float(drift.get("rows_seen") or 0))
        stale = drift.get("stale_rows")
        yield GaugeMetricFamily("fraud_drift_stale_rows", "Rows received after the last evaluated window "
                                "(-1 before the first evaluation)", value=float(-1 if stale is None else stale))
        yield GaugeMetricFamily("fraud_request_log_dropped", "Request log lines dropped (writer behind)",
                                value=float(st.get("log_dropped") or 0))


def render(collector: StateCollector) -> str:
    """The collector's exposition text (its own registry: nothing here touches the multiprocess files)."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry).decode("utf-8")
