"""Latency statistics over request records. Pure: knows nothing of how the records were made.

Latencies go into an HdrHistogram in microseconds (3 significant digits by default, ~140 KB),
like wrk2 does, so percentiles are exact to the stated precision and two runs merge losslessly.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from hdrh.histogram import HdrHistogram

from .records import ERR_ABANDONED, ERR_CLIENT_PREFIX, ERR_MAX_IN_FLIGHT, RequestRecord

Status = Literal["pass", "fail", "inconclusive"]

# Fewer than this, and p99's 95% interval (the one reports give) has no upper end: even a run with
# no request over the bound cannot show "p99 <= bound" at 97.5% one-sided confidence, which needs
# 0.99**n <= 0.025, i.e. n >= ln(0.025)/ln(0.99) = 367.04. It is a floor, not a guarantee: with one
# request or more over the bound, more are needed. (quantile_ranks(368)[1] == 368: the sample max.)
MIN_SAMPLES_FOR_P99 = 368

#: Coverage of the p99 interval reported beside the point estimate.
P99_INTERVAL_CONFIDENCE = 0.95

# Percentiles for the plotted spectrum: 10 points per decade of "nines", 0 .. 99.999, as in
# wrk2's detailed output; the max is appended as 100.
_SPECTRUM = [round(100.0 * (1.0 - 10.0 ** (-k / 10.0)), 6) for k in range(0, 51)]


def quantile_ranks(n: int, q: float = 0.99, confidence: float = P99_INTERVAL_CONFIDENCE) -> tuple[int, int]:
    """1-based ranks of the order statistics X(lo) .. X(hi) that bracket the ``q`` quantile of
    ``n`` samples with ``confidence`` (distribution-free: the count below it is Binomial(n, q)).
    Either may fall outside 1..n when the sample is too small."""
    from scipy.stats import binom  # scipy comes with scikit-learn; imported only when asked

    alpha = (1.0 - confidence) / 2.0
    return int(binom.ppf(alpha, n, q)), int(binom.ppf(1.0 - alpha, n, q)) + 1


def _new_hist(lowest_us: int, highest_us: int, sig_digits: int) -> HdrHistogram:
    return HdrHistogram(lowest_us, highest_us, sig_digits)


@dataclass
class LatencyStats:
    """Counts and latency distribution of the measured (post-warm-up) part of a run.

    Every measured request, failed or not, is in the latency histogram: an error's latency is the
    time until the failure was seen, so timeouts push the tail up instead of vanishing.
    """

    latency_hist: HdrHistogram
    lag_hist: HdrHistogram
    scheduled: int = 0
    sent: int = 0
    ok: int = 0
    errors: int = 0
    client_rejected: int = 0  # never sent because of the in-flight cap (also counted in errors)
    abandoned: int = 0  # still in flight when the run was stopped: not measured at all
    clamped: int = 0  # latencies above the histogram's highest value, recorded as that value
    error_kinds: dict[str, int] = field(default_factory=dict)
    window_s: float = 0.0  # length of the measured part of the schedule
    overrun_s: float = 0.0  # how far past the last intended time the last send happened
    max_latency_ms_exact: float | None = None
    planned_rate_rps: float | None = None
    max_send_lag_ms: float = 10.0
    min_rate_fraction: float = 0.95
    highest_us: int = 60_000_000

    # ---------------------------------------------------------------- construction

    @classmethod
    def from_records(
        cls,
        records: Iterable[RequestRecord],
        *,
        warmup_s: float = 0.0,
        planned_rate_rps: float | None = None,
        lowest_ms: float = 0.001,
        highest_ms: float = 60_000.0,
        sig_digits: int = 3,
        max_send_lag_ms: float = 10.0,
        min_rate_fraction: float = 0.95,
    ) -> "LatencyStats":
        """Build statistics from records, dropping those intended before ``warmup_s``.

        ``planned_rate_rps`` is only reported; saturation compares the achieved send rate with the
        rate of the schedule actually measured, so Poisson sampling noise is not mistaken for lag.
        """
        lowest_us = max(1, int(round(lowest_ms * 1000.0)))
        highest_us = max(lowest_us * 2, int(round(highest_ms * 1000.0)))
        lat = _new_hist(lowest_us, highest_us, sig_digits)
        lag = _new_hist(lowest_us, highest_us, sig_digits)
        st = cls(
            latency_hist=lat,
            lag_hist=lag,
            planned_rate_rps=planned_rate_rps,
            max_send_lag_ms=max_send_lag_ms,
            min_rate_fraction=min_rate_fraction,
            highest_us=highest_us,
        )
        kinds: Counter[str] = Counter()
        intended: list[float] = []
        last_sent = -math.inf
        max_lat = -math.inf
        for r in records:
            if r.intended_s < warmup_s:
                continue
            if r.error == ERR_ABANDONED:
                st.abandoned += 1
                continue
            st.scheduled += 1
            intended.append(r.intended_s)
            if r.sent_s is not None:
                st.sent += 1
                last_sent = max(last_sent, r.sent_s)
                lag.record_value(st._us(max(0.0, r.sent_s - r.intended_s)))
            if r.error is None:
                st.ok += 1
            else:
                st.errors += 1
                kinds[r.error] += 1
                if r.error == ERR_MAX_IN_FLIGHT:
                    st.client_rejected += 1
            latency = max(0.0, r.done_s - r.intended_s)
            max_lat = max(max_lat, latency)
            lat.record_value(st._us(latency))
        st.error_kinds = dict(kinds.most_common())
        if intended:
            first, last = min(intended), max(intended)
            n = len(intended)
            # The n sends cover n intervals, not n-1: scale the observed span so a fixed schedule
            # gives exactly n / rate.
            st.window_s = (last - first) * n / (n - 1) if n > 1 else 0.0
            if st.sent:
                st.overrun_s = max(0.0, last_sent - last)
            st.max_latency_ms_exact = max_lat * 1000.0
        return st

    def _us(self, seconds: float) -> int:
        us = int(round(seconds * 1e6))
        if us > self.highest_us:
            # HdrHistogram refuses out-of-range values; keep the request and mark it clamped.
            self.clamped += 1
            return self.highest_us
        return us

    # ---------------------------------------------------------------- derived figures

    @property
    def count(self) -> int:
        """Measured requests (scheduled after warm-up, abandoned ones excluded)."""
        return int(self.latency_hist.get_total_count())

    @property
    def error_rate(self) -> float:
        """Errors over scheduled requests after warm-up (rejected-by-client ones included)."""
        return self.errors / self.scheduled if self.scheduled else 0.0

    def percentile_ms(self, p: float) -> float | None:
        """Latency at percentile ``p`` (0..100) in ms, at the histogram's precision."""
        if self.count == 0:
            return None
        value = self.latency_hist.get_value_at_percentile(p) / 1000.0
        # The histogram reports a bucket's upper edge; never let that exceed the exact maximum.
        if self.max_latency_ms_exact is not None:
            value = min(value, self.max_latency_ms_exact)
        return value

    @property
    def p50_ms(self) -> float | None:
        return self.percentile_ms(50.0)

    @property
    def p95_ms(self) -> float | None:
        return self.percentile_ms(95.0)

    @property
    def p99_ms(self) -> float | None:
        return self.percentile_ms(99.0)

    def quantile_interval_ms(self, q: float = 0.99, confidence: float = P99_INTERVAL_CONFIDENCE
                             ) -> tuple[float, float] | None:
        """Distribution-free interval for the ``q`` quantile: the order statistics whose ranks
        bracket the Binomial(n, q) count of requests below it with ``confidence``. None when the
        sample is too small for the upper rank to exist (the tail was not observed at all)."""
        n = self.count
        if n == 0:
            return None
        lo_rank, hi_rank = quantile_ranks(n, q, confidence)
        if lo_rank < 1 or hi_rank > n:
            return None
        return (self._value_at_rank_ms(lo_rank), self._value_at_rank_ms(hi_rank))

    def _value_at_rank_ms(self, rank: int) -> float:
        # The histogram's percentile lookup takes the smallest value with at least p% at or below.
        return float(self.percentile_ms(100.0 * rank / self.count) or 0.0)

    @property
    def p99_interval_ms(self) -> tuple[float, float] | None:
        return self.quantile_interval_ms(0.99)

    def _p99_with_interval(self) -> str:
        p99 = float(self.p99_ms or 0.0)
        ci = self.p99_interval_ms
        if ci is None:
            return f"p99 {p99:.1f} ms"
        return f"p99 {p99:.1f} ms ({P99_INTERVAL_CONFIDENCE:.0%} interval {ci[0]:.1f}-{ci[1]:.1f} ms)"

    def slo_within_interval(self, p99_slo_ms: float) -> bool:
        """Whether the SLO lies inside the p99 interval: the sample cannot tell which side the
        service's true p99 is on, and a regrade may land on the other."""
        ci = self.p99_interval_ms
        return ci is not None and ci[0] <= p99_slo_ms <= ci[1]

    @property
    def p999_ms(self) -> float | None:
        return self.percentile_ms(99.9)

    @property
    def max_ms(self) -> float | None:
        """Largest latency: exact when known, otherwise the histogram's (merged stats)."""
        if self.count == 0:
            return None
        if self.max_latency_ms_exact is not None:
            return self.max_latency_ms_exact
        return self.latency_hist.get_max_value() / 1000.0

    @property
    def mean_ms(self) -> float | None:
        return None if self.count == 0 else self.latency_hist.get_mean_value() / 1000.0

    def spectrum(self) -> list[tuple[float, float]]:
        """(percentile, latency ms) pairs from 0 to 99.999 log-spaced in the tail, plus the max
        as 100 — the curve wrk2 and HdrHistogram plots draw."""
        if self.count == 0:
            return []
        pts = [(p, float(self.percentile_ms(p) or 0.0)) for p in _SPECTRUM]
        pts.append((100.0, float(self.max_ms or 0.0)))
        return pts

    @property
    def scheduled_rate_rps(self) -> float | None:
        """Rate of the measured schedule itself (requests per second of window)."""
        return self.scheduled / self.window_s if self.window_s > 0 else None

    @property
    def achieved_rate_rps(self) -> float | None:
        """Requests actually sent per second; a client that falls behind stretches the window."""
        if self.window_s <= 0:
            return None
        return self.sent / (self.window_s + self.overrun_s)

    @property
    def send_lag_p99_ms(self) -> float | None:
        if self.lag_hist.get_total_count() == 0:
            return None
        return self.lag_hist.get_value_at_percentile(99.0) / 1000.0

    @property
    def send_lag_max_ms(self) -> float | None:
        if self.lag_hist.get_total_count() == 0:
            return None
        return self.lag_hist.get_max_value() / 1000.0

    @property
    def saturation_reason(self) -> str | None:
        """Why the harness could not keep its schedule, or None. A saturated generator makes a
        fast server look slow, so its latencies must not be held against the candidate."""
        reasons = []
        lag99 = self.send_lag_p99_ms
        if lag99 is not None and lag99 > self.max_send_lag_ms:
            reasons.append(f"send lag p99 {lag99:.1f} ms > {self.max_send_lag_ms:g} ms")
        sched, achieved = self.scheduled_rate_rps, self.achieved_rate_rps
        if sched and achieved is not None and achieved < self.min_rate_fraction * sched:
            reasons.append(
                f"achieved {achieved:.1f} rps < {self.min_rate_fraction:.0%} of scheduled {sched:.1f} rps"
            )
        if self.client_rejected:
            reasons.append(f"{self.client_rejected} requests not sent: client in-flight cap reached")
        return "; ".join(reasons) or None

    @property
    def client_errors(self) -> int:
        """Failures of the harness itself (other than the in-flight cap), e.g. a request it could
        not build: not the server's fault."""
        return sum(
            n for k, n in self.error_kinds.items() if k.startswith(ERR_CLIENT_PREFIX) and k != ERR_MAX_IN_FLIGHT
        )

    @property
    def saturated(self) -> bool:
        return self.saturation_reason is not None

    # ---------------------------------------------------------------- verdict, export, merge

    def verdict(self, p99_slo_ms: float, max_error_rate: float) -> tuple[Status, str]:
        """Judge the run against an SLO: ``("pass" | "fail" | "inconclusive", message)``.

        Inconclusive, never fail, when the load generator was saturated or fewer requests were
        measured than any p99 claim needs (368). Otherwise the observed p99 is compared with the
        SLO, and the message gives its interval and says when the SLO lies inside it.
        """
        if self.saturated:
            return "inconclusive", f"load generator saturated ({self.saturation_reason}); latency not judged"
        if self.client_errors:
            return "inconclusive", f"{self.client_errors} requests failed inside the load generator"
        if self.count < MIN_SAMPLES_FOR_P99:
            return "inconclusive", (
                f"only {self.count} measured requests: with fewer than {MIN_SAMPLES_FOR_P99}, not even a run "
                "with none over the SLO would put the upper end of p99's 95% interval under it"
            )
        p99 = float(self.p99_ms or 0.0)
        close = (f"; the SLO lies inside the interval, so {self.count} requests cannot tell which side "
                 "of it the service is on" if self.slo_within_interval(p99_slo_ms) else "")
        problems = []
        if p99 > p99_slo_ms:
            problems.append(f"{self._p99_with_interval()} > SLO {p99_slo_ms:g} ms{close}")
        if self.error_rate > max_error_rate:
            problems.append(
                f"error rate {self.error_rate:.2%} > {max_error_rate:.2%} ({self.errors}/{self.scheduled})"
            )
        if problems:
            return "fail", "; ".join(problems)
        return "pass", (
            f"{self._p99_with_interval()} <= {p99_slo_ms:g} ms, error rate {self.error_rate:.2%} over "
            f"{self.scheduled} requests{close}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary for evidence files (ms, rounded to µs)."""

        def r(x: float | None) -> float | None:
            return None if x is None else round(float(x), 3)

        return {
            "count": self.count,
            "scheduled": self.scheduled,
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 6),
            "error_kinds": dict(self.error_kinds),
            "client_rejected": self.client_rejected,
            "client_errors": self.client_errors,
            "abandoned": self.abandoned,
            "clamped": self.clamped,
            "latency_ms": {
                "p50": r(self.p50_ms),
                "p95": r(self.p95_ms),
                "p99": r(self.p99_ms),
                "p99.9": r(self.p999_ms),
                "max": r(self.max_ms),
                "mean": r(self.mean_ms),
            },
            "spectrum_ms": [[p, r(v)] for p, v in self.spectrum()],
            "planned_rate_rps": r(self.planned_rate_rps),
            "scheduled_rate_rps": r(self.scheduled_rate_rps),
            "achieved_rate_rps": r(self.achieved_rate_rps),
            "send_lag_ms": {"p99": r(self.send_lag_p99_ms), "max": r(self.send_lag_max_ms)},
            "saturated": self.saturated,
            "saturation_reason": self.saturation_reason,
            "min_samples_for_p99": MIN_SAMPLES_FOR_P99,
            "p99_interval_ms": _interval_dict(self.p99_interval_ms),
        }

    def merge(self, other: "LatencyStats") -> "LatencyStats":
        """Combine two runs (e.g. several windows) into new stats; the inputs are unchanged.

        Histograms merge exactly; rates combine as total requests over total window time.
        """
        if self.highest_us != other.highest_us:
            raise ValueError("cannot merge stats with different histogram ranges")
        lat = _new_hist(
            self.latency_hist.lowest_trackable_value,
            self.highest_us,
            self.latency_hist.significant_figures,
        )
        lag = _new_hist(
            self.lag_hist.lowest_trackable_value, self.highest_us, self.lag_hist.significant_figures
        )
        for h in (self.latency_hist, other.latency_hist):
            lat.add(h)
        for h in (self.lag_hist, other.lag_hist):
            lag.add(h)
        kinds = Counter(self.error_kinds)
        kinds.update(other.error_kinds)
        maxes = [m for m in (self.max_latency_ms_exact, other.max_latency_ms_exact) if m is not None]
        planned = _weighted_rate(self, other)
        return LatencyStats(
            latency_hist=lat,
            lag_hist=lag,
            scheduled=self.scheduled + other.scheduled,
            sent=self.sent + other.sent,
            ok=self.ok + other.ok,
            errors=self.errors + other.errors,
            client_rejected=self.client_rejected + other.client_rejected,
            abandoned=self.abandoned + other.abandoned,
            clamped=self.clamped + other.clamped,
            error_kinds=dict(kinds.most_common()),
            window_s=self.window_s + other.window_s,
            overrun_s=self.overrun_s + other.overrun_s,
            max_latency_ms_exact=max(maxes) if maxes else None,
            planned_rate_rps=planned,
            max_send_lag_ms=min(self.max_send_lag_ms, other.max_send_lag_ms),
            min_rate_fraction=max(self.min_rate_fraction, other.min_rate_fraction),
            highest_us=self.highest_us,
        )


def _interval_dict(ci: tuple[float, float] | None) -> dict[str, float] | None:
    if ci is None:
        return None
    return {"confidence": P99_INTERVAL_CONFIDENCE, "low": round(ci[0], 3), "high": round(ci[1], 3)}


def _weighted_rate(a: LatencyStats, b: LatencyStats) -> float | None:
    """Planned rate of two merged runs, weighted by how long each ran."""
    pairs = [(s.planned_rate_rps, s.window_s) for s in (a, b) if s.planned_rate_rps is not None]
    if not pairs:
        return None
    total = sum(w for _, w in pairs)
    if total <= 0:
        return pairs[0][0]
    return sum(r * w for r, w in pairs) / total
