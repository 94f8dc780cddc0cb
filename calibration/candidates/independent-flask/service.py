"""Fraud model service: Flask under gunicorn. Strict input validation, one live model swapped in
one assignment, a drift window fed by every scored row, JSON request logs, Prometheus metrics."""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from drift import Monitor
from fastpath import verified

ROOT = Path(__file__).resolve().parent
SCHEMA = json.loads((ROOT / "reference_data" / "schema.json").read_text())
FEATURES: list[str] = SCHEMA["feature_order"]
FIELDS = {f["name"]: f for f in SCHEMA["features"]}
MAX_BODY = 1 << 20  # 1 MiB: a real request is a few dozen rows, far below this
STATE = Path(os.environ.get("TAKEHOME_STATE_DIR", ROOT / "state"))
SAMPLE = pd.read_csv(ROOT / "reference_data" / "reference_sample.csv")

REQUESTS = Counter("fraud_requests_total", "Prediction requests", ["status"])
LATENCY = Histogram("fraud_request_seconds", "Prediction request latency",
                    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
ROWS = Counter("fraud_rows_total", "Rows scored", ["version"])
LIVE = Gauge("fraud_model_info", "The served model version (1 = live)", ["version"])
DRIFT = Gauge("fraud_drift_detected", "1 while the drift monitor fires, per feature", ["feature"])


class Model:
    def __init__(self, version: str) -> None:
        path = ROOT / "models" / version / "model.joblib"
        data = path.read_bytes()
        self.version, self.sha256 = version, hashlib.sha256(data).hexdigest()
        self.pipeline = joblib.load(path)
        self.fast = verified(self.pipeline, SAMPLE.head(500), FEATURES)  # None: use the pipeline
        self.predict([{f: _example(f) for f in FEATURES}])  # smoke test before it can go live

    def predict(self, rows: list[dict[str, Any]]) -> list[float]:
        if self.fast is not None:
            return [float(p) for p in self.fast(rows)]
        frame = pd.DataFrame(rows, columns=FEATURES)
        return [float(p) for p in self.pipeline.predict_proba(frame)[:, 1]]


def _example(name: str) -> Any:
    f = FIELDS[name]
    return f["categories"][0] if f["type"] == "categorical" else f["min"]


def current_version() -> str:
    """The registry's current version (registry.py writes it), else v1: production runs v1."""
    try:
        return json.loads((STATE / "registry.json").read_text())["current"]
    except (OSError, ValueError, KeyError):
        return "v1"


class Invalid(Exception):
    pass


def _number(name: str, value: Any) -> float | None:
    f = FIELDS[name]
    if value is None:
        if f["nullable"]:
            return None
        raise Invalid(f"{name} may not be null")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"{name} must be a number, got {json.dumps(value)[:40]}")
    if not math.isfinite(value) or not f["min"] <= value <= f["max"]:
        raise Invalid(f"{name}={value} is outside [{f['min']:g}, {f['max']:g}]")
    if f["type"] == "integer" and value != int(value):
        raise Invalid(f"{name} must be an integer, got {value}")
    return value


def validate(payload: Any) -> list[dict[str, Any]]:
    if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
        raise Invalid('body must be {"instances": [{feature: value, ...}, ...]}')
    rows = payload["instances"]
    if not rows:
        raise Invalid("instances is empty")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise Invalid(f"instance {i} is not an object")
        if set(row) != set(FEATURES):
            raise Invalid(f"instance {i}: missing {sorted(set(FEATURES) - set(row))}, "
                          f"unknown {sorted(set(row) - set(FEATURES))}")
        for name in FEATURES:
            if FIELDS[name]["type"] == "categorical":
                if not isinstance(row[name], str):  # an unseen category is valid: drift, not error
                    raise Invalid(f"instance {i}: {name} must be a string")
            else:
                _number(name, row[name])
    return rows


def _reject_constant(token: str) -> Any:
    raise Invalid(f"{token} is not JSON")


app = Flask(__name__)
lock = threading.Lock()
live = {"model": Model(current_version())}
LIVE.labels(live["model"].version).set(1)
monitor = Monitor(ROOT / "reference_data" / "reference_sample.csv", FIELDS, FEATURES)


def log(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def read_body() -> bytes | None:
    """The body, or None when it is larger than MAX_BODY (read to the end all the same, up to 64x,
    so the client gets the 413 instead of a connection reset)."""
    chunks, size = [], 0
    while chunk := request.stream.read(1 << 16):
        size += len(chunk)
        if size <= MAX_BODY:
            chunks.append(chunk)
        elif size > 64 * MAX_BODY:
            break
    return b"".join(chunks) if size <= MAX_BODY else None


@app.post("/predict")
def predict() -> Response:
    started = time.perf_counter()
    rid = request.headers.get("X-Request-ID") or uuid.uuid4().hex
    model = live["model"]  # one read: this request is answered by this model
    record: dict[str, Any] = {"ts": time.time(), "request_id": rid, "model_version": model.version}
    try:
        raw = read_body()
        if raw is None:
            status, body = 413, {"error": f"body larger than {MAX_BODY} bytes"}
        else:
            try:
                payload = json.loads(raw, parse_constant=_reject_constant)
            except (ValueError, RecursionError) as exc:
                raise Invalid(f"not JSON: {str(exc)[:80]}") from None
            rows = validate(payload)
            predictions = model.predict(rows)
            monitor.add(rows)
            ROWS.labels(model.version).inc(len(rows))
            record.update(instances=rows, predictions=predictions)
            status, body = 200, {"predictions": predictions}
    except Invalid as exc:
        status, body = 422, {"error": str(exc)}
    record.update(status=status, latency_ms=round((time.perf_counter() - started) * 1000, 3))
    log(record)
    REQUESTS.labels(str(status)).inc()
    LATENCY.observe(time.perf_counter() - started)
    return Response(json.dumps(body), status, mimetype="application/json",
                    headers={"X-Request-ID": rid, "X-Model-Version": model.version})


@app.get("/ready")
def ready() -> Response:
    return Response(json.dumps({"ready": True, "version": live["model"].version}), 200, mimetype="application/json")


@app.get("/version")
def version() -> Response:
    m = live["model"]
    return Response(json.dumps({"version": m.version, "sha256": m.sha256}), 200, mimetype="application/json")


@app.post("/admin/deploy/<name>")
def deploy(name: str) -> Response:
    """Load ``name`` completely (checksum, smoke test), then swap it in; in-flight requests finish
    on the model they started with."""
    if not (ROOT / "models" / name / "model.joblib").is_file():
        return Response(json.dumps({"error": f"no model {name}"}), 404, mimetype="application/json")
    with lock:
        new = Model(name)
        old, live["model"] = live["model"], new
        LIVE.labels(old.version).set(0)
        LIVE.labels(new.version).set(1)
    log({"ts": time.time(), "event": "deploy", "from": old.version, "to": new.version, "sha256": new.sha256})
    return Response(json.dumps({"version": new.version, "sha256": new.sha256}), 200, mimetype="application/json")


@app.get("/drift")
def drift() -> Response:
    verdict = monitor.verdict()
    for f in FEATURES:
        DRIFT.labels(f).set(1 if f in verdict["features"] else 0)
    return Response(json.dumps(verdict), 200, mimetype="application/json")


@app.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(), 200, mimetype=CONTENT_TYPE_LATEST)
