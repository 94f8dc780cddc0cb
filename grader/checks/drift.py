"""The drift monitor: quiet on baseline traffic, fires on each drift scenario, soon, naming the feature.

The grader replays rows in chunks and reads the candidate's drift signal after every chunk
(``traffic.poll_every_rows``). Between scenarios it replays clean rows until the alarm clears, so
each scenario starts from a quiet monitor: an alarm that was already on proves nothing, which is
how a monitor that always fires loses these points.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from grader.checks.spec import CheckSpec, items
from grader.evidence import DriftEvidence
from grader.results import Outcome
from grader.session import Deadline, GradingSession
from harness.observers.base import DriftReading
from harness.traffic.baseline import baseline_records
from harness.traffic.replay import Replayer
from harness.traffic.shift_stats import measure_shift
from harness.traffic.scenarios import Scenario, make_scenarios, scenario_records

#: Quiet polls in a row that end a washout.
QUIET_POLLS = 2

ITEMS = items("drift",
              quiet_on_baseline="No false alarm on in-distribution traffic",
              detects_scenarios="Alarm fires on each drift scenario",
              detection_delay="Alarm fires soon after drift starts",
              attribution="Alarm names the drifted feature")
QUIET_ON_BASELINE, DETECTS_SCENARIOS, DETECTION_DELAY, ATTRIBUTION = ITEMS


@dataclass
class PhaseLog:
    """Polls of one traffic phase."""

    name: str
    polls: list[DriftReading] = field(default_factory=list)
    rows_sent: int = 0
    errors: int = 0
    warmup: dict[str, object] = field(default_factory=dict)  # the unscored warm-up before this phase

    @property
    def firing_polls(self) -> int:
        return sum(1 for p in self.polls if p.ok and p.firing)

    @property
    def readable_polls(self) -> int:
        return sum(1 for p in self.polls if p.ok)


@dataclass
class ScenarioOutcome:
    scenario: Scenario
    quiet_before: bool
    detected: bool = False
    delay_rows: int | None = None
    named: list[str] = field(default_factory=list)
    washout_rows: int = 0
    shift: dict[str, dict[str, object]] = field(default_factory=dict)  # measured on the rows sent

    def attribution_hit(self, max_features: int) -> bool:
        return (self.detected and bool(set(self.named) & set(self.scenario.features))
                and len(self.named) <= max(max_features, len(self.scenario.features)))

    def evidence(self) -> dict[str, object]:
        return {"scenario": self.scenario.name, "kind": self.scenario.kind,
                "ground_truth": list(self.scenario.features), "quiet_before": self.quiet_before,
                "detected": self.detected, "delay_rows": self.delay_rows, "named": self.named,
                "washout_rows": self.washout_rows, "shift": self.shift}


class DriftDriver:
    """Replays rows and polls the drift signal, keeping a timeline for the report."""

    def __init__(self, s: GradingSession, deadline: Deadline) -> None:
        self.s = s
        self.deadline = deadline
        self.cfg = s.config.traffic
        self.rows_total = 0
        self.replayer = Replayer(s.client.base_url, s.contract.serving.predict_path, s.contract.serving.protocol,
                                 s.contract.serving.request_id_header, f"tk-{s.run_id[:8]}-drift",
                                 self.cfg.concurrency, s.config.load.timeout_s)

    def close(self) -> None:
        self.replayer.close()

    def poll(self, log: PhaseLog) -> DriftReading:
        assert self.s.observer is not None
        reading = self.s.observer.poll()
        log.polls.append(reading)
        self.s.event("drift_poll", log.name, firing=reading.ok and reading.firing,
                     features=sorted(reading.features), rows=self.rows_total, ok=reading.ok,
                     **({"error": reading.error} if reading.error else {}))
        return reading

    def send(self, rows: list[dict], log: PhaseLog) -> None:
        self.deadline.check()
        stats = self.replayer.send(rows, self.cfg.rows_per_request)
        log.rows_sent += len(rows)
        log.errors += stats.errors
        self.rows_total += len(rows)
        if stats.request_ids:
            self.s.remember_request_id(stats.request_ids[-1])

    def warmup(self, rows: int, seed: int) -> dict[str, object]:
        """Replay ``rows`` unscored clean rows, then read the signal once (kept as evidence).

        By now the service has answered the grader's fingerprint probes: the same few rows many
        times over. A window full of them is not in-distribution traffic, so it is flushed with
        clean rows before the baseline phase counts any alarm.
        """
        if rows <= 0:
            return {"rows": 0}
        self.s.progress(f"drift: warm-up, {rows} unscored in-distribution rows")
        log = PhaseLog("warmup")
        start_rows = self.rows_total
        self.s.event("phase", "warmup", start_rows=start_rows)
        self.send(baseline_records(rows, seed), log)  # no reads in between: nothing is scored here
        reading = self.poll(log)
        self.s.event("phase_end", "warmup", start_rows=start_rows, end_rows=self.rows_total)
        return {"rows": log.rows_sent, "firing_after": bool(reading.ok and reading.firing),
                "request_errors": log.errors}

    def settle(self, log: PhaseLog, until_firing: bool | None) -> DriftReading:
        """Keep polling for ``settle_s`` (the monitor may evaluate asynchronously).

        Stops early when the reading becomes ``until_firing`` (None: poll for the whole period).
        """
        end = self.s.clock.monotonic() + self.cfg.settle_s
        reading = self.poll(log)
        while self.s.clock.monotonic() < end and (until_firing is None or bool(reading.ok and reading.firing)
                                          != until_firing):
            self.s.clock.sleep(0.25)
            reading = self.poll(log)
        return reading

    def phase(self, name: str, rows: list[dict], stop_when_firing: bool | None) -> tuple[PhaseLog, DriftReading]:
        """Send ``rows`` in chunks, polling after each; stop early once firing == stop_when_firing.

        A washout (stop when quiet) needs ``QUIET_POLLS`` quiet polls in a row, so the next scenario
        does not start on a monitor that flickered quiet while its window still held drifted rows.
        """
        log = PhaseLog(name)
        start_rows = self.rows_total
        self.s.event("phase", name, start_rows=start_rows)
        step = self.cfg.poll_every_rows
        need = QUIET_POLLS if stop_when_firing is False else 1
        streak = 0
        reading: DriftReading | None = None
        for i in range(0, len(rows), step):
            self.send(rows[i:i + step], log)
            reading = self.poll(log)
            hit = stop_when_firing is not None and reading.ok and reading.firing == stop_when_firing
            streak = streak + 1 if hit else 0
            if streak >= need:
                break
        else:
            reading = self.settle(log, stop_when_firing)
        self.s.event("phase_end", name, start_rows=start_rows, end_rows=self.rows_total)
        assert reading is not None
        return log, reading


def run(s: GradingSession, deadline: Deadline) -> list[Outcome]:
    """Baseline phase, then each scenario with a washout before it; score the four drift items."""
    if s.observer is None:
        return _unreadable("no drift observer could be set up for this contract", {})
    cfg = s.config.traffic
    driver = DriftDriver(s, deadline)
    try:
        warm = driver.warmup(cfg.warmup_rows, s.seed + 99)
        s.progress(f"drift: baseline, {cfg.baseline_rows} in-distribution rows")
        base_log, last = driver.phase("baseline", baseline_records(cfg.baseline_rows, s.seed + 101), None)
        base_log.warmup = warm
        if base_log.readable_polls == 0:
            return _unreadable("the drift signal could not be read during the baseline phase",
                               {"example_error": base_log.polls[-1].error if base_log.polls else None})
        scenarios = make_scenarios(cfg.scenarios, s.seed + 202)
        results: list[ScenarioOutcome] = []
        firing_now = bool(last.ok and last.firing)
        for n, sc in enumerate(scenarios):
            washout_rows = 0
            if firing_now:
                s.progress(f"drift: washout before {sc.name}")
                wlog, last = driver.phase(f"washout:{sc.name}",
                                          baseline_records(cfg.washout_max_rows, s.seed + 303 + n), False)
                washout_rows = wlog.rows_sent
                firing_now = bool(last.ok and last.firing)
            outcome = ScenarioOutcome(sc, quiet_before=not firing_now, washout_rows=washout_rows)
            s.progress(f"drift: scenario {sc.name} ({', '.join(sc.features)})")
            rows = scenario_records(sc, cfg.scenario_max_rows, s.seed + 404 + n)
            slog, last = driver.phase(f"scenario:{sc.name}", rows, True)
            outcome.shift = measure_shift(sc, rows[:slog.rows_sent])
            if last.ok and last.firing:
                outcome.detected = outcome.quiet_before
                outcome.delay_rows = slog.rows_sent
                outcome.named = sorted(last.features)
            firing_now = bool(last.ok and last.firing)
            results.append(outcome)
        return score(s, base_log, results)
    finally:
        driver.close()


def _unreadable(message: str, evidence: dict) -> list[Outcome]:
    return [Outcome.failed(item, message, **evidence) for item in ITEMS]


def score(s: GradingSession, base: PhaseLog, results: list[ScenarioOutcome]) -> list[Outcome]:
    """Turn the phase logs into the four drift outcomes (pure: no I/O)."""
    th = s.config.thresholds
    max_rows = s.config.traffic.scenario_max_rows
    n = len(results)
    detected = [r for r in results if r.detected]
    per_scenario = [r.evidence() for r in results]
    base_ev = {"baseline_rows": base.rows_sent, "polls": len(base.polls),
               "false_alarm_polls": base.firing_polls, "unreadable_polls": len(base.polls) - base.readable_polls,
               "request_errors": base.errors, "warmup": base.warmup}

    false_alarm_share = base.firing_polls / max(1, base.readable_polls)
    if not detected and base.firing_polls == 0:
        quiet = Outcome.failed(QUIET_ON_BASELINE, "the monitor never fired on any drift scenario, so its "
                               "silence on baseline traffic earns no credit", **base_ev)
    elif not detected:
        # Name the false alarms: "never fired" would misdescribe a monitor that fires on clean traffic.
        quiet = Outcome.failed(QUIET_ON_BASELINE, f"false alarm at {base.firing_polls} of "
                               f"{base.readable_polls} polls on in-distribution traffic, and no drift "
                               "scenario was detected from a quiet start", **base_ev)
    elif base.firing_polls == 0:
        quiet = Outcome.passed(QUIET_ON_BASELINE, f"no alarm at any of {len(base.polls)} polls over "
                               f"{base.rows_sent} in-distribution rows", **base_ev)
    elif false_alarm_share <= 0.05:
        quiet = Outcome.partial(QUIET_ON_BASELINE, 0.5, f"false alarm at {base.firing_polls} of "
                                f"{base.readable_polls} polls on in-distribution traffic", **base_ev)
    else:
        quiet = Outcome.failed(QUIET_ON_BASELINE, f"false alarm at {base.firing_polls} of "
                               f"{base.readable_polls} polls ({false_alarm_share:.0%}) on in-distribution "
                               "traffic", **base_ev)

    missed = [r.scenario.name for r in results if not r.detected]
    not_quiet = [r.scenario.name for r in results if not r.quiet_before]
    msg = f"fired on {len(detected)} of {n} scenarios"
    if missed:
        msg += f"; missed: {', '.join(missed)}"
    if not_quiet:
        msg += f"; alarm never cleared before: {', '.join(not_quiet)}"
    detects = Outcome.partial(DETECTS_SCENARIOS, len(detected) / max(1, n), msg, scenarios=per_scenario)

    def delay_credit(r: ScenarioOutcome) -> float:
        if not r.detected or r.delay_rows is None:
            return 0.0
        if r.delay_rows <= th.detection_fast_rows:
            return 1.0
        return max(0.0, 1 - (r.delay_rows - th.detection_fast_rows) / max(1, max_rows - th.detection_fast_rows))

    delays = {r.scenario.name: r.delay_rows for r in results}
    said = ", ".join(f"{name} {rows if rows is not None else 'missed'}" for name, rows in delays.items())
    delay = Outcome.partial(DETECTION_DELAY, sum(delay_credit(r) for r in results) / max(1, n),
                            f"drifted rows until the alarm: {said} (full credit within {th.detection_fast_rows})",
                            delay_rows=delays, fast_rows=th.detection_fast_rows)
    hits = [r for r in results if r.attribution_hit(th.attribution_max_features)]
    attribution = Outcome.partial(ATTRIBUTION, len(hits) / max(1, n),
                                  f"named the drifted feature in {len(hits)} of {n} scenarios",
                                  named={r.scenario.name: {"named": r.named, "truth": list(r.scenario.features)}
                                         for r in results})
    return [quiet, detects, delay, attribution]


SPEC = CheckSpec(section="drift", title="Drift monitoring", items=ITEMS, run=run, evidence=DriftEvidence,
                 timeout_s=lambda c: c.timeouts.drift)
