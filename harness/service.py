"""Control-plane HTTP calls to a candidate's service: readiness, single predictions, raw probes.

httpx is used for these low-rate calls; the load phases use the aiohttp open-loop generator.
No call here raises on an HTTP or network failure: the outcome says what happened, so a check
can turn it into evidence. The service is untrusted, so every call has a total deadline (connect
to last body byte) and a response-size cap (see ``harness.bounded_http``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from harness.bounded_http import BoundedResponse, bounded_client, bounded_request
from harness.contract import Serving
from harness.limits import CONTROL_DEADLINE_S, MAX_RESPONSE_BYTES, READY_PROBE_DEADLINE_S
from harness.protocol import ProtocolError, decode_predictions, encode_request


@dataclass
class HttpOutcome:
    """One request and what came back (or why nothing did)."""

    method: str
    path: str
    status: int | None
    body_excerpt: str
    latency_ms: float
    error: str | None = None
    predictions: list[float] | None = None
    body: bytes | None = None  # the whole body, only when asked for (keep_body=True)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300 and self.error is None

    def evidence(self) -> dict[str, object]:
        out: dict[str, object] = {"request": f"{self.method} {self.path}", "status": self.status,
                                  "latency_ms": round(self.latency_ms, 2)}
        if self.error:
            out["error"] = self.error
        if self.body_excerpt:
            out["response_excerpt"] = self.body_excerpt
        return out


_EXCERPT_BYTES = 400  # bytes of a response body quoted in evidence


class ServiceClient:
    """Talks to one deployed candidate service over its declared contract.

    ``timeout_s`` is the total deadline of each call (not httpx's per-read timeout), and no
    response body is buffered beyond ``max_response_bytes``.
    """

    def __init__(self, base_url: str, serving: Serving, timeout_s: float = CONTROL_DEADLINE_S,
                 max_response_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self.base_url = base_url.rstrip("/")
        self.serving = serving
        self.timeout_s = timeout_s
        self.max_response_bytes = max_response_bytes
        self._client = bounded_client(httpx.Limits(max_connections=8, max_keepalive_connections=4),
                                      base_url=self.base_url)

    def close(self) -> None:
        self._client.close()

    def _send(self, method: str, path: str, content: bytes | None, headers: dict[str, str] | None,
              timeout_s: float | None) -> BoundedResponse:
        return bounded_request(self._client, method, path, content=content, headers=headers,
                               deadline_s=self.timeout_s if timeout_s is None else timeout_s,
                               max_bytes=self.max_response_bytes)

    @staticmethod
    def _outcome(method: str, path: str, resp: BoundedResponse, keep_body: bool) -> HttpOutcome:
        excerpt = resp.body[:_EXCERPT_BYTES].decode("utf-8", "replace")
        return HttpOutcome(method, path, resp.status, excerpt, resp.elapsed_s * 1000, error=resp.error,
                           body=resp.body if keep_body and resp.error is None else None)

    def request(self, method: str, path: str, *, content: bytes | None = None,
                headers: dict[str, str] | None = None, timeout_s: float | None = None,
                keep_body: bool = False) -> HttpOutcome:
        """Send one request within ``timeout_s`` (default: the client's); never raises for HTTP or
        network errors, a slow sender or an oversized answer: ``error`` says which."""
        return self._outcome(method, path, self._send(method, path, content, headers, timeout_s), keep_body)

    def predict(self, rows: list[dict], request_id: str | None = None,
                timeout_s: float | None = None) -> HttpOutcome:
        """POST rows to the predict route and decode the predictions (strictly, per the protocol)."""
        headers = {"Content-Type": "application/json"}
        if request_id:
            headers[self.serving.request_id_header] = request_id
        path = self.serving.predict_path
        resp = self._send("POST", path, encode_request(rows, self.serving.protocol), headers, timeout_s)
        out = self._outcome("POST", path, resp, keep_body=False)
        if out.ok:
            try:
                out.predictions = decode_predictions(resp.body, self.serving.protocol, len(rows))
            except ProtocolError as exc:
                out.error = f"response does not follow the {self.serving.protocol} protocol: {exc}"
        return out

    def ready(self, timeout_s: float = READY_PROBE_DEADLINE_S) -> HttpOutcome:
        """GET the ready path within ``timeout_s``."""
        return self.request("GET", self.serving.ready_path, timeout_s=timeout_s)

    def wait_ready(self, deadline_s: float, alive: Callable[[], bool] = lambda: True, interval_s: float = 0.25,
                   probe_s: float = READY_PROBE_DEADLINE_S) -> HttpOutcome:
        """Poll the ready path until 200, the deadline, or the service dies. Returns the last outcome.

        Returns within ``deadline_s`` (plus a few milliseconds) even when a probe is slow: each
        probe gets at most what is left of the deadline.
        """
        end = time.monotonic() + deadline_s
        last = HttpOutcome("GET", self.serving.ready_path, None, "", 0.0, error="not polled")
        while (left := end - time.monotonic()) > 0:
            last = self.ready(timeout_s=min(probe_s, left))
            if last.ok:
                return last
            if not alive():
                last.error = (last.error or "") + " (the service process exited)"
                return last
            time.sleep(max(0.0, min(interval_s, end - time.monotonic())))
        return last
