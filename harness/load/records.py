"""What a request is and what happened to it. Plain data, shared by the runner and the statistics."""

from __future__ import annotations

from dataclasses import dataclass, field

# Error strings the runner writes; statistics and reports match on them, so keep them here.
ERR_MAX_IN_FLIGHT = "client: max in flight reached"
ERR_TIMEOUT = "timeout"
ERR_ABANDONED = "client: abandoned at stop"
ERR_CLIENT_PREFIX = "client:"


def err_too_large(cap: str) -> str:
    """Error of a reply whose body is over the run's size cap (``cap`` as "1 MiB"): the server's fault."""
    return f"response exceeded {cap} cap"


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One request to send: ``path`` is appended to the run's base URL."""

    method: str = "GET"
    path: str = "/"
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    tag: str | None = None


@dataclass(slots=True)
class RequestRecord:
    """The outcome of one scheduled request. Times are seconds from the run's monotonic start.

    ``sent_s`` is None when the request never left the client (e.g. the in-flight cap was hit).
    ``error`` is None only for a 2xx/3xx reply; any other status is an error ``"http NNN"``.
    """

    index: int
    intended_s: float
    sent_s: float | None
    done_s: float
    status: int | None
    error: str | None
    tag: str | None = None
    body: bytes | None = None

    @property
    def ok(self) -> bool:
        """True when a reply arrived with a non-error status."""
        return self.error is None

    @property
    def latency_s(self) -> float:
        """Latency from the *intended* send time, so queueing behind a stall is counted
        (coordinated-omission safe), not from when the client got round to sending."""
        return self.done_s - self.intended_s

    @property
    def send_lag_s(self) -> float | None:
        """How late the client sent the request relative to the schedule (None if never sent)."""
        return None if self.sent_s is None else self.sent_s - self.intended_s

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form (the body is left out: evidence files must stay small)."""
        return {
            "index": self.index,
            "intended_s": round(self.intended_s, 6),
            "sent_s": None if self.sent_s is None else round(self.sent_s, 6),
            "done_s": round(self.done_s, 6),
            "latency_ms": round(self.latency_s * 1000.0, 3),
            "status": self.status,
            "error": self.error,
            "tag": self.tag,
        }
