"""Fraud model server: aiohttp, the torch.export program, the Open Inference Protocol (v2).

One event loop: a request is validated, turned into the model's input vector by the recipe in
preprocessing.json, scored by the exported program (a fraction of a millisecond for a few rows,
so inline), fed to the PSI monitor and logged as one JSON line. A deploy loads and smoke-tests
the new version before one assignment makes it live.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from psi import Monitor

ROOT = Path(__file__).resolve().parent
SCHEMA = json.loads((ROOT / "reference_data" / "schema.json").read_text())
FEATURES: list[str] = SCHEMA["feature_order"]
FIELDS = {f["name"]: f for f in SCHEMA["features"]}
STATE = Path(os.environ.get("TAKEHOME_STATE_DIR", ROOT / "state"))
MAX_BODY = 1 << 20
torch.set_num_threads(1)  # a few rows per call: threads cost more than they give on 2 cores

REQUESTS = Counter("fraud_requests_total", "Inference requests", ["code"])
LATENCY = Histogram("fraud_request_seconds", "Inference request latency",
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
SERVED = Gauge("fraud_model_served", "1 for the version being served", ["version"])


class Model:
    """One version: the exported program and its preprocessing recipe, smoke-tested on load."""

    def __init__(self, version: str) -> None:
        folder = ROOT / "models" / version
        self.version = version
        self.sha256 = hashlib.sha256((folder / "model.pt2").read_bytes()).hexdigest()
        self.program = torch.export.load(str(folder / "model.pt2")).module()
        recipe = json.loads((folder / "preprocessing.json").read_text())
        self.numeric = recipe["numeric"]
        self.categorical = recipe["categorical"]
        probe = self.predict({f: [FIELDS[f]["categories"][0] if "categories" in FIELDS[f] else FIELDS[f]["min"]]
                              for f in FEATURES})
        if not (len(probe) == 1 and 0.0 <= probe[0] <= 1.0):
            raise RuntimeError(f"{version} failed its smoke test: {probe}")

    def predict(self, columns: dict[str, list[Any]]) -> list[float]:
        n = len(columns[FEATURES[0]])
        parts = []
        for spec in self.numeric:
            x = np.array([spec["impute_median"] if v is None else v for v in columns[spec["name"]]], dtype=np.float64)
            if spec["log1p"]:
                x = np.log1p(x)
            parts.append(((x - spec["mean"]) / spec["std"])[:, None])
        for spec in self.categorical:
            block = np.zeros((n, len(spec["categories"])))
            index = {c: i for i, c in enumerate(spec["categories"])}
            for row, value in enumerate(columns[spec["name"]]):
                if value in index:  # unknown: all zeros
                    block[row, index[value]] = 1.0
            parts.append(block)
        x = torch.from_numpy(np.hstack(parts).astype(np.float32))
        with torch.inference_mode():
            return [float(p) for p in self.program(x).reshape(-1)]


class Invalid(Exception):
    pass


def _no_constants(token: str) -> Any:
    raise Invalid(f"{token} is not JSON")


def _check(name: str, value: Any) -> None:
    f = FIELDS[name]
    if value is None:
        if not f["nullable"]:
            raise Invalid(f"{name}: null is not allowed")
    elif f["type"] == "categorical":
        if not isinstance(value, str):
            raise Invalid(f"{name}: expected a string")
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"{name}: expected a number")
    elif not (math.isfinite(value) and f["min"] <= value <= f["max"]):
        raise Invalid(f"{name}: {value} is outside [{f['min']:g}, {f['max']:g}]")
    elif f["type"] == "integer" and value != int(value):
        raise Invalid(f"{name}: expected an integer")


def parse(body: bytes) -> dict[str, list[Any]]:
    """V2 inputs -> one list of values per feature, validated."""
    try:
        payload = json.loads(body, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise Invalid(f"body is not JSON: {str(exc)[:80]}") from None
    inputs = payload.get("inputs") if isinstance(payload, dict) else None
    if not isinstance(inputs, list) or not all(isinstance(t, dict) for t in inputs):
        raise Invalid('body must be {"inputs": [{"name": ..., "shape": [n], "datatype": ..., "data": [...]}]}')
    columns = {t.get("name"): t.get("data") for t in inputs}
    if len(columns) != len(inputs) or set(columns) != set(FEATURES):
        raise Invalid(f"need exactly one tensor per feature {FEATURES}; got {[t.get('name') for t in inputs]}")
    lengths = {len(d) if isinstance(d, list) else -1 for d in columns.values()}
    if len(lengths) != 1 or (n := lengths.pop()) < 1:
        raise Invalid("every tensor's data must be a list of the same, non-zero length")
    for t in inputs:
        if t.get("shape") != [n]:
            raise Invalid(f"{t['name']}: shape must be [{n}]")
    for name, data in columns.items():
        for value in data:
            _check(name, value)
    return columns


def log(record: dict[str, Any]) -> None:
    print(json.dumps(record, separators=(",", ":")), flush=True)


def served_version() -> str:
    try:
        return json.loads((STATE / "registry.json").read_text())["serving"]
    except (OSError, ValueError, KeyError):
        return "v1"  # production runs v1 until someone deploys


async def infer(request: web.Request) -> web.Response:
    started = time.perf_counter()
    rid = request.headers.get("X-Request-ID") or uuid.uuid4().hex
    model: Model = request.app["model"]
    record: dict[str, Any] = {"ts": time.time(), "request_id": rid, "model_version": model.version}
    try:
        body_bytes = await request.read()  # up to client_max_size; past that aiohttp answers 413 itself
        if len(body_bytes) > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(body_bytes))
        columns = parse(body_bytes)
        predictions = model.predict(columns)
        request.app["monitor"].add(columns)
        record.update(inputs=[{"name": f, "data": columns[f]} for f in FEATURES], predictions=predictions)
        status, body = 200, {"model_name": "fraud", "model_version": model.version, "id": rid, "outputs": [
            {"name": "probability", "shape": [len(predictions)], "datatype": "FP64", "data": predictions}]}
    except Invalid as exc:
        status, body = 400, {"error": str(exc)}
    except web.HTTPRequestEntityTooLarge:
        status, body = 413, {"error": f"body larger than {MAX_BODY} bytes"}
    record.update(status=status, latency_ms=round((time.perf_counter() - started) * 1000, 3))
    log(record)
    REQUESTS.labels(str(status)).inc()
    LATENCY.observe(time.perf_counter() - started)
    return web.json_response(body, status=status, headers={"X-Request-ID": rid})


async def ready(request: web.Request) -> web.Response:
    return web.json_response({"ready": True, "version": request.app["model"].version})


async def version(request: web.Request) -> web.Response:
    m = request.app["model"]
    return web.json_response({"version": m.version, "sha256": m.sha256})


async def switch(request: web.Request) -> web.Response:
    name = request.match_info["version"]
    if not (ROOT / "models" / name / "model.pt2").is_file():
        return web.json_response({"error": f"no model {name}"}, status=404)
    new = await asyncio.to_thread(Model, name)  # loaded and tested off the loop before anyone sees it
    old, request.app["model"] = request.app["model"], new
    SERVED.labels(old.version).set(0)
    SERVED.labels(new.version).set(1)
    log({"ts": time.time(), "event": "switch", "from": old.version, "to": new.version, "sha256": new.sha256})
    return web.json_response({"version": new.version, "sha256": new.sha256})


async def drift(request: web.Request) -> web.Response:
    return web.json_response(request.app["monitor"].verdict())


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def make_app() -> web.Application:
    app = web.Application(client_max_size=64 * MAX_BODY)  # read an oversized body, then answer 413
    app["model"] = Model(served_version())
    SERVED.labels(app["model"].version).set(1)
    app["monitor"] = Monitor(ROOT / "reference_data" / "reference_sample.csv", SCHEMA)
    app.router.add_post("/v2/models/fraud/infer", infer)
    app.router.add_get("/v2/health/ready", ready)
    app.router.add_get("/version", version)
    app.router.add_post("/admin/switch/{version}", switch)
    app.router.add_get("/drift", drift)
    app.router.add_get("/metrics", metrics)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8080")),
                access_log=None, print=lambda *_: print("serving", file=sys.stderr, flush=True))
