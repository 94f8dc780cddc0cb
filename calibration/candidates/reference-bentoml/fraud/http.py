"""An ASGI middleware for what BentoML 1.4 does not do by itself (added with
``FraudService.add_asgi_middleware``):

* **request ids**: the caller's ``X-Request-ID`` (or a generated one) goes into
  ``scope["state"]["request_id"]``, where the API reads it through ``bentoml.Context``, and back out
  as a response header;
* **a body size cap**: BentoML reads the whole body into memory before validating it (there is no
  ``max_request_size`` in 1.4), so a 12 MB body of valid JSON would be parsed and scored. Bodies
  over ``MAX_BODY_BYTES`` get a 413 here, before BentoML sees them; the rest of the oversized body
  is read and dropped so the client, which writes its whole body before reading, sees the 413
  rather than a reset connection;
* **a log line for rejected prediction requests**: BentoML answers schema violations with a 400 from
  its own handler, before our API code runs; the middleware sees the status and the error body and
  writes the request-log record (request id, status, error, start of the body) for them.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any, Awaitable, Callable

from fraud import settings

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,200}$")
_BODY_EXCERPT = 2000


class Hooks:
    """Set by the service once it runs (the middleware is built before the service instance)."""

    on_rejected: Callable[[dict[str, Any]], None] = staticmethod(lambda record: None)  # type: ignore[assignment]


def request_id_from(scope: Scope, header: bytes) -> str:
    raw = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == header), "")
    return raw if _SAFE_ID.match(raw) else uuid.uuid4().hex


class RequestGuard:
    def __init__(self, app: Any, limited_paths: tuple[str, ...] = (settings.PREDICT_PATH, "/admin/reload"),
                 max_body_bytes: int = settings.MAX_BODY_BYTES, log_path: str = settings.PREDICT_PATH) -> None:
        self.app = app
        self.limited = set(limited_paths)
        self.limit = max_body_bytes
        self.log_path = log_path
        self.header = settings.REQUEST_ID_HEADER.lower().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        rid = request_id_from(scope, self.header)
        scope.setdefault("state", {})["request_id"] = rid
        path = scope.get("path", "")
        status = [0]
        error_body = bytearray()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", rid.encode("latin-1"))]}
            elif message["type"] == "http.response.body" and status[0] >= 400 and len(error_body) < 4096:
                error_body.extend(message.get("body", b"")[:4096])
            await send(message)

        body = b""
        if scope.get("method") == "POST" and path in self.limited:
            too_big, body = await self._read_capped(scope, receive)
            if too_big:
                await self._reject_413(send_with_id, rid, too_big)
                self._log_rejected(path, rid, 413, f"request body over the {self.limit}-byte limit", b"", started)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send_with_id)
        if path == self.log_path and status[0] >= 400:
            self._log_rejected(path, rid, status[0], error_body.decode("utf-8", "replace")[:1000], body, started)

    async def _read_capped(self, scope: Scope, receive: Receive) -> tuple[str, bytes]:
        """(reason, b"") when the body is over the limit (after draining it), else ("", body)."""
        declared = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = -1
            if size > self.limit:
                await _drain(receive)
                return f"a body of {size} bytes is over the {self.limit}-byte limit", b""
        buf = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                break
            buf += message.get("body", b"")
            if len(buf) > self.limit:
                if message.get("more_body", False):
                    await _drain(receive)
                return f"the body is over the {self.limit}-byte limit", b""
            if not message.get("more_body", False):
                break
        return "", bytes(buf)

    async def _reject_413(self, send: Send, rid: str, why: str) -> None:
        payload = json.dumps({"error": f"request body too large: {why}", "request_id": rid}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    def _log_rejected(self, path: str, rid: str, status: int, error: str, body: bytes, started: float) -> None:
        if path != self.log_path:
            return
        Hooks.on_rejected({"event": "predict", "request_id": rid, "status": status, "error": error,
                           "body_excerpt": body[:_BODY_EXCERPT].decode("utf-8", "replace") if body else None,
                           "latency_ms": round((time.perf_counter() - started) * 1000, 3)})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that yields the already-read body once, then defers to the real one."""
    sent = [False]

    async def replay() -> Message:
        if not sent[0]:
            sent[0] = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _drain(receive: Receive) -> None:
    # Read and drop the rest, up to DRAIN_LIMIT_BYTES; past that, stop and let the connection close.
    drained = 0
    while drained <= settings.DRAIN_LIMIT_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
