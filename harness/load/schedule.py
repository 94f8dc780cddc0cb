"""Open-loop pacing: when each request *should* be sent.

The schedule is computed up front from the plan alone, never from the server's replies, so a slow
server cannot slow the arrival process down (that feedback is what hides stalls in closed-loop
tools). Times are seconds from the start of the run.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import numpy as np

ScheduleKind = Literal["fixed", "poisson"]

# Poisson gaps are drawn in chunks of this fixed size so that the lazy iterator and the eager
# function consume the random stream identically: same seed, same times, whichever is used.
_CHUNK = 4096


def _check(rate_rps: float, duration_s: float, kind: str) -> None:
    if not (rate_rps > 0 and math.isfinite(rate_rps)):
        raise ValueError(f"rate_rps must be a positive finite number, got {rate_rps!r}")
    if not (duration_s >= 0 and math.isfinite(duration_s)):
        raise ValueError(f"duration_s must be a non-negative finite number, got {duration_s!r}")
    if kind not in ("fixed", "poisson"):
        raise ValueError(f"schedule kind must be 'fixed' or 'poisson', got {kind!r}")


def iter_send_times(
    rate_rps: float, duration_s: float, kind: ScheduleKind, seed: int = 0
) -> Iterator[np.ndarray]:
    """Yield the intended send times in increasing chunks (seconds from start, all < duration_s).

    Lazy so that a long background run (rollback traffic until told to stop) does not allocate the
    whole schedule at once.
    """
    _check(rate_rps, duration_s, kind)
    if kind == "fixed":
        # i / rate rather than cumulative sums: exact spacing, no float drift over long runs.
        n = math.ceil(rate_rps * duration_s - 1e-9)
        for start in range(0, n, _CHUNK):
            idx = np.arange(start, min(n, start + _CHUNK), dtype=np.float64)
            yield idx / rate_rps
        return
    rng = np.random.default_rng(seed)
    t = 0.0
    first = True
    while True:
        gaps = rng.exponential(1.0 / rate_rps, _CHUNK)
        if first:
            # The first request goes at t=0 so both schedules start together; memorylessness
            # means this does not bias the arrival process.
            gaps[0] = 0.0
            first = False
        times = t + np.cumsum(gaps)
        t = float(times[-1])
        inside = times[times < duration_s]
        if inside.size:
            yield inside
        if inside.size < times.size:
            return


def intended_send_times(
    rate_rps: float, duration_s: float, kind: ScheduleKind, seed: int = 0
) -> np.ndarray:
    """All intended send times of a run, in seconds from start (float64, increasing).

    ``fixed`` spaces requests exactly ``1/rate_rps`` apart; ``poisson`` draws exponential gaps with
    mean ``1/rate_rps`` (a Poisson arrival process, as MLPerf's server scenario uses), reproducible
    for a given ``seed``.
    """
    chunks = list(iter_send_times(rate_rps, duration_s, kind, seed))
    if not chunks:
        return np.empty(0, dtype=np.float64)
    return np.concatenate(chunks)
