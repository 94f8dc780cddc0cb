"""The pure scoring rules: fingerprints, drift, rollback and latency verdicts, rubric application."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from grader.checks import drift, latency, rollback
from grader.config import load_config
from grader.results import Outcome
from grader.scoring import Missing, score_sections, total
from harness.fingerprint import Fingerprinter
from harness.load.records import RequestRecord
from harness.load.stats import MIN_SAMPLES_FOR_P99, LatencyStats
from harness.observers.base import DriftReading
from harness.runtimes.base import CommandResult
from harness.traffic.scenarios import make_scenarios

CFG = load_config()
S = SimpleNamespace(config=CFG)


# ---------------------------------------------------------------- fingerprint

def _fp() -> Fingerprinter:
    rows = [{"i": i} for i in range(10)]
    return Fingerprinter(rows, {"v1": np.linspace(0.1, 0.5, 10), "v2": np.linspace(0.2, 0.9, 10)}, atol=1e-4)


def test_fingerprint_by_reference() -> None:
    fp = _fp()
    assert fp.classify(list(np.linspace(0.1, 0.5, 10))).version == "v1"
    assert fp.classify(list(np.linspace(0.2, 0.9, 10) + 5e-5)).version == "v2"
    assert fp.classify([0.33] * 10).version == "unknown"
    assert fp.classify([0.1]).version == "error"  # wrong count


def test_fingerprint_falls_back_to_learned_signatures() -> None:
    fp = _fp()
    garbage_v1, garbage_v2 = [0.01 * i for i in range(10)], [0.02 * i + 0.5 for i in range(10)]
    assert fp.classify(garbage_v1).version == "unknown"
    fp.learn("v1", garbage_v1)
    fp.learn("v2", garbage_v2)
    reading = fp.classify(garbage_v1)
    assert (reading.version, reading.basis) == ("v1", "signature")
    assert fp.classify_one(3, garbage_v2[3]) == "v2"


def test_probe_rows_follow_the_traffic_mix_even_when_informative_rows_do_not() -> None:
    from harness.traffic.baseline import baseline_records
    from harness.fingerprint import representative_subset

    pool = baseline_records(400, 7)
    credit = [i for i, r in enumerate(pool) if r["card_type"] == "credit"]
    other = [i for i, r in enumerate(pool) if r["card_type"] != "credit"]
    # Informative rows that start with 40 credit cards in a row: "the first 16" would be all credit.
    candidates = np.array(credit[:40] + other + credit[40:])
    picked = representative_subset(pool, candidates, 16, seed=3)
    assert len(set(picked)) == 16 and set(picked) <= set(candidates.tolist())
    share = len(credit) / len(pool)
    n_credit = sum(pool[i]["card_type"] == "credit" for i in picked)
    assert n_credit <= int(np.ceil(share * 16)), (n_credit, share)
    assert picked == representative_subset(pool, candidates, 16, seed=3)  # seeded: same rows each run
    assert representative_subset(pool, candidates[:10], 16, seed=3) == sorted(candidates[:10].tolist())


# ---------------------------------------------------------------- drift

def _reading(firing: bool, features: tuple[str, ...] = (), ok: bool = True) -> DriftReading:
    return DriftReading(firing=firing, features=frozenset(features), ok=ok, error=None, raw={}, t=0.0)


def _base(firing_polls: int, polls: int = 40) -> drift.PhaseLog:
    log = drift.PhaseLog("baseline", rows_sent=2000)
    log.polls = [_reading(i < firing_polls) for i in range(polls)]
    return log


SCENARIOS = make_scenarios(["mean_shift", "unit_change", "new_category"], 5)


def _outcomes(results: list[drift.ScenarioOutcome], base: drift.PhaseLog) -> dict[str, Outcome]:
    return {o.item: o for o in drift.score(S, base, results)}


def test_drift_perfect_monitor() -> None:
    res = [drift.ScenarioOutcome(sc, True, True, 150, list(sc.features)) for sc in SCENARIOS]
    out = _outcomes(res, _base(0))
    assert all(o.fraction == 1.0 for o in out.values()), out


def test_drift_silent_monitor_earns_nothing() -> None:
    res = [drift.ScenarioOutcome(sc, True) for sc in SCENARIOS]
    out = _outcomes(res, _base(0))
    assert all(o.fraction == 0.0 for o in out.values())
    assert "never fired" in out["quiet_on_baseline"].message


def test_drift_always_firing_monitor_earns_nothing() -> None:
    # Never quiet before a scenario: the alarm that was already on proves nothing.
    res = [drift.ScenarioOutcome(sc, quiet_before=False) for sc in SCENARIOS]
    out = _outcomes(res, _base(40))
    assert all(o.fraction == 0.0 for o in out.values()), {k: o.fraction for k, o in out.items()}
    # The message names the false alarms; "never fired" would describe the opposite monitor.
    assert "false alarm at 40 of 40" in out["quiet_on_baseline"].message
    assert "never fired" not in out["quiet_on_baseline"].message


def test_drift_rare_false_alarm_is_partial_and_delay_and_attribution_scale() -> None:
    sc = SCENARIOS
    res = [drift.ScenarioOutcome(sc[0], True, True, 400, list(sc[0].features)),
           drift.ScenarioOutcome(sc[1], True, True, 1000, ["amount", "hour_of_day", "channel", "card_type"]),
           drift.ScenarioOutcome(sc[2], True)]
    out = _outcomes(res, _base(1))
    assert out["quiet_on_baseline"].fraction == 0.5
    assert out["detects_scenarios"].fraction == pytest.approx(2 / 3)
    fast, mx = CFG.thresholds.detection_fast_rows, CFG.traffic.scenario_max_rows
    assert out["detection_delay"].fraction == pytest.approx((1 + (1 - (1000 - fast) / (mx - fast))) / 3)
    # Naming four features is not attribution (cap), naming the right one is.
    assert out["attribution"].fraction == pytest.approx(1 / 3)


# ---------------------------------------------------------------- rollback

def _cmd(code: int = 0) -> CommandResult:
    return CommandResult("rollback", "rb", code, "", "", 0.2)


def _fpr(version: str):
    from harness.fingerprint import VersionReading
    return VersionReading(version, "reference", {"v1": 1.0 if version == "v1" else 0.0})


def _requests(n: int, failed: int = 0) -> list[dict]:
    return [{"t": i * 0.05, "ok": i >= failed, "version": "v1", "error": None, "status": 200} for i in range(n)]


def test_rollback_clean() -> None:
    out = rollback.score(S, _cmd(), _cmd(), _fpr("v1"), _fpr("v1"), 1.5, ["v2", "v1"], _requests(200), 2.0)
    assert [o.fraction for o in out] == [1, 1, 1, 1]


def test_rollback_that_changes_nothing_loses_the_section() -> None:
    out = rollback.score(S, _cmd(), None, _fpr("v2"), None, 30.0, ["v2"], _requests(200), 2.0)
    assert [o.fraction for o in out] == [0, 0, 0, 0]
    assert "exited 0" in out[0].message and "v2" in out[0].message


def test_rollback_dropping_requests_and_toggling() -> None:
    out = rollback.score(S, _cmd(), _cmd(), _fpr("v1"), _fpr("v2"), 3.0, ["v2", "v1"], _requests(200, 20), 2.0)
    by = {o.item: o for o in out}
    assert by["restores_v1"].fraction == 1 and by["no_failed_requests"].fraction == 0
    assert "20 of 200" in by["no_failed_requests"].message
    assert by["idempotent"].fraction == 0  # second run flipped back to v2


# ---------------------------------------------------------------- latency

def _stats(latencies_ms: list[float], errors: int = 0) -> LatencyStats:
    recs = []
    for i, ms in enumerate(latencies_ms):
        t = i * 0.02
        recs.append(RequestRecord(i, t, t, t + ms / 1000, 500 if i < errors else 200,
                                  "http 500" if i < errors else None))
    return LatencyStats.from_records(recs)


def test_latency_pass_fail_and_inconclusive() -> None:
    ok = {o.item: o for o in latency.judge(_stats([5.0] * 1000), 100, 0.001)}
    assert ok["p99_under_slo"].status == "pass" and ok["error_rate"].status == "pass"
    slow = {o.item: o for o in latency.judge(_stats([5.0] * 900 + [400.0] * 100), 100, 0.001)}
    assert slow["p99_under_slo"].fraction == 0.0 and "above SLO" in slow["p99_under_slo"].message
    few = {o.item: o for o in latency.judge(_stats([5.0] * 100), 100, 0.001)}
    assert few["p99_under_slo"].status == "inconclusive" and few["p99_under_slo"].fraction == 1.0
    erring = {o.item: o for o in latency.judge(_stats([5.0] * 1000, errors=30), 100, 0.001)}
    assert 0 < erring["error_rate"].fraction < 1


# ---------------------------------------------------------------- rubric

def test_missing_outcomes_score_zero_with_reason() -> None:
    outcomes = {"correctness": [Outcome.passed("predictions_match", "ok")]}
    sections = score_sections(CFG, outcomes, {"drift": Missing("timeout", "phase timed out: too slow"),
                                              "rollback": Missing("error", "the word timed out is not a status")})
    score, mx = total(sections)
    assert (score, mx) == (15, 100)
    d = next(s for s in sections if s.id == "drift")
    assert all(i.points == 0 and i.status == "timeout" and "timed out" in i.message for i in d.items)
    # The status is the one the lifecycle set, whatever the message says.
    assert {i.status for i in next(s for s in sections if s.id == "rollback").items} == {"error"}
    # A section nobody explained is "not checked", skipped.
    assert {(i.status, i.message) for i in next(s for s in sections if s.id == "latency").items} == {
        ("skipped", "not checked")}


def test_dead_service_fails_latency_even_when_the_harness_lags() -> None:
    recs = [RequestRecord(i, i * 0.02, i * 0.02 + 0.3, i * 0.02 + 0.301, None, "connect: refused")
            for i in range(1000)]
    stats = LatencyStats.from_records(recs)
    assert stats.saturated  # 300 ms of send lag
    out = {o.item: o for o in latency.judge(stats, 100, 0.001)}
    assert out["p99_under_slo"].fraction == 0 and out["error_rate"].fraction == 0
    assert "not serving" in out["error_rate"].message and "overloaded" not in out["error_rate"].message


def test_mostly_timed_out_requests_read_as_an_overloaded_service() -> None:
    # 577 of 987 timing out is a service that cannot keep up, not one that is down.
    recs = [RequestRecord(i, i * 0.02, i * 0.02, i * 0.02 + (5.0 if i < 577 else 0.01), None if i < 577 else 200,
                          "timeout" if i < 577 else None) for i in range(987)]
    out = {o.item: o for o in latency.judge(LatencyStats.from_records(recs, planned_rate_rps=50), 100, 0.001)}
    message = out["error_rate"].message
    assert out["error_rate"].fraction == 0 and out["p99_under_slo"].fraction == 0
    assert message.startswith("577 of 987 requests failed (timeout: 577)") and "overloaded at 50 req/s" in message
    assert "not serving" not in message


def _lagging(service_ms: float, lag_ms: float, n: int = 1000) -> LatencyStats:
    recs = [RequestRecord(i, i * 0.02, i * 0.02 + lag_ms / 1000, i * 0.02 + (lag_ms + service_ms) / 1000, 200, None)
            for i in range(n)]
    return LatencyStats.from_records(recs)


def test_saturated_run_still_judges_what_it_can() -> None:
    fast = _lagging(service_ms=5, lag_ms=40)  # lagging client, fast service: upper bound within SLO
    assert fast.saturated
    assert latency.judge(fast, 100, 0.001, 5.0)[0].status == "pass"
    slow = _lagging(service_ms=250, lag_ms=40)  # slow even from the actual send time
    out = latency.judge(slow, 100, 0.001, 250.0)[0]
    assert out.fraction == 0.0 and "actual send" in out.message
    unsure = _lagging(service_ms=80, lag_ms=60)  # 140 ms upper bound, 80 ms lower bound: cannot tell
    assert latency.judge(unsure, 100, 0.001, 80.0)[0].status == "inconclusive"


def test_a_verdict_that_flips_on_the_generators_own_lag_is_repeated_then_inconclusive() -> None:
    # Not saturated (send lag p99 8 ms, under the 10 ms threshold), yet it decides the verdict: the
    # slowest 2% take 95 ms to serve and were sent 8 ms late, so p99 from the intended time is
    # 103 ms, over a 100 ms SLO, and from the actual send time 95 ms, within it.
    recs = [RequestRecord(i, i * 0.02, i * 0.02 + (0.008 if i % 50 == 0 else 0.0),
                          i * 0.02 + (0.103 if i % 50 == 0 else 0.03), 200, None) for i in range(1000)]
    stats = LatencyStats.from_records(recs)
    assert not stats.saturated and stats.p99_ms > 100
    reason = latency.machine_noise(stats, 100, 95.0)
    assert reason is not None and "send lag" in reason
    assert latency.judge(stats, 100, 0.001, 95.0)[0].status == "partial"  # one window alone is judged
    out = latency.judge(stats, 100, 0.001, 95.0, noisy=True)[0]
    assert out.status == "inconclusive" and out.fraction == 1.0 and "grader's machine" in out.message
    # A service slow from the actual send time too is judged, noise or not.
    assert latency.machine_noise(stats, 100, 120.0) is None
    assert latency.judge(stats, 100, 0.001, 120.0, noisy=True)[0].status == "partial"


def test_the_p99_message_gives_its_interval_and_says_when_the_slo_is_inside_it() -> None:
    rng = np.random.default_rng(3)
    lat = list(rng.lognormal(3.0, 0.5, 1000))  # p99 near 64 ms
    stats = _stats(lat)
    ci = stats.p99_interval_ms
    assert ci is not None and ci[0] < stats.p99_ms < ci[1]
    clear = latency.judge(stats, 200, 0.001)[0]
    assert "95% interval of p99" in clear.message and "regrade" not in clear.message
    close = latency.judge(stats, (stats.p99_ms + ci[1]) / 2, 0.001)[0]
    assert close.status == "pass" and "a regrade may land on the other side" in close.message
    assert close.evidence["p99_interval_ms"]["low"] == pytest.approx(ci[0], abs=1e-3)


class _FakeSession:
    """Answers fingerprints from a script: (version, predictions) per probe."""

    def __init__(self, script: list[tuple[str, list[float]]]) -> None:
        from grader.session import SYSTEM_CLOCK

        self.script, self.i, self._last = script, 0, None
        self.clock = SYSTEM_CLOCK

    def fingerprint(self, _phase: str):
        from harness.fingerprint import VersionReading
        version, preds = self.script[min(self.i, len(self.script) - 1)]
        self.i += 1
        self._last = preds
        return VersionReading(version)

    def last_probe_predictions(self):
        return self._last


def test_wait_for_version_stops_once_unmatched_predictions_settle() -> None:
    from grader.checks import deployment

    garbage = [0.5, 0.25]
    s = _FakeSession([("unknown", [0.1, 0.2])] + [("unknown", garbage)] * 50)
    reading, took, _ = deployment.wait_for_version(s, "v1", timeout_s=30, phase="t", interval_s=0.2)
    assert reading.version == "unknown" and took < 5  # not the full 30 s timeout
    s2 = _FakeSession([("v2", [0.9])] * 3 + [("v1", [0.1])])
    reading, _, seen = deployment.wait_for_version(s2, "v1", timeout_s=30, phase="t", interval_s=0.05)
    assert reading.version == "v1" and seen == ["v2", "v1"]


def _records(latencies_ms: list[float], errors: int = 0, lag_ms: float = 0.1) -> list[RequestRecord]:
    out = []
    for i, ms in enumerate(latencies_ms):
        t = i * 0.02
        out.append(RequestRecord(i, t, t + lag_ms / 1000, t + ms / 1000, 500 if i < errors else 200,
                                 "http 500" if i < errors else None))
    return out


def test_the_latency_window_ends_early_only_on_a_settled_pass() -> None:
    settled = latency.settled_pass(slo_ms=100, warmup_s=0.0, max_send_lag_ms=10)
    assert settled(_records([5.0] * 500), 10.0)
    assert not settled(_records([5.0] * 360), 7.2)  # too few for any p99 claim (368)
    assert not settled(_records([5.0] * 500, errors=1), 10.0)  # the error rate is not settled
    assert not settled(_records([5.0] * 497 + [150.0] * 3), 10.0)  # the interval reaches past the SLO
    assert not settled(_records([5.0] * 500, lag_ms=30.0), 10.0)  # the generator lagged: measure it all
    late = _records([5.0] * 510)
    assert latency.settled_pass(100, 3.0, 10)(late, 10.2) is False  # 360 after the warm-up: too few


def test_the_latency_plan_settles_from_min_duration() -> None:
    cfg = load_config().load
    plan = latency.plan_for(cfg, seed=0)
    assert plan.settle_from_s == cfg.warmup_s + cfg.measured_floor_s() < plan.duration_s
    # The floor is the longer of min_duration_s and the time the rate needs for a p99 claim's requests.
    slow = cfg.model_copy(update={"rate_rps": 50.0, "min_duration_s": 5.0})
    assert slow.measured_floor_s() == pytest.approx(MIN_SAMPLES_FOR_P99 / 50.0)
    fast = cfg.model_copy(update={"rate_rps": 400.0, "min_duration_s": 5.0})
    assert fast.measured_floor_s() == 5.0
    assert latency.plan_for(fast, seed=0).settle_from_s == fast.warmup_s + 5.0
    whole = latency.plan_for(cfg.model_copy(update={"min_duration_s": cfg.duration_s}), seed=0)
    assert whole.settle_from_s is None
