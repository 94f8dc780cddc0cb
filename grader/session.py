"""What the checks share during one grading run: the live service, its contract, the config,
the reference model's answers, the version fingerprint, the drift observer and the timeline.

Checks receive a GradingSession and nothing else; they never learn which runtime they are on.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from grader.config import GraderConfig
from grader.facts import Facts
from grader.results import TimelineEvent
from harness.contract import Contract
from harness.fingerprint import Fingerprinter, VersionReading
from harness.observers.base import DriftObserver
from harness.runtimes.base import Runtime
from harness.service import ServiceClient


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived: stop, tear down, report."""


#: Set by the lifecycle's signal handler. The handler also raises, but an exception raised from a
#: signal handler can be swallowed (e.g. when it lands in a fork hook), so loops check this too.
INTERRUPT = threading.Event()


def check_interrupted() -> None:
    """Raise Interrupted if a stop signal has arrived."""
    if INTERRUPT.is_set():
        raise Interrupted("stop signal received")


class Clock:
    """The time checks wait by. Tests pass a fake (``tests/fakes.py``) so waits cost nothing."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK = Clock()


class Deadline:
    """A cooperative phase timeout: long loops call ``check()``; waits use ``remaining()``."""

    def __init__(self, seconds: float, phase: str, clock: Clock = SYSTEM_CLOCK) -> None:
        self.phase = phase
        self.seconds = seconds
        self.clock = clock
        self.end = clock.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - self.clock.monotonic())

    def expired(self) -> bool:
        return self.clock.monotonic() >= self.end

    def check(self) -> None:
        """Raise PhaseTimeout once the phase has run out of time (or Interrupted on a stop signal)."""
        check_interrupted()
        if self.expired():
            from harness.errors import PhaseTimeout

            raise PhaseTimeout(f"phase '{self.phase}' ran past its {self.seconds:.0f}s timeout")


@dataclass
class ReferenceModels:
    """The reference model's predictions, computed by the grader from its own artifacts."""

    predict: Callable[[str, list[dict]], np.ndarray]  # (version, rows) -> probabilities


@dataclass
class GradingSession:
    """Shared state of one run. Created by the lifecycle once the service is up."""

    run_id: str
    config: GraderConfig
    contract: Contract
    runtime: Runtime
    client: ServiceClient
    reference: ReferenceModels
    fingerprinter: Fingerprinter
    observer: DriftObserver | None
    seed: int
    progress: Callable[[str], None]
    commands: Any = None  # the contract's deploy/rollback section for the runtime in use
    clock: Clock = SYSTEM_CLOCK
    t0: float = field(default_factory=time.monotonic)
    timeline: list[TimelineEvent] = field(default_factory=list)
    facts: Facts = field(default_factory=Facts)  # what checks learn for later checks (see their specs)
    sent_request_ids: list[str] = field(default_factory=list)
    _last_predictions: list[float] | None = None
    _counter: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def request_id(self, phase: str) -> str:
        """A unique request id the candidate's logs should record."""
        with self._lock:
            rid = f"tk-{self.run_id[:8]}-{phase}-{next(self._counter)}"
        return rid

    def remember_request_id(self, rid: str) -> None:
        with self._lock:
            self.sent_request_ids.append(rid)

    def event(self, kind: str, label: str, **data: Any) -> None:
        """Add a timeline event at the current time."""
        with self._lock:
            self.timeline.append(TimelineEvent(t_s=round(self.clock.monotonic() - self.t0, 3), kind=kind,
                                               label=label, data=data))

    def fingerprint(self, phase: str = "probe", remember_failed: bool = True) -> VersionReading:
        """Ask the live service which version it serves, by its predictions on the probe rows.

        ``remember_failed=False``: a request that failed is not among those looked for in the logs
        (a probe the service may rightly refuse, before any model is deployed).
        """
        check_interrupted()
        rid = self.request_id(phase)
        out = self.client.predict(self.fingerprinter.rows, request_id=rid)
        if out.ok or remember_failed:
            self.remember_request_id(rid)
        if not out.ok or out.predictions is None:
            return VersionReading("error", error=out.error or f"HTTP {out.status}: {out.body_excerpt[:200]}")
        reading = self.fingerprinter.classify(out.predictions)
        self._last_predictions = out.predictions
        return reading

    def last_probe_predictions(self) -> list[float] | None:
        """Predictions of the latest fingerprint probe (to learn the candidate's own signature)."""
        return self._last_predictions
