"""The fraud model as a BentoML 1.4 service.

    bentoml serve service:FraudService --port 3000

Routes (all on one port, one worker process):

    POST /v1/models/fraud:predict   KServe V1: {"instances": [...]} -> {"predictions": [...]}  (@bentoml.api)
    POST /admin/reload              swap the live model version; needs the admin token      (@bentoml.api)
    GET  /readyz /livez /metrics    BentoML's own; /readyz asks __is_ready__, /metrics gets our
                                    drift gauges appended by __metrics__
    GET  /version /drift /v1/models/fraud   small read-only Starlette app (@bentoml.asgi_app)

Why one worker: the live model is one in-memory reference and the drift window one deque. With
two workers a deploy would have to reach both (a POST lands on one of them) and each would see
half the traffic. One worker at 50 requests/s uses about 12% of a core (see README).
"""

import os

# One BLAS/OpenMP thread per process: requests are tiny, and the drift worker process must not
# fight the server for the second core (set before numpy or scikit-learn are imported).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import asyncio  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import secrets  # noqa: E402
import time  # noqa: E402
from typing import Annotated, Any, Optional  # noqa: E402

import anyio  # noqa: E402
import bentoml  # noqa: E402
from pydantic import BaseModel, Field  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from fraud import settings  # noqa: E402
from fraud.control import TOKEN_HEADER, admin_token  # noqa: E402
from fraud.features import FEATURES, Transaction, check_against_schema, spec, transactions_to_rows  # noqa: E402
from fraud.http import Hooks, RequestGuard  # noqa: E402
from fraud.models import LoadedModel, ModelError, ModelStore, available_versions, load_model  # noqa: E402
from fraud.registry import RegistryError, bootstrap, locked, read_registry  # noqa: E402
from fraud.reqlog import RequestLog, utc_iso  # noqa: E402

log = logging.getLogger("fraud.service")

#: Batches up to this many rows are scored on the event loop (about 1 ms); bigger ones in a thread.
INLINE_ROWS = 64


class Prediction(BaseModel):
    """KServe V1 response: one probability of fraud per instance, in request order."""

    predictions: list[float]


class QuietClientErrors(logging.Filter):
    """BentoML logs every request that fails validation as an ERROR with a full traceback. A bad
    request is the caller's fault, and the request log already has a line for it (request id,
    status, error): keep BentoML's line, drop the traceback, call it a warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        status = getattr(getattr(exc, "error_code", None), "value", None)
        if exc is not None and (type(exc).__name__ == "ValidationError" or (status and 400 <= status < 500)):
            record.msg = f"{record.msg}: client error {type(exc).__name__} (see the request log)"
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def initial_model() -> LoadedModel:
    """The registry's current version (else its previous); without a registry, the newest model,
    recorded as the first registry entry. A restarted worker therefore serves what was deployed."""
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


# --- read-only routes (BentoML APIs are POST-only): a plain Starlette app mounted at / ---------------

async def _version(_: Request) -> JSONResponse:
    svc = bentoml.get_current_service()
    model = svc.store.active if svc else None
    if model is None:
        return JSONResponse({"version": None, "status": "loading"}, status_code=503)
    return JSONResponse({**model.describe(), "available": available_versions()})


async def _drift(_: Request) -> JSONResponse:
    svc = bentoml.get_current_service()
    if svc is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    return JSONResponse(await svc.monitor.fresh())


async def _model_status(_: Request) -> JSONResponse:  # KServe V1 model status route
    svc = bentoml.get_current_service()
    model = svc.store.active if svc else None
    return JSONResponse({"name": "fraud", "ready": model is not None, "version": model.version if model else None})


ops = Starlette(routes=[Route("/version", _version), Route("/drift", _drift),
                        Route("/v1/models/fraud", _model_status)])


@bentoml.asgi_app(ops, path="/")
@bentoml.service(
    name="fraud",
    workers=1,  # one process: one live-model reference, one drift window (see the module docstring)
    traffic={"timeout": 30},
    logging={"access": {"enabled": False}},  # our request log (with the caller's request id) replaces it
    tracing={"excluded_urls": ["/v1/models/fraud:predict", "/metrics", "/readyz", "/livez"]},
)
class FraudService:
    def __init__(self) -> None:
        # Runs once, in the worker process, before it accepts connections.
        from fraud.drift import DriftMonitor
        from fraud.metrics import StateCollector, counters

        logging.getLogger("bentoml._internal.server.http_app").addFilter(QuietClientErrors())
        check_against_schema()  # the hand-written request model must agree with reference_data/schema.json
        self.metrics = counters()
        self.store = ModelStore()
        self.reqlog = RequestLog(settings.request_log_path())
        self.monitor = DriftMonitor(spec(), str(settings.REFERENCE_CSV), settings.DRIFT_WINDOW,
                                    settings.DRIFT_EVAL_EVERY, settings.DRIFT_ALPHA, settings.DRIFT_WAIT_S,
                                    on_result=lambda r: self.metrics.drift_evals.labels(result=r).inc())
        self.collector = StateCollector(self._state)
        self._reload_lock = asyncio.Lock()
        admin_token(create=True)
        model = initial_model()
        self.store.swap(model)
        Hooks.on_rejected = self._log_rejected
        log.warning("serving %s (sha256 %s, fast path %s)", model.version, model.sha256[:12], model.fast_note)

    # --- lifecycle hooks ---------------------------------------------------------------------------
    @bentoml.on_startup
    async def _start_background_work(self) -> None:
        self.reqlog.start()
        self.monitor.start(asyncio.get_running_loop())
        model = self.store.active
        self._event("startup", model_version=model.version if model else None,
                    model_sha256=model.sha256 if model else None, pid=os.getpid(),
                    drift_worker_pids=self.monitor.worker_pids())

    @bentoml.on_shutdown
    async def _stop_background_work(self) -> None:
        model = self.store.active
        self._event("shutdown", model_version=model.version if model else None)
        await anyio.to_thread.run_sync(self.monitor.shutdown)  # joins the drift worker process
        self.reqlog.close()

    def __is_ready__(self) -> bool:
        return self.store.active is not None

    async def __metrics__(self, content: str) -> str:
        """BentoML's /metrics hook: wait (bounded) for a drift verdict covering every row received,
        then append the live state (drift gauges, model info) to BentoML's own metrics."""
        from fraud.metrics import render

        if content and not content.endswith("\n"):
            content += "\n"
        try:
            await self.monitor.fresh()
            return content + render(self.collector)
        except Exception:  # noqa: BLE001 - never lose BentoML's own metrics because of ours
            log.exception("rendering the drift / model gauges failed")
            return content

    # --- the prediction API --------------------------------------------------------------------------
    @bentoml.api(route=settings.PREDICT_PATH)
    async def predict(
        self,
        instances: Annotated[list[Transaction], Field(min_length=1, max_length=settings.MAX_INSTANCES)],
        ctx: bentoml.Context,
    ) -> Prediction:
        """Probability of fraud for each transaction (KServe V1 JSON). BentoML has already parsed and
        validated the body against ``Transaction`` (a 400 with the reasons otherwise)."""
        started = time.perf_counter()
        rid = _request_id(ctx)
        model = self.store.active  # one read: this request is served by this model, even during a swap
        if model is None:
            ctx.response.status_code = 503
            raise bentoml.exceptions.ServiceUnavailable("no model loaded yet")
        rows = transactions_to_rows(instances)
        t0 = time.perf_counter()
        if len(rows) <= INLINE_ROWS:
            proba = model.predict_rows(rows)
        else:
            proba = await anyio.to_thread.run_sync(model.predict_rows, rows)
        scoring_s = time.perf_counter() - t0
        predictions = [float(p) for p in proba]
        if not all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in predictions):
            raise bentoml.exceptions.InternalServerError("the model returned a value that is not a probability")
        self.monitor.add(rows)
        m = self.metrics
        m.rows.labels(version=model.version).inc(len(rows))
        m.scoring.observe(scoring_s)
        hist = m.prediction.labels(version=model.version)
        for p in predictions:
            hist.observe(p)
        ctx.response.headers["X-Model-Version"] = model.version
        self.reqlog.write({"ts": utc_iso(), "event": "predict", "request_id": rid, "status": 200,
                           "model_version": model.version, "model_sha256": model.sha256[:12],
                           "n_instances": len(rows), "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                           "instances": [dict(zip(FEATURES, r)) for r in rows], "predictions": predictions})
        return Prediction(predictions=predictions)

    # --- the reload hook used by `python -m fraud.registry deploy|rollback` -----------------------------
    @bentoml.api(route="/admin/reload")
    async def reload(self, version: str, ctx: bentoml.Context, sha256: Optional[str] = None) -> dict[str, Any]:
        """Load ``version`` completely (checksum, smoke test, fast-path verification), then swap the
        live reference. Requests in flight finish on the model they started with."""
        rid = _request_id(ctx)
        expected = await anyio.to_thread.run_sync(admin_token)
        if not secrets.compare_digest(ctx.request.headers.get(TOKEN_HEADER, ""), expected):
            ctx.response.status_code = 403
            return {"error": f"missing or wrong {TOKEN_HEADER}", "request_id": rid}
        async with self._reload_lock:
            current = self.store.active
            if current and current.version == version and (not sha256 or sha256 == current.sha256):
                return {**current.describe(), "changed": False}
            started = time.perf_counter()
            try:
                # Load, smoke-test and verify the new pipeline completely before it becomes visible.
                model = await anyio.to_thread.run_sync(load_model, version, sha256)
            except ModelError as exc:
                self.metrics.reloads.labels(result="error").inc()
                self._event("reload_failed", request_id=rid, version=version, error=str(exc))
                ctx.response.status_code = 409
                return {"error": str(exc), "request_id": rid}
            old = self.store.swap(model)  # the switch: one reference assignment
            self.metrics.reloads.labels(result="ok").inc()
            took = round((time.perf_counter() - started) * 1000, 1)
            self._event("reload", request_id=rid, version=model.version, sha256=model.sha256,
                        previous=old.version if old else None, load_ms=took, fast_path=model.fast_note)
            log.warning("now serving %s (was %s), loaded in %.0f ms", model.version,
                        old.version if old else None, took)
            return {**model.describe(), "changed": True, "previous": old.version if old else None}

    # --- helpers -------------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        model = self.store.active
        return {"model": model.describe() if model else None, "drift": self.monitor.describe(),
                "features": list(FEATURES), "log_dropped": self.reqlog.dropped}

    def _event(self, kind: str, **fields: Any) -> None:
        self.reqlog.write({"ts": utc_iso(), "event": kind, **fields})

    def _log_rejected(self, record: dict[str, Any]) -> None:
        model = self.store.active
        self.metrics.rejected.labels(status=str(record.get("status"))).inc()
        self.reqlog.write({"ts": utc_iso(), **record, "model_version": model.version if model else None})


def _request_id(ctx: bentoml.Context) -> str:
    state = ctx.request.scope.get("state") or {}
    return state.get("request_id") or ctx.request.headers.get(settings.REQUEST_ID_HEADER) or "-"


FraudService.add_asgi_middleware(RequestGuard)
