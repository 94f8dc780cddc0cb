"""What every drift observer returns, whatever the candidate's signal is (HTTP, Prometheus, webhook).

The drift phase polls an observer after every batch of rows and keeps the readings as evidence:
when the alarm fired, which features it named, and the raw excerpt it was read from. A reading
that could not be taken (service down, malformed JSON) says so with ``ok=False`` and an error,
so "the monitor was silent" and "the monitor could not be read" are never confused.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import httpx

from harness.bounded_http import BoundedResponse, bounded_client, bounded_request
from harness.limits import MAX_RESPONSE_BYTES

_RAW_TEXT_LIMIT = 2000  # characters of a response body kept in a reading


def excerpt(text: str, limit: int = _RAW_TEXT_LIMIT) -> str:
    """Trim ``text`` for evidence; readings are stored by the hundred."""
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"


_TRUE_WORDS = frozenset({"true", "yes", "on", "1", "firing", "drift", "detected"})


def as_flag(value: Any) -> bool:
    """Interpret a JSON drift flag. Strings are read as words: ``"false"`` must not count as firing
    just because a non-empty string is truthy in Python."""
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_WORDS
    if isinstance(value, (int, float)):  # includes bool
        return value > 0  # NaN compares False: not firing
    return bool(value)  # lists / objects: non-empty means something is flagged


@dataclass(frozen=True)
class DriftReading:
    """One read of the drift signal.

    firing: the monitor says "drift now". features: the feature names it blamed (may be empty).
    ok: the signal could be read at all; when False, ``error`` says why and firing is False.
    raw: a small excerpt of what was read, for the report. t: ``time.monotonic()`` of the read.
    """

    firing: bool
    features: frozenset[str] = frozenset()
    ok: bool = True
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    t: float = field(default_factory=time.monotonic)

    @classmethod
    def failed(cls, error: str, raw: dict[str, Any] | None = None) -> "DriftReading":
        """A reading that could not be taken."""
        return cls(firing=False, features=frozenset(), ok=False, error=error, raw=raw or {})

    def as_dict(self) -> dict[str, Any]:
        """Plain data for reports."""
        return {"firing": self.firing, "features": sorted(self.features), "ok": self.ok,
                "error": self.error, "raw": self.raw, "t": self.t}


class DriftObserver(ABC):
    """Reads a candidate's drift verdict. ``poll`` must not raise: failures become ``ok=False``."""

    def start(self) -> None:  # noqa: B027 - an optional hook, not an abstract one
        """Acquire resources (connections, listeners). Default: nothing to do."""

    @abstractmethod
    def poll(self) -> DriftReading:
        """Read the signal now."""

    def stop(self) -> None:  # noqa: B027 - an optional hook, not an abstract one
        """Release resources. Safe to call twice. Default: nothing to do."""

    @abstractmethod
    def describe(self) -> str:
        """One line for the report: where the signal is read from."""

    def __enter__(self) -> "DriftObserver":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HttpPollingObserver(DriftObserver):
    """An observer that GETs one URL per poll over a reused connection (HTTP flag, Prometheus text).

    ``timeout_s`` is the total deadline of one read, and no more than ``max_bytes`` of an answer
    is buffered: the endpoint is the candidate's, so a slow or huge answer is an unreadable signal.
    """

    def __init__(self, url: str, timeout_s: float, max_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self._client: httpx.Client | None = None

    def start(self) -> None:
        if self._client is None:
            self._client = bounded_client(httpx.Limits(max_connections=2, max_keepalive_connections=1))

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def fetch(self, headers: dict[str, str] | None = None) -> tuple[BoundedResponse | None, DriftReading | None]:
        """GET the URL: (response, None), or (None, a failed reading saying why). A response that
        broke the deadline or the size cap is a failed reading. Polling without start() is
        allowed: the client is opened lazily."""
        self.start()
        assert self._client is not None
        resp = bounded_request(self._client, "GET", self.url, headers=headers, deadline_s=self.timeout_s,
                               max_bytes=self.max_bytes)
        if resp.error is not None:
            raw = {"status": resp.status, "body": excerpt(resp.text, 500)} if resp.status is not None else None
            return None, DriftReading.failed(f"GET {self.url} failed: {resp.error}", raw)
        return resp, None
