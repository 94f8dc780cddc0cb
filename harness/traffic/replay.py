"""Synchronous replay of rows against the candidate's prediction route (the drift phases).

The drift phases send moderate volumes (a few thousand rows, ``concurrency`` requests in flight)
and poll the drift signal between batches, so a thread pool over one pooled ``httpx.Client`` is
enough; the latency phase has its own open-loop aiohttp generator. Every request carries a unique
request id (``<prefix>-<n>``) so a failed request can be found in the candidate's logs.

A replayer never raises because of the server: HTTP errors, timeouts and refused connections are
counted in ``ReplayStats`` (with the first error quoted as evidence), because a candidate that
fails some requests must still get a drift verdict for the rows that did arrive. Each request
has a total deadline and its answer a size cap (``harness.bounded_http``): a stalled or flooding
server costs one failed request, not a hung phase or the grader's memory.
"""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from harness.bounded_http import bounded_client, bounded_request
from harness.limits import MAX_LOAD_RESPONSE_BYTES, REPLAY_DEADLINE_S
from harness.protocol import CONTENT_TYPE, Protocol, encode_request

_BODY_EXCERPT = 300  # characters of an error response kept as evidence


@dataclass
class ReplayStats:
    """What happened to one ``send`` call. Status keys are HTTP codes ("200") or error kinds."""

    rows: int = 0
    requests: int = 0
    ok: int = 0
    errors: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    first_error: dict[str, Any] | None = None
    request_ids: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def error_rate(self) -> float:
        """Share of requests that did not get a 2xx answer."""
        return self.errors / self.requests if self.requests else 0.0

    def merge(self, other: "ReplayStats") -> "ReplayStats":
        """Add ``other`` into this one (for phase totals over several ``send`` calls); returns self."""
        self.rows += other.rows
        self.requests += other.requests
        self.ok += other.ok
        self.errors += other.errors
        for key, count in other.status_counts.items():
            self.status_counts[key] = self.status_counts.get(key, 0) + count
        if self.first_error is None:
            self.first_error = other.first_error
        self.request_ids.extend(other.request_ids)
        self.wall_s += other.wall_s
        return self

    def as_dict(self) -> dict[str, Any]:
        """Plain data for reports (request ids summarised: they can be thousands)."""
        ids = self.request_ids
        return {
            "rows": self.rows, "requests": self.requests, "ok": self.ok, "errors": self.errors,
            "error_rate": round(self.error_rate, 6), "status_counts": dict(self.status_counts),
            "first_error": self.first_error, "wall_s": round(self.wall_s, 3),
            "request_ids": {"count": len(ids), "first": ids[0] if ids else None, "last": ids[-1] if ids else None},
        }


@dataclass
class _Outcome:
    request_id: str
    rows: int
    status_key: str
    ok: bool
    error: dict[str, Any] | None


class Replayer:
    """Send rows to ``base_url + predict_path`` in batches, ``concurrency`` requests at a time."""

    def __init__(
        self,
        base_url: str,
        predict_path: str,
        protocol: Protocol = "v1",
        request_id_header: str = "X-Request-ID",
        request_id_prefix: str = "takehome",
        concurrency: int = 4,
        timeout_s: float = REPLAY_DEADLINE_S,
        max_response_bytes: int = MAX_LOAD_RESPONSE_BYTES,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.url = base_url.rstrip("/") + predict_path
        self.protocol = protocol
        self.request_id_header = request_id_header
        self.request_id_prefix = request_id_prefix
        self.concurrency = concurrency
        self.timeout_s = timeout_s  # total, per request
        self.max_response_bytes = max_response_bytes
        self._counter = itertools.count(1)
        self._counter_lock = threading.Lock()  # ids must stay unique across concurrent send() calls
        # One connection per worker: keep-alive reuse without opening a socket per request.
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._client = bounded_client(limits, headers={"Content-Type": CONTENT_TYPE})
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="replay")
        self._closed = False

    def _next_id(self) -> str:
        with self._counter_lock:
            return f"{self.request_id_prefix}-{next(self._counter)}"

    def _post(self, request_id: str, body: bytes, n_rows: int) -> _Outcome:
        resp = bounded_request(self._client, "POST", self.url, content=body,
                               headers={self.request_id_header: request_id},
                               deadline_s=self.timeout_s, max_bytes=self.max_response_bytes)
        if resp.error is not None:  # kind: "timeout", "connect_error", "too_large" or an exception name
            return _Outcome(request_id, n_rows, resp.kind or "error", False,
                            {"request_id": request_id, "status": resp.status,
                             "body": resp.body[:_BODY_EXCERPT].decode("utf-8", "replace") or None,
                             "error": resp.error[:_BODY_EXCERPT]})
        ok = 200 <= resp.status < 300 if resp.status is not None else False
        error = None
        if not ok:
            error = {"request_id": request_id, "status": resp.status,
                     "body": resp.body[:_BODY_EXCERPT].decode("utf-8", "replace"), "error": None}
        return _Outcome(request_id, n_rows, str(resp.status), ok, error)

    def send(self, rows: list[dict[str, Any]], rows_per_request: int = 10) -> ReplayStats:
        """Send ``rows`` in chunks of ``rows_per_request``; wait for all answers; return the counts.

        Encoding problems (a grader bug, not the candidate's) raise ``ProtocolError`` before anything
        is sent; everything that goes wrong on the wire is counted instead.
        """
        if self._closed:
            raise RuntimeError("Replayer is closed")
        if rows_per_request < 1:
            raise ValueError("rows_per_request must be >= 1")
        chunks = [rows[i:i + rows_per_request] for i in range(0, len(rows), rows_per_request)]
        # Encode and number everything first: ids follow row order, and a bad row fails fast.
        jobs = [(self._next_id(), encode_request(chunk, self.protocol), len(chunk)) for chunk in chunks]
        stats = ReplayStats()
        start = time.monotonic()
        futures = [self._pool.submit(self._post, rid, body, n) for rid, body, n in jobs]
        for fut in futures:  # in submission order, so first_error is the earliest failing request
            outcome = fut.result()
            stats.requests += 1
            stats.rows += outcome.rows
            stats.request_ids.append(outcome.request_id)
            stats.status_counts[outcome.status_key] = stats.status_counts.get(outcome.status_key, 0) + 1
            if outcome.ok:
                stats.ok += 1
            else:
                stats.errors += 1
                if stats.first_error is None:
                    stats.first_error = outcome.error
        stats.wall_s = time.monotonic() - start
        return stats

    def close(self) -> None:
        """Wait for in-flight requests, then close the pool and the connections. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=True)
        self._client.close()

    def __enter__(self) -> "Replayer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
