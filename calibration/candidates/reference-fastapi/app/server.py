"""The HTTP service: KServe V1 predictions, readiness, version, metrics, drift and the reload hook."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import secrets
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from app import metrics, settings
from app.control import TOKEN_HEADER, admin_token
from app.batching import MicroBatcher
from app.drift import DriftMonitor
from app.features import request_model, spec
from app.models import LoadedModel, ModelError, ModelStore, available_versions, load_model
from app.registry import RegistryError, bootstrap, locked, read_registry
from app.reqlog import RequestLog, utc_iso

log = logging.getLogger("app.server")

_ROUTES = {settings.PREDICT_PATH: "predict", "/healthz": "healthz", "/livez": "livez", "/version": "version",
           "/metrics": "metrics", "/drift": "drift", "/admin/reload": "admin_reload"}
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,200}$")
#: Requests up to this size go through the micro-batcher (scored on the event loop); bigger ones are
#: scored on their own in a thread, so one 1,000-row request never holds the loop for long.
_BATCHED_ROWS = 64
_BODY_EXCERPT = 2000


class ApiError(Exception):
    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status, self.message, self.detail = status, message, detail

    def response(self, request_id: str) -> JSONResponse:
        body: dict[str, Any] = {"error": self.message, "request_id": request_id}
        if self.detail is not None:
            body["detail"] = self.detail
        return JSONResponse(body, status_code=self.status)


class RequestContext:
    """Pure ASGI middleware: request id in and out, per-route count and latency metrics."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.header = settings.REQUEST_ID_HEADER.lower().encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == self.header), "")
        if not _SAFE_ID.match(rid):
            rid = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        route = _ROUTES.get(scope.get("path", ""), "other")
        start = time.perf_counter()
        status = [500]

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            metrics.REQUESTS.labels(route=route, status=str(status[0])).inc()
            metrics.LATENCY.labels(route=route).observe(time.perf_counter() - start)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, at most ``limit`` bytes. Larger bodies are drained (not kept) and get a 413."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "invalid Content-Length header") from None
        if size > limit:
            await _drain(request)
            raise ApiError(413, f"request body of {size} bytes is over the {limit}-byte limit")
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            await _drain(request)
            raise ApiError(413, f"request body is over the {limit}-byte limit")
    return bytes(buf)


async def _drain(request: Request) -> None:
    # Reading (and dropping) the rest lets the client finish sending and read our 413 instead of
    # hitting a reset connection; past DRAIN_LIMIT_BYTES we stop and let the connection close.
    drained = 0
    try:
        async for chunk in request.stream():
            drained += len(chunk)
            if drained > settings.DRAIN_LIMIT_BYTES:
                break
    except Exception:  # noqa: BLE001 - client went away: nothing to answer
        pass


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiError(400, f"body is not valid JSON: {str(exc)[:200]}") from None


def _validation_detail(exc: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)[:20]]


def create_app() -> FastAPI:
    store = ModelStore()
    fs = spec()
    order = fs.order
    req_model = request_model()
    reqlog = RequestLog(settings.request_log_path())
    monitor = DriftMonitor(fs, str(settings.REFERENCE_CSV), settings.DRIFT_WINDOW, settings.DRIFT_EVAL_EVERY,
                           settings.DRIFT_ALPHA, settings.DRIFT_WAIT_S, settings.DRIFT_CLEAR_P)
    reload_lock = asyncio.Lock()
    batcher = MicroBatcher(fs)

    def event(kind: str, **fields: Any) -> None:
        reqlog.write({"ts": utc_iso(), "event": kind, **fields})

    def initial_model() -> LoadedModel:
        """The registry's current version; without a registry, the newest model (and record it)."""
        with locked():
            try:
                reg = read_registry()
            except RegistryError as exc:
                log.error("%s; starting from the newest model", exc)
                reg = None
            if reg is not None:
                for key in ("current", "previous"):
                    item = reg.get(key)
                    if not item:
                        continue
                    try:
                        return load_model(item["version"], expected_sha256=item["sha256"])
                    except ModelError as exc:
                        log.error("registry %s version cannot be served: %s", key, exc)
            versions = available_versions()
            if not versions:
                raise ModelError(f"no models under {settings.MODELS_DIR}")
            model = load_model(versions[-1])
            if reg is None:
                bootstrap(model.version, model.sha256)
            return model

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # noqa: ANN202
        reqlog.start()
        await anyio.to_thread.run_sync(admin_token, True)
        model = await anyio.to_thread.run_sync(initial_model)
        store.swap(model)
        metrics.set_model(model.version, model.sha256)
        monitor.start(asyncio.get_running_loop())
        batcher.start()
        event("startup", model_version=model.version, model_sha256=model.sha256, port=settings.port())
        log.warning("serving %s (sha256 %s) on port %d", model.version, model.sha256[:12], settings.port())
        try:
            yield
        finally:
            event("shutdown", model_version=store.active.version if store.active else None)
            await batcher.stop()
            monitor.shutdown()
            reqlog.close()

    app = FastAPI(title="fraud model", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(RequestContext)

    @app.post(settings.PREDICT_PATH)
    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        rid = request.state.request_id
        model = store.active  # one read: this request is served by this model, even during a swap
        record: dict[str, Any] = {"ts": utc_iso(), "event": "predict", "request_id": rid,
                                  "model_version": model.version if model else None,
                                  "model_sha256": model.sha256[:12] if model else None}
        body = b""
        try:
            if model is None:
                raise ApiError(503, "no model loaded yet")
            body = await read_body(request, settings.MAX_BODY_BYTES)
            payload = parse_json(body)
            if not isinstance(payload, dict):
                raise ApiError(422, 'body must be a JSON object: {"instances": [{feature: value, ...}, ...]}')
            try:
                parsed = req_model.model_validate(payload)
            except ValidationError as exc:
                raise ApiError(422, "invalid instances", _validation_detail(exc)) from None
            rows = [tuple(getattr(inst, name) for name in order) for inst in parsed.instances]
            if len(rows) <= _BATCHED_ROWS:
                proba = await batcher.predict(model, rows)
            else:
                proba = await anyio.to_thread.run_sync(model.predict_rows, rows)
            predictions = [float(p) for p in proba]
            if not all(math.isfinite(p) for p in predictions):
                raise ApiError(500, "the model returned a non-finite probability")
        except ApiError as exc:
            record.update(status=exc.status, error=exc.message, detail=exc.detail,
                          body_excerpt=body[:_BODY_EXCERPT].decode("utf-8", "replace") if body else None,
                          latency_ms=round((time.perf_counter() - started) * 1000, 3))
            reqlog.write(record)
            return exc.response(rid)
        except Exception as exc:  # noqa: BLE001 - never crash the worker; log for replay instead
            log.exception("prediction failed (request %s)", rid)
            record.update(status=500, error=f"{type(exc).__name__}: {exc}",
                          body_excerpt=body[:_BODY_EXCERPT].decode("utf-8", "replace"),
                          latency_ms=round((time.perf_counter() - started) * 1000, 3))
            reqlog.write(record)
            return ApiError(500, "internal error while scoring").response(rid)
        monitor.add(rows)
        metrics.ROWS.labels(version=model.version).inc(len(rows))
        for p in predictions:
            metrics.PREDICTION.labels(version=model.version).observe(p)
        content = json.dumps({"predictions": predictions}).encode()
        record.update(status=200, n_instances=len(rows), latency_ms=round((time.perf_counter() - started) * 1000, 3),
                      instances=[dict(zip(order, r)) for r in rows], predictions=predictions)
        reqlog.write(record)
        return Response(content, media_type="application/json", headers={"X-Model-Version": model.version})

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        model = store.active
        if model is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ok", "model_version": model.version})

    @app.get("/livez")
    async def livez() -> JSONResponse:
        return JSONResponse({"status": "alive"})

    @app.get("/version")
    async def version() -> JSONResponse:
        model = store.active
        if model is None:
            return JSONResponse({"version": None, "status": "loading"}, status_code=503)
        return JSONResponse({**model.describe(), "available": available_versions()})

    @app.get("/v1/models/fraud")
    async def model_metadata() -> JSONResponse:  # KServe V1 model status route
        model = store.active
        return JSONResponse({"name": "fraud", "ready": model is not None, "version": model.version if model else None})

    @app.get("/metrics")
    async def prometheus() -> Response:
        metrics.LOG_DROPPED.set(reqlog.dropped)
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE_LATEST)

    @app.get("/drift")
    async def drift() -> JSONResponse:
        return JSONResponse(await monitor.verdict())

    @app.post("/admin/reload")
    async def reload(request: Request) -> JSONResponse:
        rid = request.state.request_id
        try:
            expected = await anyio.to_thread.run_sync(admin_token)
            if not secrets.compare_digest(request.headers.get(TOKEN_HEADER, ""), expected):
                raise ApiError(403, f"missing or wrong {TOKEN_HEADER}")
            payload = parse_json(await read_body(request, 64 * 1024))
            if not isinstance(payload, dict) or not isinstance(payload.get("version"), str):
                raise ApiError(422, 'expected {"version": "v1", "sha256": "..."}')
            want, sha = payload["version"], payload.get("sha256")
            async with reload_lock:
                current = store.active
                if current and current.version == want and (not sha or sha == current.sha256):
                    return JSONResponse({**current.describe(), "changed": False})
                started = time.perf_counter()
                try:
                    # Load and smoke-test the new pipeline completely before it becomes visible.
                    model = await anyio.to_thread.run_sync(load_model, want, sha)
                except ModelError as exc:
                    metrics.RELOADS.labels(result="error").inc()
                    event("reload_failed", request_id=rid, version=want, error=str(exc))
                    raise ApiError(409, str(exc)) from None
                old = store.swap(model)  # the switch: one reference assignment
                metrics.set_model(model.version, model.sha256)
                metrics.RELOADS.labels(result="ok").inc()
                took = round((time.perf_counter() - started) * 1000, 1)
                event("reload", request_id=rid, version=model.version, sha256=model.sha256,
                      previous=old.version if old else None, load_ms=took)
                log.warning("now serving %s (was %s), loaded in %.0f ms", model.version,
                            old.version if old else None, took)
                return JSONResponse({**model.describe(), "changed": True, "previous": old.version if old else None})
        except ApiError as exc:
            return exc.response(rid)

    return app
