"""Assemble and run the KServe ModelServer: the model, our routes and middleware, the monitor.

KServe owns the data plane: ``/v1/models/fraud:predict``, ``/v2/models/fraud/infer``, the
health routes (``/v1/models/fraud`` answers 200 only while the model is ready, 503 otherwise),
``/metrics``, argument parsing and the uvicorn server. We add, on the same FastAPI app and port:

* ``GET /version``: the live version and its digest (what deploy / rollback verify);
* ``POST /admin/reload``: load, smoke-test and swap a version (token in the state dir);
* ``GET /drift``: the monitor's latest verdict with every p-value (debugging; the grader's signal
  is the webhook);
* the :mod:`~fraud_kserve.middleware` (request id, body cap, request log, HTTP metrics) and an
  exception handler that turns validation errors into 422 / 413 instead of KServe's blanket 400.

One uvicorn worker, one process: the in-process model swap must be seen by every request, and on
2 cores a second worker would only fight the first for the CPU (scoring a row takes 0.3 ms).
"""

from __future__ import annotations

import json
import logging
import secrets
import warnings
from typing import Any

import kserve
import kserve.model_server
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from fraud_kserve import metrics, settings
from fraud_kserve.alerts import Alerter
from fraud_kserve.artifacts import LoadedModel, ModelError, available_versions, load_model
from fraud_kserve.control import TOKEN_HEADER, admin_token
from fraud_kserve.drift import DriftMonitor
from fraud_kserve.drift_stats import load_reference
from fraud_kserve.middleware import CURRENT, RequestContext
from fraud_kserve.model import FraudModel
from fraud_kserve.registry import RegistryError, bootstrap, locked, read_registry
from fraud_kserve.reqlog import RequestLog
from fraud_kserve.schema import InvalidRequest, spec

log = logging.getLogger("fraud_kserve.server")


def initial_model() -> LoadedModel:
    """The registry's current version (its previous one if current cannot load); without a
    registry, the newest complete version, recorded as the bootstrap."""
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
                    return load_model(item["version"], expected_digest=item["sha256"])
                except ModelError as exc:
                    log.error("registry %s version cannot be served: %s", key, exc)
        versions = available_versions()
        if not versions:
            raise ModelError(f"no complete model version under {settings.MODELS_DIR}")
        model = load_model(versions[-1])
        if reg is None:
            bootstrap(model.version, model.digest)
        return model


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, default=lambda o: o.item() if hasattr(o, "item") else str(o)),
                    status_code=status, media_type="application/json")


def install(app: Any, model: FraudModel, monitor: DriftMonitor, reqlog: RequestLog) -> None:
    """Our routes, exception handler and middleware on KServe's app (before the server starts)."""

    async def invalid_request(request: Request, exc: InvalidRequest) -> JSONResponse:
        record = CURRENT.get()
        body = {"error": exc.message, **({"detail": exc.detail} if exc.detail else {})}
        if record is not None:
            body["request_id"] = record["request_id"]
        return JSONResponse(body, status_code=exc.status)

    app.add_exception_handler(InvalidRequest, invalid_request)

    @app.get("/version")
    async def version() -> Response:
        return _json({**model.live.describe(), "model_name": model.name, "available": available_versions()})

    @app.get("/drift")
    async def drift() -> Response:
        return _json(monitor.describe())

    @app.post("/admin/reload")
    async def reload(request: Request) -> Response:
        rid = CURRENT.get()["request_id"] if CURRENT.get() else ""
        if not secrets.compare_digest(request.headers.get(TOKEN_HEADER, ""), admin_token()):
            return _json({"error": f"missing or wrong {TOKEN_HEADER}"}, 403)
        try:
            payload = json.loads(await request.body())
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("version"), str):
            return _json({"error": 'expected {"version": "v1", "sha256": "..."}'}, 422)
        try:
            out = await model.switch(payload["version"], payload.get("sha256"), rid)
        except ModelError as exc:
            metrics.RELOADS.labels(result="error").inc()
            reqlog.event({"event": "model_switch_failed", "request_id": rid, "version": payload["version"],
                          "error": str(exc)})
            return _json({"error": str(exc)}, 409)
        return _json(out)

    app.add_middleware(RequestContext, reqlog=reqlog)


class _ClientErrorsWithoutTraceback(logging.Filter):
    """KServe logs a full traceback for every malformed request (``invalid_input_handler``); a
    client sending garbage is not a server error. Keep one line; the request log has the details."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.funcName in ("invalid_input_handler", "model_not_found_handler") and record.exc_info:
            exc = record.exc_info[1]
            record.msg, record.args = f"client error ({type(exc).__name__}): {exc}", ()
            record.exc_info, record.exc_text = None, None
        return True


def main() -> None:
    import torch

    from kserve import logging as kserve_logging

    kserve_logging.configure_logging()
    # Our JSON request line (with the request id, version, rows and predictions) replaces uvicorn's
    # access line and KServe's per-request timing lines: one line per request keeps the log replayable
    # and small enough to search.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    logging.getLogger("kserve").addFilter(_ClientErrorsWithoutTraceback())
    warnings.filterwarnings("ignore", message=".*ORJSONResponse is deprecated.*")  # KServe's, once per route
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)

    fs = spec()
    reqlog = RequestLog(settings.request_log_path())
    reqlog.start()
    admin_token(create=True)
    initial = initial_model()
    alerter = Alerter(settings.webhook_url(), timeout_s=settings.WEBHOOK_TIMEOUT_S, resend_s=settings.WEBHOOK_RESEND_S,
                      external_url=settings.endpoint(), on_event=reqlog.event,
                      on_send=lambda result: metrics.ALERT_SENDS.labels(result=result).inc())
    monitor = DriftMonitor(fs, load_reference(settings.REFERENCE_CSV, fs), alerter, settings.DRIFT_WINDOW,
                           settings.DRIFT_EVAL_EVERY, settings.DRIFT_ALPHA, settings.DRIFT_CLEAR_ALPHA, reqlog.event)
    model = FraudModel(settings.MODEL_NAME, initial, monitor, reqlog.event)
    install(kserve.model_server.app, model, monitor, reqlog)
    monitor.start()
    reqlog.event({"event": "startup", "model_version": initial.version, "model_sha256": initial.digest,
                  "port": settings.port(), "run_id": settings.run_id(), "columns": list(fs.order),
                  "webhook": bool(settings.webhook_url()), "drift_window": settings.DRIFT_WINDOW,
                  "drift_eval_every": settings.DRIFT_EVAL_EVERY, "drift_alpha": settings.DRIFT_ALPHA,
                  "drift_clear_alpha": settings.DRIFT_CLEAR_ALPHA})
    log.warning("serving %s (digest %s) on port %d", initial.version, initial.digest[:12], settings.port())
    server = kserve.ModelServer(http_port=settings.port(), workers=1, enable_grpc=False,
                                enable_latency_logging=False, grace_period=10)
    try:
        server.start([model])
    finally:
        monitor.shutdown()
        reqlog.event({"event": "shutdown", "model_version": model.live.version})
        reqlog.close()
