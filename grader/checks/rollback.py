"""Rollback under live traffic: the candidate's one command must bring v1 back, with no failed
requests, within the budget, and a second run must be harmless.

Traffic keeps flowing (open loop) during the whole phase; every request carries a probe row
whose v1 and v2 answers differ, so each response also says which version served it. Whether
v1 is back is decided from predictions, never from what the service or the command claims.
"""

from __future__ import annotations

from grader.checks.deployment import wait_for_version
from grader.checks.spec import CheckSpec, items
from grader.evidence import RollbackEvidence
from grader.results import Outcome
from grader.session import Deadline, GradingSession
from harness.fingerprint import VersionReading
from harness.load.records import RequestSpec
from harness.load.runner import BackgroundLoad, LoadPlan, LoadResult
from harness.protocol import ProtocolError, decode_predictions, encode_request
from harness.runtimes.base import CommandResult

ITEMS = items("rollback",
              restores_v1="Rollback command serves v1 again (by prediction fingerprint)",
              no_failed_requests="No failed requests during the switch",
              within_budget="Switch completes within the time budget",
              idempotent="Running it a second time is harmless")
RESTORES_V1, NO_FAILED_REQUESTS, WITHIN_BUDGET, IDEMPOTENT = ITEMS
#: At most this many per-request points go on the report's timeline.
_MAX_TIMELINE_POINTS = 400


def _classify(s: GradingSession, result: LoadResult) -> list[dict]:
    """Per request: when it was sent (s since the run's t0), whether it succeeded, which version answered."""
    rows = s.fingerprinter.rows
    out = []
    offset = result.mono_start - s.t0
    for rec in result.records:
        version = "unknown"
        if rec.ok and rec.body is not None:
            try:
                pred = decode_predictions(rec.body, s.contract.serving.protocol, 1)[0]
                version = s.fingerprinter.classify_one(rec.index % len(rows), pred)
            except ProtocolError:
                version = "unknown"
        out.append({"t": round(offset + rec.intended_s, 3), "ok": rec.ok, "version": version,
                    "error": rec.error, "status": rec.status})
    return out


def run(s: GradingSession, deadline: Deadline) -> list[Outcome]:
    """Run rollback twice under load and score the four rollback items."""
    if not s.facts.v2_served:
        return [Outcome.skipped(i, "v2 was never served, so there is nothing to roll back from "
                                "(see the deployment section)") for i in ITEMS]
    before = s.fingerprint("rollback-pre")
    if before.version != "v2":
        return [Outcome.skipped(i, f"expected v2 to be live before the rollback, found {before.version}",
                                fingerprint=before.evidence()) for i in ITEMS]
    cfg = s.config
    budget = cfg.thresholds.rollback_budget_s
    rows = s.fingerprinter.rows
    bodies = [encode_request([r], s.contract.serving.protocol) for r in rows]
    header = s.contract.serving.request_id_header
    prefix = f"tk-{s.run_id[:8]}-rollback"

    def request_for(i: int) -> RequestSpec:
        return RequestSpec("POST", s.contract.serving.predict_path, bodies[i % len(bodies)],
                           {"Content-Type": "application/json", header: f"{prefix}-{i}"})

    # Long enough for the worst case; stopped as soon as the phase is done.
    plan = LoadPlan(rate_rps=cfg.load.rollback_rate_rps, duration_s=max(60.0, deadline.remaining()),
                    warmup_s=0.0, schedule="fixed", timeout_s=cfg.load.timeout_s, keep_bodies=True,
                    max_in_flight=1024, max_send_lag_ms=cfg.load.max_send_lag_ms, connections=cfg.load.connections)
    command = s.commands.rollback
    load = BackgroundLoad(s.client.base_url, plan, request_for).start()
    steady = cfg.load.rollback_steady_requests
    # Steady state on each side is a number of responses seen, not a fixed sleep; a service that
    # answers slowly (or not at all) gets up to four times the time those take at the rate.
    steady_wait_s = 4 * steady / cfg.load.rollback_rate_rps + cfg.load.timeout_s

    def see_steady_state() -> None:
        load.wait_for_answers(steady, min(steady_wait_s, max(0.0, deadline.remaining() - 1)))

    try:
        see_steady_state()
        s.progress(f"rollback under {cfg.load.rollback_rate_rps:g} req/s: {command}")
        t_cmd = s.clock.monotonic()
        s.event("rollback", "rollback start")
        first = s.runtime.run_command("rollback", command, timeout_s=min(cfg.timeouts.rollback, deadline.remaining()))
        s.event("rollback", "rollback end", exit_code=first.exit_code)
        wait = max(0.0, budget - (s.clock.monotonic() - t_cmd))
        reading, _, seen = wait_for_version(s, "v1", wait, "rollback-wait", interval_s=0.25)
        switch_s = s.clock.monotonic() - t_cmd
        second = None
        after_second = None
        if reading.version == "v1":
            see_steady_state()
            s.event("rollback", "second rollback start")
            second = s.runtime.run_command("rollback (again)", command,
                                           timeout_s=min(cfg.timeouts.rollback, deadline.remaining()))
            s.event("rollback", "second rollback end", exit_code=second.exit_code)
            see_steady_state()
            after_second = s.fingerprint("rollback-post")
    finally:
        load.stop()
        result = load.wait(timeout=plan.stop_grace_s + 15)
    requests = _classify(s, result)
    step = max(1, len(requests) // _MAX_TIMELINE_POINTS)
    # Thin the successful requests for the plot, but keep every failure: those are the evidence.
    for n, r in enumerate(requests):
        if n % step and r["ok"]:
            continue
        s.event("rollback_request", "request", t=r["t"], ok=r["ok"], version=r["version"])
    return score(s, first, second, reading, after_second, switch_s, seen, requests, t_cmd - s.t0)


def score(s: GradingSession, first: CommandResult, second: CommandResult | None, reading: VersionReading,
          after_second: VersionReading | None, switch_s: float, seen: list[str], requests: list[dict],
          t_cmd: float) -> list[Outcome]:
    """Turn what was observed into the four rollback outcomes (pure)."""
    budget = s.config.thresholds.rollback_budget_s
    failed = [r for r in requests if not r["ok"]]
    by_version: dict[str, int] = {}
    for r in requests:
        by_version[r["version"]] = by_version.get(r["version"], 0) + 1
    last_v2 = max((r["t"] for r in requests if r["version"] == "v2"), default=None)
    ev = {"command": first.evidence(), "fingerprint_after": reading.evidence(), "versions_seen": seen,
          "requests": len(requests), "failed_requests": len(failed), "responses_by_version": by_version,
          "last_v2_response_s_after_command": None if last_v2 is None else round(last_v2 - t_cmd, 3)}
    if reading.version != "v1":
        claim = "exited 0" if first.ok else f"failed (exit {first.exit_code})"
        msg = (f"the rollback command {claim}, but v1 was not served within {budget:g}s: the live model is "
               f"{reading.version} (decided from predictions, whatever the service reports)")
        dependent = "v1 was never restored, so this cannot be credited"
        return [Outcome.failed(RESTORES_V1, msg, **ev)] + [Outcome.failed(i, dependent) for i in ITEMS[1:]]

    restores = (Outcome.passed(RESTORES_V1, f"v1 served {switch_s:.1f}s after the rollback command started",
                               **ev) if first.ok else
                Outcome.partial(RESTORES_V1, 0.5, f"v1 is served, but the command exited {first.exit_code}",
                                **ev))
    if not failed:
        no_fail = Outcome.passed(NO_FAILED_REQUESTS, f"0 of {len(requests)} requests failed during the "
                                 "rollback phase", requests=len(requests))
    else:
        share = len(failed) / max(1, len(requests))
        examples = failed[:5]
        no_fail = Outcome.partial(NO_FAILED_REQUESTS, 0.5 if share <= 0.005 else 0.0,
                                  f"{len(failed)} of {len(requests)} requests failed during the switch",
                                  failed_examples=examples, failed_requests=len(failed), requests=len(requests))
    within = (Outcome.passed(WITHIN_BUDGET, f"switched in {switch_s:.1f}s (budget {budget:g}s)",
                             switch_s=round(switch_s, 2), budget_s=budget)
              if switch_s <= budget else
              Outcome.failed(WITHIN_BUDGET, f"switch took {switch_s:.1f}s, over the {budget:g}s budget",
                             switch_s=round(switch_s, 2), budget_s=budget))
    if second is None or after_second is None:
        idem = Outcome.failed(IDEMPOTENT, "the second rollback was not run")
    elif after_second.version != "v1":
        idem = Outcome.failed(IDEMPOTENT, f"after running rollback a second time the live model is "
                              f"{after_second.version}, not v1", command=second.evidence(),
                              fingerprint=after_second.evidence())
    elif not second.ok:
        idem = Outcome.partial(IDEMPOTENT, 0.5, f"v1 still served, but the second run exited "
                               f"{second.exit_code}", command=second.evidence())
    else:
        idem = Outcome.passed(IDEMPOTENT, "a second rollback exited 0 and v1 is still served",
                              command=second.evidence(), fingerprint=after_second.evidence())
    return [restores, no_fail, within, idem]


SPEC = CheckSpec(
    section="rollback", title="One-command rollback", items=ITEMS, run=run, evidence=RollbackEvidence,
    # Two rollback commands, the wait for v1 and the steady-state periods around them.
    timeout_s=lambda c: 2 * c.timeouts.rollback + c.thresholds.rollback_budget_s + 15,
    needs=("v2_served",))
