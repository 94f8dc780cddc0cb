"""Pure ASGI middleware in front of KServe's FastAPI app.

It does what KServe's REST server does not, for every request:

* **request id**: takes ``X-Request-ID`` (or makes one), makes sure KServe sees the same value,
  and echoes it in the response;
* **body cap**: reads the body of prediction routes itself, at most ``MAX_BODY_BYTES``; a bigger
  body (announced or not) gets a 413 without ever being buffered or parsed. KServe's handler calls
  ``await request.body()`` unbounded, so a 12 MB JSON body would otherwise be parsed into ~50,000
  Python dicts before anyone could refuse it;
* **request log**: one JSON line per prediction request, written after the response: the id, the
  status, the model version, the validated rows and the predictions (filled in by the model through
  a context variable), or the error and the start of the body for a rejected request;
* **metrics**: requests by route and status, and latency, including the requests KServe rejects
  before the model sees them (malformed JSON).
"""

from __future__ import annotations

import contextvars
import json
import re
import time
import uuid
from typing import Any

from fraud_kserve import metrics, settings
from fraud_kserve.reqlog import RequestLog, utc_iso

#: The request's log record; the model adds version, rows and predictions to it.
CURRENT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("fraud_request", default=None)

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,200}$")
_ROUTES = {"/version": "version", "/drift": "drift", "/metrics": "metrics", "/admin/reload": "admin_reload",
           "/v2/health/ready": "ready", "/v2/health/live": "live", "/": "live",
           f"/v1/models/{settings.MODEL_NAME}": "ready"}
_EXCERPT = 2000


class BodyTooLarge(Exception):
    pass


class RequestContext:
    def __init__(self, app: Any, reqlog: RequestLog, header: str = settings.REQUEST_ID_HEADER,
                 max_body: int = settings.MAX_BODY_BYTES) -> None:
        self.app = app
        self.reqlog = reqlog
        self.header = header.lower().encode("latin-1")
        self.max_body = max_body

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        predict = path in settings.PREDICT_PATHS
        route = "predict" if predict else _ROUTES.get(path, "other")
        headers = list(scope.get("headers", []))
        rid = next((v.decode("latin-1") for k, v in headers if k == self.header), "")
        if not _SAFE_ID.match(rid):
            rid = uuid.uuid4().hex
        # KServe reads x-request-id from the headers (its latency log, forwarded headers): same id.
        headers = [(k, v) for k, v in headers if k not in (self.header, b"x-request-id")]
        headers.append((b"x-request-id", rid.encode("latin-1")))
        if self.header != b"x-request-id":
            headers.append((self.header, rid.encode("latin-1")))
        scope = {**scope, "headers": headers}
        started = time.perf_counter()
        record: dict[str, Any] = {"ts": utc_iso(), "event": "request", "request_id": rid,
                                  "method": scope.get("method"), "path": path}
        token = CURRENT.set(record)
        state = {"status": 500, "error_body": b""}

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", rid.encode("latin-1"))]}
            elif message["type"] == "http.response.body" and state["status"] >= 400:
                if len(state["error_body"]) < 600:
                    state["error_body"] += message.get("body", b"")[:600]
            await send(message)

        body = b""
        try:
            if predict and scope.get("method") == "POST":
                try:
                    body = await self._read_body(scope, receive)
                except BodyTooLarge as exc:
                    await self._reply(send_with_id, 413, {"error": str(exc), "request_id": rid})
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, send_with_id)
        except Exception:
            state["status"] = 500
            raise
        finally:
            elapsed = time.perf_counter() - started
            status = state["status"]
            metrics.REQUESTS.labels(route=route, status=str(status)).inc()
            metrics.LATENCY.labels(route=route).observe(elapsed)
            CURRENT.reset(token)
            if predict or route == "admin_reload" or status >= 500:
                record.update(event="predict" if predict else "request", status=status,
                              latency_ms=round(elapsed * 1000, 3))
                if status >= 400:
                    record["error"] = _error_text(state["error_body"])
                    if body:
                        record["body_excerpt"] = body[:_EXCERPT].decode("utf-8", "replace")
                self.reqlog.write(record)

    async def _read_body(self, scope: dict, receive: Any) -> bytes:
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = -1
            if size > self.max_body:
                await _drain(receive)
                raise BodyTooLarge(f"request body of {size} bytes is over the {self.max_body}-byte limit")
        buf = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            buf += message.get("body", b"")
            if len(buf) > self.max_body:
                await _drain(receive)
                raise BodyTooLarge(f"request body is over the {self.max_body}-byte limit")
            if not message.get("more_body", False):
                break
        return bytes(buf)

    @staticmethod
    async def _reply(send: Any, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as the server would

    return replay


async def _drain(receive: Any) -> None:
    """Read (and drop) the rest of an oversized body so the client sees our 413, not a reset;
    past DRAIN_LIMIT_BYTES stop and let the connection close."""
    drained = 0
    while drained <= settings.DRAIN_LIMIT_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _error_text(body: bytes) -> str:
    try:
        payload = json.loads(body)
        if isinstance(payload, dict):
            return str(payload.get("error") or payload.get("detail") or payload)[:500]
    except ValueError:
        pass
    return body[:500].decode("utf-8", "replace")
