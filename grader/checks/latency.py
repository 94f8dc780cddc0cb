"""Latency under open-loop load at the stated rate: p99 against the SLO, and the error rate.

Latency is measured from each request's intended send time (coordinated-omission safe). When
the load generator itself falls behind its schedule the verdict is inconclusive and costs the
candidate nothing.
"""

from __future__ import annotations

import functools

from grader.checks.spec import CheckSpec, items
from grader.config import LoadConfig
from grader.evidence import LatencyEvidence
from grader.results import LatencySummary, Outcome
from grader.session import Deadline, GradingSession
from harness.load.records import ERR_CLIENT_PREFIX, ERR_TIMEOUT, RequestRecord, RequestSpec
from harness.load.runner import LoadPlan, Settled, run_open_loop
from harness.load.stats import MIN_SAMPLES_FOR_P99, P99_INTERVAL_CONFIDENCE, LatencyStats, quantile_ranks
from harness.protocol import encode_request
from harness.traffic.baseline import baseline_records

#: Every Nth load request id is kept to look for in the candidate's logs later.
_REMEMBER_EVERY = 200

ITEMS = items("latency", p99_under_slo="p99 latency under the SLO at the stated open-loop rate",
              error_rate="Error rate under load")
P99_UNDER_SLO, ERROR_RATE = ITEMS


def plan_for(cfg: LoadConfig, seed: int) -> LoadPlan:
    """The latency window: ``warmup_s`` of unmeasured load, then up to ``duration_s`` measured,
    of which the part after ``cfg.measured_floor_s()`` runs only while the verdict is not settled."""
    settle_from = cfg.warmup_s + cfg.measured_floor_s() if cfg.ends_early() else None
    return LoadPlan(rate_rps=cfg.rate_rps, duration_s=cfg.warmup_s + cfg.duration_s, warmup_s=cfg.warmup_s,
                    schedule=cfg.schedule, seed=seed, timeout_s=cfg.timeout_s, max_send_lag_ms=cfg.max_send_lag_ms,
                    max_in_flight=max(64, int(cfg.rate_rps * cfg.timeout_s * 2)), connections=cfg.connections,
                    settle_from_s=settle_from)


def settled_pass(slo_ms: float, warmup_s: float, max_send_lag_ms: float) -> Settled:
    """The early end of the latency window: enough requests measured for a p99 claim, none
    failed, the generator on schedule, and even the upper end of p99's 95% interval within the
    SLO, so more of the same traffic would not change the verdict. Anything else (a slow or
    failing service, a lagging generator, a p99 near the SLO) runs the whole window, which
    is what partial credit is measured on.
    """
    # The upper rank depends only on n; computed once per n on the event loop (microseconds after).
    upper_rank = functools.lru_cache(maxsize=64)(lambda n: quantile_ranks(n, 0.99, P99_INTERVAL_CONFIDENCE)[1])

    def settled(records: list[RequestRecord], _t: float) -> bool:
        measured = [r for r in records if r.intended_s >= warmup_s]
        n = len(measured)
        if n < MIN_SAMPLES_FOR_P99 or any(not r.ok or r.sent_s is None for r in measured):
            return False
        lags = sorted(r.sent_s - r.intended_s for r in measured)  # type: ignore[operator]
        if lags[min(n - 1, int(0.99 * n))] * 1000.0 > max_send_lag_ms:
            return False
        latencies = sorted(r.done_s - r.intended_s for r in measured)
        rank = upper_rank(n)
        return rank <= n and latencies[rank - 1] * 1000.0 <= slo_ms

    return settled


def run(s: GradingSession, deadline: Deadline) -> list[Outcome]:
    """Run the open-loop latency phase and judge p99 and errors."""
    cfg = s.config.load
    th = s.config.thresholds
    total_s = cfg.warmup_s + cfg.duration_s
    n_rows = int(cfg.rate_rps * total_s * 1.5) + 100
    rows = baseline_records(n_rows, s.seed + 505)
    bodies = [encode_request([r], s.contract.serving.protocol) for r in rows]
    header = s.contract.serving.request_id_header
    prefix = f"tk-{s.run_id[:8]}-latency"
    path = s.contract.serving.predict_path

    def request_for(i: int) -> RequestSpec:
        rid = f"{prefix}-{i}"
        if i % _REMEMBER_EVERY == 7:
            s.remember_request_id(rid)
        return RequestSpec("POST", path, bodies[i % len(bodies)],
                           {"Content-Type": "application/json", header: rid})

    plan = plan_for(cfg, s.seed)
    s.progress(f"latency: open-loop {cfg.rate_rps:g} req/s for {cfg.measured_floor_s():.3g}-{cfg.duration_s:g}s "
               f"(+{cfg.warmup_s:g}s warm-up)")
    attempts = []
    for attempt in (1, 2):
        deadline.check()
        s.event("phase", "latency", rate_rps=cfg.rate_rps, attempt=attempt)
        result = run_open_loop(s.client.base_url, plan, request_for,
                               settled=settled_pass(th.latency_p99_ms, cfg.warmup_s, cfg.max_send_lag_ms))
        s.event("phase_end", "latency", attempt=attempt)
        stats = result.stats()
        lower = service_time_p99_ms(result.records, cfg.warmup_s)
        noise = machine_noise(stats, th.latency_p99_ms, lower)
        attempts.append(noise)
        # A saturated or lagging generator is often a passing burst of other work on the machine:
        # measure once more rather than let the grader's own delay decide the verdict.
        if noise is None or attempt == 2 or deadline.remaining() < total_s + 5:
            break
        s.progress(f"latency: {noise}; measuring again")
    s.facts.latency = LatencySummary.from_stats(stats.to_dict(), th.latency_p99_ms)
    outcomes = judge(stats, th.latency_p99_ms, th.latency_error_rate, lower,
                     noisy=attempts[-1] is not None and not stats.saturated)
    for o in outcomes:
        o.evidence["attempts"] = len(attempts)
        o.evidence["generator_gc_pause_max_ms"] = result.meta.get("gc_pause_max_ms")
        o.evidence["window_s"] = round((result.settled_at_s or plan.duration_s) - cfg.warmup_s, 2)
        o.evidence["ended_early"] = result.settled_at_s is not None
    return outcomes


def machine_noise(stats: LatencyStats, slo_ms: float, lower_bound_p99_ms: float | None) -> str | None:
    """Why this window says more about the grader's machine than the service, or None.

    Saturation is one reason. The other is a verdict that flips on the grader's own delay: p99 from
    the intended send time is over the SLO, yet p99 from the actual send time (which leaves out how
    late the generator was) is within it.
    """
    if stats.saturated:
        return f"load generator saturated ({stats.saturation_reason})"
    upper = stats.p99_ms
    if (upper is not None and lower_bound_p99_ms is not None and upper > slo_ms >= lower_bound_p99_ms
            and stats.count >= MIN_SAMPLES_FOR_P99):
        return (f"p99 {upper:.1f} ms over the SLO only with the load generator's own send lag included "
                f"({lower_bound_p99_ms:.1f} ms from the actual send times)")
    return None


def service_time_p99_ms(records: list[RequestRecord], warmup_s: float) -> float | None:
    """p99 of latency measured from the *actual* send time: a lower bound on the true p99.

    When the generator lags, latency from the intended time is an upper bound (it includes the
    client's own delay); if even this lower bound breaks the SLO, the service is slow regardless.
    """
    import numpy as np

    vals = [r.done_s - r.sent_s for r in records if r.sent_s is not None and r.intended_s >= warmup_s and r.ok]
    return float(np.percentile(vals, 99) * 1000.0) if len(vals) >= 100 else None


def judge(stats: LatencyStats, slo_ms: float, max_error_rate: float,
          lower_bound_p99_ms: float | None = None, noisy: bool = False) -> list[Outcome]:
    """Turn latency statistics into the two outcomes (pure).

    ``lower_bound_p99_ms`` is the p99 measured from actual send times (see ``service_time_p99_ms``);
    it lets a saturated run still convict a slow service, or clear a fast one. ``noisy`` says the
    last window's verdict still flipped on the generator's own send lag (see ``machine_noise``):
    then p99 is inconclusive for the machine, never a fail for the candidate.
    """
    ev = {"p50_ms": _r(stats.p50_ms), "p95_ms": _r(stats.p95_ms), "p99_ms": _r(stats.p99_ms),
          "p999_ms": _r(stats.p999_ms), "max_ms": _r(stats.max_ms), "measured": stats.count,
          "scheduled": stats.scheduled, "errors": stats.errors, "error_rate": round(stats.error_rate, 5),
          "achieved_rate_rps": _r(stats.achieved_rate_rps), "send_lag_p99_ms": _r(stats.send_lag_p99_ms),
          "slo_ms": slo_ms, "error_kinds": dict(stats.error_kinds),
          "p99_interval_ms": stats.to_dict()["p99_interval_ms"]}
    verdict, message = stats.verdict(slo_ms, max_error_rate)
    noise = machine_noise(stats, slo_ms, lower_bound_p99_ms) if noisy else None
    if verdict == "fail" and noise is not None and stats.error_rate <= max_error_rate:
        verdict, message = "inconclusive", (
            f"{noise}, twice: the grader's machine, not the service, decides this verdict; latency not judged")
    status: str = verdict  # the judgement below adds two states of its own
    # Refused connections and HTTP errors are the service's doing even when the load generator lags;
    # only timeouts could be the harness's fault, so only they are excused when it is saturated.
    charged = {kind: n for kind, n in stats.error_kinds.items()
               if not kind.startswith(ERR_CLIENT_PREFIX) and not (status == "inconclusive" and kind == ERR_TIMEOUT)}
    server_errors = sum(charged.values())
    ev["server_errors"] = server_errors
    ev["p99_from_actual_send_ms"] = _r(lower_bound_p99_ms)
    if server_errors > 0.5 * max(1, stats.scheduled):
        msg = _mostly_failed(charged, stats)
        return [Outcome.failed(P99_UNDER_SLO, msg, **ev), Outcome.failed(ERROR_RATE, msg, **ev)]
    upper = float(stats.p99_ms or 0.0)
    if status == "inconclusive" and stats.saturated and stats.count >= MIN_SAMPLES_FOR_P99:
        if upper <= slo_ms:
            status = "judged"  # even with the client's own delay included, p99 is within the SLO
        elif lower_bound_p99_ms is not None and lower_bound_p99_ms > slo_ms:
            status = "judged-on-lower-bound"  # slow even measured from the actual send time
    if status == "inconclusive":
        # The harness could not keep its schedule (or measured too few requests): not the candidate's fault.
        rate = server_errors / max(1, stats.scheduled)
        err_out = (Outcome.inconclusive(ERROR_RATE, message, fraction=1.0, **ev) if rate <= max_error_rate else
                   Outcome.partial(ERROR_RATE, 1.0 - rate / 0.05, f"error rate {rate:.2%} "
                                   f"({server_errors} of {stats.scheduled}) above {max_error_rate:.2%}", **ev))
        return [Outcome.inconclusive(P99_UNDER_SLO, message, fraction=1.0, **ev), err_out]
    p99 = lower_bound_p99_ms if status == "judged-on-lower-bound" and lower_bound_p99_ms else upper
    basis = " (measured from actual send times: the load generator lagged)" if status == "judged-on-lower-bound" else ""
    interval = _interval_text(stats, slo_ms) if status != "judged-on-lower-bound" else ""
    if p99 <= slo_ms:
        p99_out = Outcome.passed(P99_UNDER_SLO, f"p99 {p99:.1f} ms <= SLO {slo_ms:g} ms "
                                 f"({stats.count} requests after warm-up{interval})", **ev)
    else:
        # Linear from full credit at the SLO to none at twice the SLO.
        frac = max(0.0, 1.0 - (p99 - slo_ms) / slo_ms)
        p99_out = Outcome.partial(P99_UNDER_SLO, frac, f"p99 {p99:.1f} ms above SLO {slo_ms:g} ms{basis}"
                                  f"{' (' + interval[2:] + ')' if interval else ''}", **ev)
    rate = stats.error_rate
    if rate <= max_error_rate:
        err_out = Outcome.passed(ERROR_RATE, f"error rate {rate:.2%} ({stats.errors} of {stats.scheduled} "
                                 "scheduled requests)", **ev)
    else:
        # None left at 5% errors.
        err_out = Outcome.partial(ERROR_RATE, 1.0 - rate / 0.05, f"error rate {rate:.2%} "
                                  f"({stats.errors} of {stats.scheduled}) above {max_error_rate:.2%}", **ev)
    return [p99_out, err_out]


def _interval_text(stats: LatencyStats, slo_ms: float) -> str:
    """``"; 95% interval a-b ms"`` for the p99 message, saying when the SLO lies inside it."""
    ci = stats.p99_interval_ms
    if ci is None:
        return ""
    text = f"; {P99_INTERVAL_CONFIDENCE:.0%} interval of p99 {ci[0]:.1f}-{ci[1]:.1f} ms"
    if stats.slo_within_interval(slo_ms):
        text += ", which holds the SLO: a regrade may land on the other side"
    return text


SPEC = CheckSpec(section="latency", title="Latency under load", items=ITEMS, run=run, evidence=LatencyEvidence,
                 timeout_s=lambda c: c.timeouts.latency, provides=("latency",))


def _mostly_failed(charged: dict[str, int], stats: LatencyStats) -> str:
    """Why most requests failed, from the error kinds charged to the service: timeouts are an
    overloaded service, refused connections one that is not serving, anything else is named as it came."""
    failed = sum(charged.values())
    timeouts = charged.get(ERR_TIMEOUT, 0)
    refused = sum(n for kind, n in charged.items() if kind.startswith("connect:"))
    head = f"{failed} of {stats.scheduled} requests failed ({_top_error(stats)})"
    if timeouts > failed / 2:
        rate = stats.planned_rate_rps or stats.scheduled_rate_rps
        at = f" at {rate:g} req/s" if rate else ""
        return f"{head}: {timeouts} timed out, so the service is overloaded{at}"
    if refused > failed / 2:
        return f"{head}: {refused} could not connect, so the service is not serving"
    return head


def _top_error(stats: LatencyStats) -> str:
    kinds = sorted(stats.error_kinds.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k}: {n}" for k, n in kinds[:3]) or "no detail"


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 3)
