"""Build the observer a candidate's contract asks for (``drift.signal`` in ``takehome.yaml``)."""

from __future__ import annotations

from harness.contract import DriftSignal
from harness.limits import DRIFT_READ_DEADLINE_S
from harness.observers.base import DriftObserver
from harness.observers.http_signal import HttpDriftObserver
from harness.observers.prometheus_signal import PrometheusDriftObserver
from harness.observers.webhook import WebhookObserver, WebhookReceiver

#: Seconds a drift read may take, in total, before it counts as unreadable (stated in CONTRACT.md).
READ_TIMEOUT_S = DRIFT_READ_DEADLINE_S


def make_observer(drift: DriftSignal, base_url: str, metrics_path: str | None,
                  receiver: WebhookReceiver | None, timeout_s: float = READ_TIMEOUT_S) -> DriftObserver:
    """Return an (unstarted) observer for ``drift.signal``.

    ``metrics_path`` is ``serving.metrics_path`` (needed for prometheus); ``receiver`` is the
    grader's running webhook receiver (needed for webhook). A missing one is a grader bug, since
    the contract validation already guarantees the candidate declared what the signal needs.
    """
    if drift.signal == "http":
        if not drift.http_path:
            raise ValueError("drift.signal 'http' needs drift.http_path")
        return HttpDriftObserver(base_url, drift.http_path, drift.drift_field, drift.features_field, timeout_s)
    if drift.signal == "prometheus":
        if not metrics_path:
            raise ValueError("drift.signal 'prometheus' needs serving.metrics_path")
        if not drift.prometheus_metric:
            raise ValueError("drift.signal 'prometheus' needs drift.prometheus_metric")
        return PrometheusDriftObserver(base_url, metrics_path, drift.prometheus_metric, drift.feature_label,
                                       timeout_s)
    if drift.signal == "webhook":
        if receiver is None:
            raise ValueError("drift.signal 'webhook' needs the grader's WebhookReceiver")
        return WebhookObserver(receiver, drift.feature_label)
    raise ValueError(f"unknown drift signal {drift.signal!r}")
