"""Latency under open-loop load at the stated rate: p99 against the SLO, and the error rate.

Latency is measured from each request's intended send time (coordinated-omission safe). When
the load generator itself falls behind its schedule the verdict is inconclusive and costs the
candidate nothing.
"""

from __future__ import annotations

from grader.results import Outcome
from grader.session import Deadline, GradingSession
from harness.load.records import RequestSpec
from harness.load.runner import LoadPlan, run_open_loop
from harness.protocol import encode_request
from harness.traffic.baseline import baseline_records

#: Every Nth load request id is kept to look for in the candidate's logs later.
_REMEMBER_EVERY = 200


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

    plan = LoadPlan(rate_rps=cfg.rate_rps, duration_s=total_s, warmup_s=cfg.warmup_s, schedule=cfg.schedule,
                    seed=s.seed, timeout_s=cfg.timeout_s, max_send_lag_ms=cfg.max_send_lag_ms,
                    max_in_flight=max(64, int(cfg.rate_rps * cfg.timeout_s * 2)))
    s.progress(f"latency: open-loop {cfg.rate_rps:g} req/s for {cfg.duration_s:g}s (+{cfg.warmup_s:g}s warm-up)")
    s.event("phase", "latency", rate_rps=cfg.rate_rps)
    deadline.check()
    result = run_open_loop(s.client.base_url, plan, request_for)
    s.event("phase_end", "latency")
    stats = result.stats()
    summary = stats.to_dict()
    summary["slo_ms"] = th.latency_p99_ms
    s.facts["latency"] = summary
    return judge(stats, th.latency_p99_ms, th.latency_error_rate)


def judge(stats, slo_ms: float, max_error_rate: float) -> list[Outcome]:  # noqa: ANN001 - LatencyStats
    """Turn latency statistics into the two outcomes (pure)."""
    ev = {"p50_ms": _r(stats.p50_ms), "p95_ms": _r(stats.p95_ms), "p99_ms": _r(stats.p99_ms),
          "p999_ms": _r(stats.p999_ms), "max_ms": _r(stats.max_ms), "measured": stats.count,
          "scheduled": stats.scheduled, "errors": stats.errors, "error_rate": round(stats.error_rate, 5),
          "achieved_rate_rps": _r(stats.achieved_rate_rps), "send_lag_p99_ms": _r(stats.send_lag_p99_ms),
          "slo_ms": slo_ms, "error_kinds": dict(stats.error_kinds)}
    status, message = stats.verdict(slo_ms, max_error_rate)
    # Refused connections and HTTP errors are the service's doing even when the load generator lags;
    # only timeouts could be the harness's fault, so only they are excused when it is saturated.
    server_errors = sum(n for kind, n in stats.error_kinds.items()
                        if not kind.startswith("client:") and not (status == "inconclusive" and kind == "timeout"))
    ev["server_errors"] = server_errors
    if server_errors > 0.5 * max(1, stats.scheduled):
        msg = f"{server_errors} of {stats.scheduled} requests failed ({_top_error(stats)}): the service is not serving"
        return [Outcome.failed("p99_under_slo", msg, **ev), Outcome.failed("error_rate", msg, **ev)]
    if status == "inconclusive":
        # The harness could not keep its schedule (or measured too few requests): not the candidate's fault.
        rate = server_errors / max(1, stats.scheduled)
        err_out = (Outcome.inconclusive("error_rate", message, fraction=1.0, **ev) if rate <= max_error_rate else
                   Outcome.partial("error_rate", 1.0 - rate / 0.05, f"error rate {rate:.2%} "
                                   f"({server_errors} of {stats.scheduled}) above {max_error_rate:.2%}", **ev))
        return [Outcome.inconclusive("p99_under_slo", message, fraction=1.0, **ev), err_out]
    p99 = float(stats.p99_ms or 0.0)
    if p99 <= slo_ms:
        p99_out = Outcome.passed("p99_under_slo", f"p99 {p99:.1f} ms <= SLO {slo_ms:g} ms "
                                 f"({stats.count} requests after warm-up)", **ev)
    else:
        # Linear from full credit at the SLO to none at twice the SLO.
        frac = max(0.0, 1.0 - (p99 - slo_ms) / slo_ms)
        p99_out = Outcome.partial("p99_under_slo", frac, f"p99 {p99:.1f} ms above SLO {slo_ms:g} ms", **ev)
    rate = stats.error_rate
    if rate <= max_error_rate:
        err_out = Outcome.passed("error_rate", f"error rate {rate:.2%} ({stats.errors} of {stats.scheduled} "
                                 "scheduled requests)", **ev)
    else:
        # None left at 5% errors.
        err_out = Outcome.partial("error_rate", 1.0 - rate / 0.05, f"error rate {rate:.2%} "
                                  f"({stats.errors} of {stats.scheduled}) above {max_error_rate:.2%}", **ev)
    return [p99_out, err_out]


def _top_error(stats) -> str:  # noqa: ANN001 - LatencyStats
    kinds = sorted(stats.error_kinds.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k}: {n}" for k, n in kinds[:3]) or "no detail"


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 3)
