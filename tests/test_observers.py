"""Drift observers: webhook receiver (Alertmanager and plain payloads), HTTP and Prometheus signals."""

from __future__ import annotations

import json
import socket
from typing import Any, Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from harness.contract import DriftSignal
from harness.observers import (DriftReading, HttpDriftObserver, PrometheusDriftObserver, WebhookObserver,
                               WebhookReceiver, make_observer)
from harness.observers.base import as_flag

from fakes import StubService, reply


@pytest.fixture
def stub() -> Iterator[StubService]:
    """A service that answers only what a test routes (no default metrics page)."""
    with StubService(metrics_path=None) as server:
        yield server


def serve(stub: StubService, path: str, status: int, content_type: str, body: bytes) -> None:
    """Answer GET ``path`` with exactly this."""
    stub.routes[("GET", path)] = lambda req: reply(status, body, content_type=content_type)


def serve_json(stub: StubService, path: str, payload: Any, status: int = 200) -> None:
    serve(stub, path, status, "application/json", json.dumps(payload).encode())


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    rec = WebhookReceiver().start()
    yield rec
    rec.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alertmanager(status: str, *features: str) -> dict[str, Any]:
    return {"version": "4", "status": status, "receiver": "grader", "groupKey": "{}:{}",
            "alerts": [{"status": status, "labels": {"alertname": "FeatureDrift", "feature": f},
                        "annotations": {"summary": f"{f} drifted"}, "startsAt": "2025-01-01T00:00:00Z"}
                       for f in features]}


# --- webhook ---------------------------------------------------------------------------------

def test_alertmanager_firing_then_resolved(receiver: WebhookReceiver) -> None:
    observer = WebhookObserver(receiver, feature_label="feature")
    assert observer.poll().firing is False and observer.poll().ok
    url = receiver.url_for("127.0.0.1")
    assert url.endswith("/alerts") and str(receiver.port) in url
    resp = httpx.post(url, json=_alertmanager("firing", "amount", "channel"))
    assert resp.status_code == 200
    reading = observer.poll()
    assert reading.ok and reading.firing and reading.features == frozenset({"amount", "channel"})
    assert httpx.post(url, json=_alertmanager("resolved", "channel")).status_code == 200
    reading = observer.poll()
    assert reading.firing and reading.features == frozenset({"amount"})
    httpx.post(url, json=_alertmanager("resolved", "amount"))
    assert observer.poll().firing is False
    records = receiver.records()
    assert [r["status"] for r in records] == [200, 200, 200]
    assert records[0]["payload"]["alerts"][0]["labels"]["feature"] == "amount" and records[0]["t"] > 0


def test_plain_payload_and_clear(receiver: WebhookReceiver) -> None:
    observer = WebhookObserver(receiver)
    url = receiver.url_for()
    httpx.post(url, json=_alertmanager("firing", "hour_of_day"))
    assert httpx.post(url, json={"drift": True, "features": ["card_type"]}).status_code == 200
    assert observer.poll().features == frozenset({"hour_of_day", "card_type"})
    assert httpx.post(url, json={"drift": False}).status_code == 200  # clears everything
    reading = observer.poll()
    assert not reading.firing and reading.features == frozenset()
    httpx.post(url, json={"drift": "true"})
    assert observer.poll().firing and observer.poll().features == frozenset()


def test_receiver_rejects_bad_requests(receiver: WebhookReceiver) -> None:
    url = receiver.url_for()
    assert httpx.post(url, content=b"not json {", headers={"Content-Type": "application/json"}).status_code == 400
    assert httpx.post(url, json={"hello": "world"}).status_code == 400
    assert httpx.post(url, json={"alerts": [{"status": "maybe", "labels": {}}]}).status_code == 400
    big = json.dumps({"drift": True, "features": ["x" * 2_000_000]}).encode()
    assert httpx.post(url, content=big, timeout=10).status_code == 413
    assert httpx.get(url).status_code == 405
    assert httpx.post(url.replace("/alerts", "/other"), json={"drift": True}).status_code == 404
    assert WebhookObserver(receiver).poll().firing is False  # nothing bad changed the state
    assert [r["status"] for r in receiver.records()] == [400, 400, 400, 413]
    assert httpx.post(url, json={"drift": True}).status_code == 200  # still serving after all that


def test_receiver_stop_releases_the_port_and_observer_reports_it() -> None:
    rec = WebhookReceiver(port=0).start()
    port = rec.port
    observer = WebhookObserver(rec)
    rec.stop()
    rec.stop()  # idempotent
    reading = observer.poll()
    assert not reading.ok and "not running" in (reading.error or "")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # would fail with EADDRINUSE if the listener were still open


# --- http signal -----------------------------------------------------------------------------

def test_http_observer_reads_dotted_fields(stub: StubService) -> None:
    serve_json(stub, "/drift", {"drift": {"detected": True, "window": 300},
                         "report": {"features": ["amount", "channel"]}})
    observer = HttpDriftObserver(stub.url, "/drift", drift_field="drift.detected", features_field="report.features")
    reading = observer.poll()
    assert reading.ok and reading.firing and reading.features == frozenset({"amount", "channel"})
    assert reading.raw["status"] == 200 and "window" in reading.raw["body"]
    serve_json(stub, "/drift", {"drift": {"detected": False}, "report": {"features": []}})
    assert observer.poll().firing is False
    observer.stop()


def test_http_observer_plain_fields_and_odd_values(stub: StubService) -> None:
    observer = HttpDriftObserver(stub.url, "/drift")
    serve_json(stub, "/drift", {"drift": "false", "features": []})
    assert observer.poll().firing is False  # the string "false" is not firing
    serve_json(stub, "/drift", {"drift": 1, "features": {"amount": {"drift": True, "p": 1e-9}, "channel": {"drift": False}}})
    reading = observer.poll()
    assert reading.firing and reading.features == frozenset({"amount"})
    assert as_flag(True) and as_flag("yes") and not as_flag(0) and not as_flag(None) and not as_flag(float("nan"))


@pytest.mark.parametrize("route,error", [
    ((503, "application/json", b'{"drift": true}'), "HTTP 503"),
    ((200, "text/html", b"<html>drift dashboard</html>"), "did not return JSON"),
    ((200, "application/json", b"[true]"), "expected an object"),
    ((200, "application/json", b'{"alarm": true}'), "field 'drift' not in"),
])
def test_http_observer_unreadable_signal(stub: StubService, route: tuple[int, str, bytes], error: str) -> None:
    serve(stub, "/drift", *route)
    reading = HttpDriftObserver(stub.url, "/drift").poll()
    assert not reading.ok and not reading.firing and error in (reading.error or "")


def test_http_observer_connection_refused() -> None:
    reading = HttpDriftObserver(f"http://127.0.0.1:{_free_port()}", "/drift", timeout_s=1).poll()
    assert not reading.ok and "failed" in (reading.error or "")


# --- prometheus signal -----------------------------------------------------------------------

def _metrics(feature_values: dict[str, float], detected: float) -> bytes:
    registry = CollectorRegistry()
    per_feature = Gauge("takehome_feature_drift", "drift per feature", ["feature"], registry=registry)
    for name, value in feature_values.items():
        per_feature.labels(feature=name).set(value)
    Gauge("takehome_drift_detected", "drift overall", registry=registry).set(detected)
    return generate_latest(registry)


def test_prometheus_observer_reads_labelled_and_plain_gauges(stub: StubService) -> None:
    serve(stub, "/metrics", 200, "text/plain; version=0.0.4", _metrics({"amount": 1, "channel": 0}, 0))
    labelled = PrometheusDriftObserver(stub.url, "/metrics", "takehome_feature_drift", "feature")
    plain = PrometheusDriftObserver(stub.url, "/metrics", "takehome_drift_detected", "feature")
    reading = labelled.poll()
    assert reading.ok and reading.firing and reading.features == frozenset({"amount"})
    quiet = plain.poll()
    assert quiet.ok and not quiet.firing and quiet.raw["metric_present"]
    serve(stub, "/metrics", 200, "text/plain", _metrics({}, 1))  # labelled gauge never set: no samples
    assert not labelled.poll().firing and labelled.poll().ok
    loud = plain.poll()
    assert loud.firing and loud.features == frozenset()
    missing = PrometheusDriftObserver(stub.url, "/metrics", "candidate_drift", "feature").poll()
    assert missing.ok and not missing.firing and missing.raw["metric_present"] is False


def test_prometheus_observer_unreadable(stub: StubService) -> None:
    serve(stub, "/metrics", 500, "text/plain", b"boom")
    reading = PrometheusDriftObserver(stub.url, "/metrics", "takehome_drift_detected").poll()
    assert not reading.ok and "HTTP 500" in (reading.error or "")
    serve(stub, "/metrics", 200, "text/plain", b"takehome_drift_detected{feature=\"amount\" 1\n")
    reading = PrometheusDriftObserver(stub.url, "/metrics", "takehome_drift_detected").poll()
    assert not reading.ok and "not Prometheus exposition" in (reading.error or "")


# --- factory ---------------------------------------------------------------------------------

def test_make_observer_per_signal(stub: StubService, receiver: WebhookReceiver) -> None:
    serve_json(stub, "/status", {"drift": True, "features": ["amount"]})
    http = make_observer(DriftSignal(signal="http", http_path="/status"), stub.url, "/metrics", None)
    assert isinstance(http, HttpDriftObserver) and http.poll().features == frozenset({"amount"})
    prom = make_observer(DriftSignal(signal="prometheus", prometheus_metric="m", feature_label="col"),
                         stub.url, "/metrics", None)
    assert isinstance(prom, PrometheusDriftObserver) and prom.feature_label == "col" and "m" in prom.describe()
    hook = make_observer(DriftSignal(signal="webhook", feature_label="column"), stub.url, None, receiver)
    assert isinstance(hook, WebhookObserver) and hook.feature_label == "column"
    with pytest.raises(ValueError, match="metrics_path"):
        make_observer(DriftSignal(signal="prometheus", prometheus_metric="m"), stub.url, None, None)
    with pytest.raises(ValueError, match="WebhookReceiver"):
        make_observer(DriftSignal(signal="webhook"), stub.url, None, None)
    assert isinstance(http.poll(), DriftReading)
