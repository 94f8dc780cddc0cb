"""Webhook drift signal: the candidate's service (or its Alertmanager) POSTs alerts to the grader.

The grader runs a ``WebhookReceiver`` and passes ``url_for(host)`` to the candidate as
``$TAKEHOME_ALERT_WEBHOOK_URL``. Two payload shapes are accepted on ``POST /alerts``:

* Alertmanager webhook (version 4): ``{"version": "4", "status": "firing", "alerts": [{"status":
  "firing", "labels": {"alertname": "FeatureDrift", "feature": "amount"}, ...}]}``. Each alert is
  keyed by its label set: a firing alert adds its key, a resolved one removes it.
* Plain: ``{"drift": true, "features": ["amount"]}``; ``{"drift": false}`` clears every alert.

Every payload is recorded with its time (bounded) as evidence. Errors are plain HTTP: 400 for
non-JSON or an unknown shape, 413 over 1 MiB, 408 when a request is not delivered within 10 s,
405 for a method other than POST, 404 elsewhere. A stdlib ``ThreadingHTTPServer`` in a daemon
thread is enough for a handful of alerts a minute and has no event loop to share with the grader.

The sender is the candidate's code, so the receiver bounds what it can cost the grader: body
size, wall-clock time per request (a sender trickling one byte a second is cut off), connections
served at once, alerts held firing, and the size of what is recorded.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from harness.limits import WEBHOOK_MAX_BODY_BYTES, WEBHOOK_REQUEST_DEADLINE_S
from harness.observers.base import DriftObserver, DriftReading, as_flag

ALERTS_PATH = "/alerts"
MAX_BODY_BYTES = WEBHOOK_MAX_BODY_BYTES
#: Connections served at once; more are closed on accept instead of each getting a thread.
MAX_CONNECTIONS = 32
#: Distinct alerts held firing; a payload that would go past it is refused (400).
MAX_FIRING_ALERTS = 1000
_DRAIN_LIMIT = 4 * 1024 * 1024  # read (and drop) an oversized body up to this, so the 413 reaches the client
# A recorded payload larger than this is kept as a text excerpt: parsed JSON can take ten times
# its text in memory, and up to max_records payloads are kept.
_RECORD_PAYLOAD_LIMIT = 8 * 1024
_REPLY_TIMEOUT_S = 5.0  # seconds to write a (small) reply
_PLAIN_KEY: tuple[tuple[str, str], ...] = (("__plain__", "true"),)

AlertKey = tuple[tuple[str, str], ...]


class PayloadError(ValueError):
    """The payload is JSON but not an alert shape the receiver understands."""


class _DeadlineReader(io.RawIOBase):
    """The socket as a raw stream whose every read stops at the current request's deadline.

    A socket timeout bounds one ``recv``; a sender that trickles a byte at a time defeats it.
    Checking the deadline before each ``recv`` (with the timeout set to what is left) bounds
    the whole request instead, header lines included.
    """

    def __init__(self, sock: socket.socket, deadline: Callable[[], float]) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "memoryview | bytearray") -> int:  # type: ignore[override]
        left = self._deadline() - time.monotonic()
        if left <= 0:
            raise TimeoutError("request deadline reached")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class _BoundedServer(ThreadingHTTPServer):
    """A threading server that serves at most ``max_connections`` connections at once."""

    daemon_threads = True  # a stuck client connection must not block stop()
    request_queue_size = 64  # accept backlog: a burst of connections is accepted (or refused) at once

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # over the cap: no thread for it, the sender sees a reset
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class WebhookReceiver:
    """A small HTTP server that keeps the set of currently firing drift alerts."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, max_records: int = 1000,
                 request_deadline_s: float = WEBHOOK_REQUEST_DEADLINE_S) -> None:
        self.host = host
        self.request_deadline_s = request_deadline_s
        self._requested_port = port
        self._lock = threading.Lock()
        self._firing: dict[AlertKey, dict[str, Any]] = {}  # key -> {"labels", "annotations", "features"}
        self._records: deque[dict[str, Any]] = deque(maxlen=max_records)
        self._received = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "WebhookReceiver":
        """Bind and serve in a daemon thread. Idempotent."""
        if self._server is not None:
            return self
        server = _BoundedServer((self.host, self._requested_port), _make_handler(self))
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port. Safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "WebhookReceiver":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("WebhookReceiver is not started")
        return int(self._server.server_address[1])

    def url_for(self, host: str | None = None) -> str:
        """The URL a candidate should POST to, as reachable from ``host`` (default: the bind host)."""
        name = host or ("127.0.0.1" if self.host in ("0.0.0.0", "") else self.host)
        if ":" in name and not name.startswith("["):  # bare IPv6 literal
            name = f"[{name}]"
        return f"http://{name}:{self.port}{ALERTS_PATH}"

    # --- state -------------------------------------------------------------------------------

    def handle_payload(self, payload: Any) -> None:
        """Apply one payload to the firing set. Raises ``PayloadError`` on an unknown shape."""
        if not isinstance(payload, dict):
            raise PayloadError("payload must be a JSON object")
        if "alerts" in payload:
            self._apply_alertmanager(payload)
        elif "drift" in payload:
            self._apply_plain(payload)
        else:
            raise PayloadError("expected an Alertmanager payload ('alerts': [...]) "
                               "or {'drift': bool, 'features': [...]}")

    def _apply_alertmanager(self, payload: dict[str, Any]) -> None:
        alerts = payload["alerts"]
        if not isinstance(alerts, list):
            raise PayloadError("'alerts' must be a list")
        group_status = str(payload.get("status", "firing"))
        updates: list[tuple[AlertKey, dict[str, Any] | None]] = []
        for i, alert in enumerate(alerts):  # validate all before applying any: all-or-nothing
            if not isinstance(alert, dict):
                raise PayloadError(f"alerts[{i}] must be an object")
            labels = alert.get("labels", {})
            annotations = alert.get("annotations", {})
            if not isinstance(labels, dict) or not isinstance(annotations, dict):
                raise PayloadError(f"alerts[{i}].labels and .annotations must be objects")
            labels = {str(k): str(v) for k, v in labels.items()}
            key = tuple(sorted(labels.items()))
            status = str(alert.get("status", group_status)).lower()
            if status == "resolved":
                updates.append((key, None))
            elif status == "firing":
                # Alertmanager puts endsAt in the past on resolved alerts; status is authoritative.
                updates.append((key, {"labels": labels,
                                      "annotations": {str(k): str(v) for k, v in annotations.items()}}))
            else:
                raise PayloadError(f"alerts[{i}].status must be 'firing' or 'resolved', got {status!r}")
        with self._lock:
            added = {key for key, alert_state in updates if alert_state is not None and key not in self._firing}
            if len(self._firing) + len(added) > MAX_FIRING_ALERTS:
                raise PayloadError(f"more than {MAX_FIRING_ALERTS} distinct alerts would be firing")
            for key, alert_state in updates:
                if alert_state is None:
                    self._firing.pop(key, None)
                else:
                    self._firing[key] = alert_state

    def _apply_plain(self, payload: dict[str, Any]) -> None:
        features = payload.get("features", [])
        if isinstance(features, str):
            features = [features]
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise PayloadError("'features' must be a list of feature names")
        with self._lock:
            if as_flag(payload["drift"]):
                self._firing[_PLAIN_KEY] = {"labels": {}, "annotations": {}, "features": sorted(set(features))}
            else:
                self._firing.clear()  # the plain form has no per-alert keys: "no drift" means none at all

    def record(self, entry: dict[str, Any]) -> None:
        """Keep a received request (payload or error) with its time, for the report."""
        with self._lock:
            self._received += 1
            self._records.append({"t": time.monotonic(), "wall": time.time(), **entry})

    def snapshot(self) -> dict[str, Any]:
        """Currently firing alerts (copies) and counters."""
        with self._lock:
            return {"firing": [dict(v) for v in self._firing.values()], "received": self._received,
                    "last_t": self._records[-1]["t"] if self._records else None}

    def records(self) -> list[dict[str, Any]]:
        """Every recorded request, oldest first (bounded)."""
        with self._lock:
            return list(self._records)

    def reset(self) -> None:
        """Forget firing alerts and records (e.g. between two graded candidates)."""
        with self._lock:
            self._firing.clear()
            self._records.clear()
            self._received = 0


def _make_handler(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "takehome-webhook/1"
        # HTTP/1.1 so that "Expect: 100-continue" (curl, Go clients with big bodies) is answered at once;
        # any reply sent without reading the whole body closes the connection (see _reply).
        protocol_version = "HTTP/1.1"
        timeout = 15  # per recv; the request deadline below is the real bound

        def setup(self) -> None:
            super().setup()
            self._deadline = time.monotonic() + receiver.request_deadline_s
            # Reads go through the deadline: a trickling sender cannot hold a thread for long.
            self.rfile = io.BufferedReader(_DeadlineReader(self.connection, lambda: self._deadline))

        def handle_one_request(self) -> None:
            # Each request on a kept-alive connection gets the full budget (waiting for it included).
            self._deadline = time.monotonic() + receiver.request_deadline_s
            super().handle_one_request()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # requests are recorded as evidence; stderr noise would garble the grader's console

        def _reply(self, status: int, payload: dict[str, Any], extra: dict[str, str] | None = None,
                   close: bool = False) -> None:
            body = json.dumps(payload).encode()
            self.connection.settimeout(_REPLY_TIMEOUT_S)  # reads left the socket with what remained
            if close:
                self.close_connection = True  # an unread request body must not be parsed as the next request
            self.send_response(status)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _refuse(self, status: int, error: str) -> None:
            """Record and answer a request whose body was not read whole; the connection closes,
            since what is left of the body must not be parsed as the next request."""
            receiver.record({"path": self.path.split("?", 1)[0], "status": status, "error": error})
            try:
                self._reply(status, {"error": error}, close=True)
            except OSError:
                self.close_connection = True  # the sender is gone or not reading

        def _read_body(self) -> bytes | None:
            """The body, or None after refusing it: 413 oversized, 400 bad framing, 408 too slow."""
            try:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    return self._read_chunked()
                return self._read_sized()
            except TimeoutError:
                self._refuse(408, f"request not delivered within {receiver.request_deadline_s:g} s")
                return None

        def _read_sized(self) -> bytes | None:
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                self._refuse(400, "invalid Content-Length")
                return None
            if length > MAX_BODY_BYTES:
                self._drain(length)
                self._refuse(413, f"body over {MAX_BODY_BYTES} bytes")
                return None
            body = self.rfile.read(max(length, 0))
            if len(body) < length:  # the sender closed early: never parse half a payload
                self._refuse(400, "body shorter than its Content-Length")
                return None
            return body

        def handle_expect_100(self) -> bool:
            # Refuse an announced oversized body before the client sends it (curl, Go clients).
            try:
                too_big = int(self.headers.get("Content-Length", "0")) > MAX_BODY_BYTES
            except ValueError:
                too_big = False
            if too_big:
                self._refuse(413, f"body over {MAX_BODY_BYTES} bytes (refused on Expect)")
                return False
            return super().handle_expect_100()

        def _drain(self, length: int) -> None:
            # Reading what the client sends lets it see the 413 instead of a reset connection;
            # the drain is bounded in bytes here and in time by the request deadline.
            left = min(length, _DRAIN_LIMIT)
            while left > 0:
                chunk = self.rfile.read(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)

        def _read_chunked(self) -> bytes | None:
            data = bytearray()
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    self._refuse(400, "bad chunked encoding")
                    return None
                if size == 0:
                    self.rfile.readline(1024)  # trailing CRLF (trailers are not used by alert senders)
                    return bytes(data)
                if size < 0 or len(data) + size > MAX_BODY_BYTES:
                    self._refuse(413, f"body over {MAX_BODY_BYTES} bytes")
                    return None
                chunk = self.rfile.read(size)
                if len(chunk) < size:
                    self._refuse(400, "body ended inside a chunk")
                    return None
                data += chunk
                self.rfile.readline(1024)

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            if path.rstrip("/") != ALERTS_PATH:
                self._reply(404, {"error": f"POST alerts to {ALERTS_PATH}"}, close=True)
                return
            body = self._read_body()
            if body is None:
                return  # refused and recorded
            try:
                payload = json.loads(body)
            except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[[...]]]] nesting
                receiver.record({"path": path, "status": 400, "error": "not JSON",
                                 "body": body[:200].decode("utf-8", "replace")})
                self._reply(400, {"error": "body is not JSON"})
                return
            try:
                receiver.handle_payload(payload)
            except PayloadError as exc:
                receiver.record({"path": path, "status": 400, "error": str(exc), "payload": _bounded(body, payload)})
                self._reply(400, {"error": str(exc)})
                return
            receiver.record({"path": path, "status": 200, "payload": _bounded(body, payload)})
            self._reply(200, {"ok": True})

        def _not_allowed(self) -> None:
            path = self.path.split("?", 1)[0]
            if path.rstrip("/") != ALERTS_PATH:
                self._reply(404, {"error": "not found"}, close=True)
            else:
                self._reply(405, {"error": "use POST"}, {"Allow": "POST"}, close=True)

        do_GET = do_PUT = do_DELETE = do_PATCH = _not_allowed

        def do_HEAD(self) -> None:  # HEAD must not carry a body
            self.close_connection = True
            self.send_response(405 if self.path.split("?", 1)[0].rstrip("/") == ALERTS_PATH else 404)
            self.send_header("Allow", "POST")
            self.send_header("Connection", "close")
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


def _bounded(body: bytes, payload: Any) -> Any:
    """The payload itself when small, else a text excerpt: records are kept by the thousand."""
    return payload if len(body) <= _RECORD_PAYLOAD_LIMIT else body[:2000].decode("utf-8", "replace") + "..."


class WebhookObserver(DriftObserver):
    """Turn a receiver's firing set into readings; blamed features come from ``feature_label``."""

    def __init__(self, receiver: WebhookReceiver, feature_label: str = "feature") -> None:
        self.receiver = receiver
        self.feature_label = feature_label

    def start(self) -> None:
        self.receiver.start()

    def stop(self) -> None:
        """The receiver belongs to the caller (its URL was handed to the candidate): leave it running."""

    def describe(self) -> str:
        where = self.receiver.url_for() if self.receiver.running else "(receiver not started)"
        return f"webhook {where} (feature label {self.feature_label!r})"

    def poll(self) -> DriftReading:
        if not self.receiver.running:
            return DriftReading.failed("webhook receiver is not running")
        snap = self.receiver.snapshot()
        features: set[str] = set()
        for alert in snap["firing"]:
            features.update(alert.get("features", []))
            name = alert["labels"].get(self.feature_label) or alert["annotations"].get(self.feature_label)
            if name:
                features.add(name)
        raw = {"received": snap["received"], "firing_alerts": [a["labels"] or {"plain": a.get("features")}
                                                                 for a in snap["firing"]][:20]}
        return DriftReading(firing=bool(snap["firing"]), features=frozenset(features), ok=True, raw=raw)
