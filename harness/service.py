"""Control-plane HTTP calls to a candidate's service: readiness, single predictions, raw probes.

httpx is used for these low-rate calls; the load phases use the aiohttp open-loop generator.
No call here raises on an HTTP or network failure: the outcome says what happened, so a check
can turn it into evidence.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from harness.contract import Serving
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


class ServiceClient:
    """Talks to one deployed candidate service over its declared contract."""

    def __init__(self, base_url: str, serving: Serving, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.serving = serving
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout_s,
                                    limits=httpx.Limits(max_connections=8, max_keepalive_connections=4))

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, path: str, *, content: bytes | None = None,
                headers: dict[str, str] | None = None, timeout_s: float | None = None,
                keep_body: bool = False) -> HttpOutcome:
        """Send one request; never raises for HTTP or network errors."""
        start = time.perf_counter()
        try:
            resp = self._client.request(method, path, content=content, headers=headers,
                                        timeout=timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT)
            body = resp.content
            return HttpOutcome(method, path, resp.status_code, body[:400].decode("utf-8", "replace"),
                               (time.perf_counter() - start) * 1000, body=body if keep_body else None)
        except httpx.HTTPError as exc:
            return HttpOutcome(method, path, None, "", (time.perf_counter() - start) * 1000,
                               error=f"{type(exc).__name__}: {exc}" or type(exc).__name__)

    def predict(self, rows: list[dict], request_id: str | None = None,
                timeout_s: float | None = None) -> HttpOutcome:
        """POST rows to the predict route and decode the predictions (strictly, per the protocol)."""
        headers = {"Content-Type": "application/json"}
        if request_id:
            headers[self.serving.request_id_header] = request_id
        body = encode_request(rows, self.serving.protocol)
        start = time.perf_counter()
        try:
            resp = self._client.post(self.serving.predict_path, content=body, headers=headers,
                                     timeout=timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT)
        except httpx.HTTPError as exc:
            return HttpOutcome("POST", self.serving.predict_path, None, "",
                               (time.perf_counter() - start) * 1000, error=f"{type(exc).__name__}: {exc}")
        out = HttpOutcome("POST", self.serving.predict_path, resp.status_code,
                          resp.content[:400].decode("utf-8", "replace"), (time.perf_counter() - start) * 1000)
        if out.ok:
            try:
                out.predictions = decode_predictions(resp.content, self.serving.protocol, len(rows))
            except ProtocolError as exc:
                out.error = f"response does not follow the {self.serving.protocol} protocol: {exc}"
        return out

    def ready(self, timeout_s: float = 2.0) -> HttpOutcome:
        """GET the ready path."""
        return self.request("GET", self.serving.ready_path, timeout_s=timeout_s)

    def wait_ready(self, deadline_s: float, alive: Callable[[], bool] = lambda: True, interval_s: float = 0.25) -> HttpOutcome:
        """Poll the ready path until 200, the deadline, or the service dies. Returns the last outcome."""
        end = time.monotonic() + deadline_s
        last = HttpOutcome("GET", self.serving.ready_path, None, "", 0.0, error="not polled")
        while time.monotonic() < end:
            last = self.ready()
            if last.ok:
                return last
            if not alive():
                last.error = (last.error or "") + " (the service process exited)"
                return last
            time.sleep(interval_s)
        return last
