"""Interview follow-up questions drawn from where the candidate lost points.

``followup_questions(report)`` asks about the items with the most points lost first, and quotes
the evidence when the check recorded it. Each rubric item has its own question; the evidence keys
it reads are the attributes of the section's evidence model (``grader/evidence.py``); without
them the question falls back to the item's message. Items the
grader could not judge (``inconclusive``, ``error``: the grader's problem, not the candidate's)
are not asked about.
"""

from __future__ import annotations

import statistics
from typing import Any, Callable

from grader.checks import correctness, deployment, drift, latency, observability, registry, robustness, rollback
from grader.checks.spec import ItemSpec
from grader.evidence import (BadInputCase, CorrectnessEvidence, DeploymentEvidence, DriftEvidence, Evidence,
                             LatencyEvidence, ObservabilityEvidence, RequestEvidence, RobustnessEvidence,
                             RollbackEvidence)
from grader.reports._format import item_key, num, short
from grader.results import GradeReport, ItemResult, LatencySummary

STRETCH_QUESTIONS = [
    "Everything the grader checked passed. What three things would you add with eight more hours?",
    "Which part of your submission are you least confident in under real production traffic, "
    "and how would you find out before your users do?",
    "If a second model version had to run beside this one as a canary, what would you change "
    "in your deploy and rollback?",
]


class _Ev:
    """An item that lost points, its report, and its evidence read through the section's model."""

    def __init__(self, item: ItemResult, report: GradeReport, model: type[Evidence]):
        self.item, self.report = item, report
        self.ev: Any = model.of(item)  # each question annotates the model it reads

    @property
    def msg(self) -> str:
        return short(self.item.message, 160)


def _f(value: Any) -> str | None:
    """A value as the questions quote it (None when absent or empty)."""
    if value is None or value == "" or value == [] or value == {}:
        return None
    if isinstance(value, (list, tuple)):
        return _names(value)
    return num(value) if isinstance(value, (int, float)) else short(str(value), 80)


def _names(values: Any, limit: int = 5) -> str:
    values = list(values)
    return ", ".join(short(str(v), 40) for v in values[:limit]) + (" …" if len(values) > limit else "")


def _opt(template: str, **values: str | None) -> str:
    """``template`` formatted when every value is present, else ``""``."""
    return "" if any(v is None for v in values.values()) else template.format(**values)


def _q_deploy(e: _Ev, version: str) -> str:
    ev: DeploymentEvidence = e.ev
    code = _f(ev.deploy.exit_code if ev.deploy else None)
    seen = _f(ev.fingerprint.version if ev.fingerprint else None)
    if code is not None and code != "0":
        timed_out = " and timed out" if ev.deploy and ev.deploy.timed_out else ""
        what = f"Your deploy command for {version} exited with code {code}{timed_out}"
    elif seen and seen != version:
        what = (f"Your deploy command for {version} finished, but the grader's probe predictions "
                f"said {seen} was being served")
    else:
        what = f"Deploying {version} did not work as expected ({e.msg})"
    if version == "v1":
        return (f"{what}. Walk us through what a new teammate needs to deploy your service from a "
                "clean machine, and how your deploy step reports a failure.")
    return (f"{what}. How does your deploy step know the new version is live, and what should it do "
            "when the new version never becomes ready?")


def _q_v1(e: _Ev) -> str:
    return _q_deploy(e, "v1")


def _q_v2(e: _Ev) -> str:
    return _q_deploy(e, "v2")


def _q_correct(e: _Ev) -> str:
    ev: CorrectnessEvidence = e.ev
    share = (ev.match_share or {}).get(ev.compared_to) if ev.compared_to else None
    if share is not None:
        what = (f"Only {num(100 * share)}% of " + (_opt("{r} ", r=_f(ev.rows)))
                + f"hidden rows matched the reference {ev.compared_to} predictions"
                + _opt(" (largest error {d})", d=_f(ev.max_abs_error)))
    elif ev.failing_request:
        what = ("A prediction request on valid input failed"
                + _opt(" ({s})", s=_f(ev.failing_request.error) or _f(ev.failing_request.status)))
    else:
        what = f"Your predictions did not match the reference model ({e.msg})"
    return (f"{what}. Where can preprocessing, null handling or feature order diverge between "
            "training and your serving code, and what test would have caught it?")


def _q_quiet(e: _Ev) -> str:
    ev: DriftEvidence = e.ev
    alarms = _f(ev.false_alarm_polls)
    if alarms and alarms != "0":
        what = (f"Your monitor raised a false alarm at {alarms}" + _opt(" of {p}", p=_f(ev.polls))
                + " polls" + _opt(" over {r} in-distribution rows", r=_f(ev.baseline_rows)))
        return (f"{what}. How did you choose the window size and the statistical test, did you "
                "correct for testing many features at once, and what false-alarm rate would "
                "on-call accept?")
    return (f"Your monitor's quiet on baseline traffic earned no credit ({e.msg}). How would you "
            "show that a monitor is both quiet on clean data and sensitive to real drift?")


def _q_detect(e: _Ev) -> str:
    ev: DriftEvidence = e.ev
    scenarios = ev.scenarios or []
    missed = [r.scenario for r in scenarios if not r.detected]
    stuck = [r.scenario for r in scenarios if r.quiet_before is False]
    if missed:
        what = f"Your monitor missed {len(missed)} of {len(scenarios)} drift scenarios ({_names(missed)})"
        if stuck:
            what += f"; before {_names(stuck)} its alarm never cleared on clean traffic"
    else:
        what = f"Your monitor did not fire on every drift scenario ({e.msg})"
    return (f"{what}. Which statistic would catch those kinds of change, and how would you test the "
            "monitor against synthetic drift before shipping it?")


def _q_delay(e: _Ev) -> str:
    ev: DriftEvidence = e.ev
    fired = {k: v for k, v in (ev.delay_rows or {}).items() if v is not None}
    if fired:
        slow = max(fired, key=fired.__getitem__)
        what = (f"Your alarm needed a median of {num(statistics.median(fired.values()))} drifted rows "
                f"to fire (slowest: {short(str(slow), 40)} at {num(fired[slow])} rows"
                + _opt("; full credit within {f}", f=_f(ev.fast_rows)) + ")")
    else:
        what = f"Your alarm was slow to fire after drift began ({e.msg})"
    return (f"{what}. What sets that delay in your design, and how would you trade it against "
            "false alarms?")


def _q_attr(e: _Ev) -> str:
    ev: DriftEvidence = e.ev
    per = ev.named or {}
    hits = [k for k, v in per.items() if set(v.named) & set(v.truth)]
    miss = next((k for k in per if k not in hits), None)
    if per and miss is not None:
        said = _names(per[miss].named) or "no feature"
        what = (f"Your alarms named the drifted feature in {len(hits)} of {len(per)} scenarios "
                f"(for {short(str(miss), 40)} the alarm named {said}; the drifted feature was "
                f"{_names(per[miss].truth) or 'unknown'})")
    else:
        what = f"Your alarms did not name the drifted feature ({e.msg})"
    return (f"{what}. How would an on-call engineer get from your alert to the feature and its "
            "upstream cause?")


def _q_p99(e: _Ev) -> str:
    ev: LatencyEvidence = e.ev
    lat = e.report.latency or LatencySummary()
    p99 = _f(ev.p99_ms) or _f(lat.p99_ms)
    slo = _f(ev.slo_ms) or _f(lat.slo_ms)
    rate = _f(lat.rate_rps) or _f(ev.achieved_rate_rps)
    what = (_opt("At {r} req/s open-loop", r=rate) or "Under open-loop load") + \
        (f" your p99 was {p99} ms" + _opt(" against a {s} ms SLO", s=slo) if p99 else
         f" your latency missed the SLO ({e.msg})")
    return (f"{what}. Where does the time go in one request, and what would you change first "
            "(workers, batching, model format, serialization)?")


def _q_errors(e: _Ev) -> str:
    ev: LatencyEvidence = e.ev
    errors, total = _f(ev.errors), _f(ev.scheduled)
    if errors and total:
        what = f"{errors} of {total} requests failed under load"
    elif ev.error_rate is not None:
        what = f"{num(100 * ev.error_rate)}% of requests failed under load"
    else:
        what = f"Requests failed under load ({e.msg})"
    kinds = ev.error_kinds or {}
    if kinds:
        top = max(kinds, key=kinds.__getitem__)
        what += f" (most often: {short(str(top), 60)})"
    return f"{what}. What fails first when your server is saturated, and how should it shed load?"


def _q_restore(e: _Ev) -> str:
    ev: RollbackEvidence = e.ev
    served = _f(ev.fingerprint_after.version if ev.fingerprint_after else None)
    code = _f(ev.command.exit_code if ev.command else None)
    if served and served != "v1":
        what = ("After your rollback command" + _opt(" (exit code {c})", c=code)
                + f" the grader's probe predictions said {served} was still being served, not v1")
    elif code and code != "0":
        what = f"v1 came back, but your rollback command exited with code {code}"
    else:
        what = f"Your rollback command did not cleanly bring v1 back ({e.msg})"
    return (f"{what}. How does your rollback find the last good version, and how do you confirm "
            "the switch happened?")


def _q_dropped(e: _Ev) -> str:
    ev: RollbackEvidence = e.ev
    failed = _f(ev.failed_requests)
    example = next(iter(ev.failed_examples or []), None)
    why = example and (example.error or (f"HTTP {example.status}" if example.status else None))
    what = (f"Your rollback dropped {failed} request(s)" + _opt(" of {t}", t=_f(ev.requests))
            + " during the switch") if failed else f"Requests failed during your rollback ({e.msg})"
    what += _opt(" (e.g. {w})", w=short(str(why), 80) if why else None)
    return (f"{what}. Walk us through how traffic moves from v2 to v1 in your setup, and how you "
            "would make it zero-downtime.")


def _q_budget(e: _Ev) -> str:
    ev: RollbackEvidence = e.ev
    took = _f(ev.switch_s)
    what = (f"Your rollback took {took}s to serve v1 again"
            + _opt(" against a {b}s budget", b=_f(ev.budget_s))) if took else \
        f"Your rollback did not finish within the time budget ({e.msg})"
    return f"{what}. What dominates that time, and what would you pre-stage to make it faster?"


def _q_idem(e: _Ev) -> str:
    ev: RollbackEvidence = e.ev
    code = _f(ev.command.exit_code if ev.command else None)
    served = _f(ev.fingerprint.version if ev.fingerprint else None)
    if served and served != "v1":
        what = f"Running your rollback a second time left {served} being served instead of v1"
    elif code and code != "0":
        what = f"Running your rollback a second time exited with code {code}"
    else:
        what = f"Running your rollback a second time was not shown to be harmless ({e.msg})"
    return (f"{what}. Why does that matter for a command someone runs under pressure at 3 a.m., "
            "and how would you make it safe to repeat?")


def _q_bad_input(e: _Ev) -> str:
    ev: RobustnessEvidence = e.ev
    cases = [r for r in ev.cases or [] if not r.rejected_with_4xx]
    if cases:
        def got(r: BadInputCase) -> str:
            return str(r.status) if r.status is not None else short(str(r.error), 40)

        shown = "; ".join(f"{short(r.case, 40)} -> {got(r)}" for r in cases[:4])
        what = f"Your service did not answer these bad inputs with a 4xx: {shown}"
    else:
        what = f"Malformed requests were not rejected with a 4xx ({e.msg})"
    return (f"{what}. Where should input validation live in your service, and what should a client "
            "see for each of those?")


def _q_healthy(e: _Ev) -> str:
    ev: RobustnessEvidence = e.ev
    errors = ev.server_errors_on_bad_input
    if ev.process_alive is False:
        what = "Your service process was no longer running after the grader's bad inputs"
    elif errors:
        return (f"Your service survived, but {len(errors)} bad inputs got a server error or a dropped "
                f"connection (e.g. {short(str(errors[0]), 60)}). Walk me through where that exception "
                "escaped, and how you would make every invalid request fail as the client's fault.")
    elif ev.ready_after or ev.valid_request_after:
        def answer(r: RequestEvidence | None) -> str:
            return (_f(r.status) or _f(r.error) if r else None) or "nothing"

        what = ("After the grader's bad inputs your service answered readiness with "
                f"{answer(ev.ready_after)} and a valid request with {answer(ev.valid_request_after)}")
    else:
        what = f"Your service did not stay healthy after bad input ({e.msg})"
    return f"{what}. What happened, and how would you keep one bad request from taking down a replica?"


def _q_metrics(e: _Ev) -> str:
    ev: ObservabilityEvidence = e.ev
    request, status = _f(ev.request), _f(ev.status) or _f(ev.error)
    what = "The grader could not read Prometheus metrics from your service" + (
        _opt(" ({r} returned {c})", r=request, c=status) or f" ({e.msg})")
    return f"{what}. Which three metrics would you alert on for this service, and why those?"


def _q_reqid(e: _Ev) -> str:
    ev: ObservabilityEvidence = e.ev
    missing, looked = ev.missing, ev.looked_for
    if missing and looked is not None:
        what = (f"{len(missing)} of {len(looked)} request ids the grader sent"
                + _opt(" in the {h} header", h=_f(ev.header))
                + f" were not in your logs (e.g. {short(str(missing[0]), 60)})")
    else:
        what = f"The grader could not find its request ids in your logs ({e.msg})"
    return (f"{what}. How would you trace one bad prediction from a customer complaint back to its "
            "input and the model version that served it?")


def _q_replay(e: _Ev) -> str:
    ev: ObservabilityEvidence = e.ev
    bad = next((r for r in ev.replayed or [] if not r.get("match")), None)
    if bad is not None:
        what = (f"Replaying request {short(str(bad.get('request_id')), 60)} from your logs failed: "
                f"{short(str(bad.get('result')), 160)}")
    else:
        what = f"The grader could not replay a request from your logs ({e.msg})"
    return (f"{what}. A prediction is disputed a week from now: how do you get back the exact input "
            "and reproduce the answer, and what would you keep out of the logs (PII) and how?")


#: One question per rubric item (tests check that every item the checks declare has one).
_ASK: dict[ItemSpec, Callable[[_Ev], str]] = {
    deployment.V1_SERVED: _q_v1, deployment.V2_ROLLOUT: _q_v2,
    correctness.PREDICTIONS_MATCH: _q_correct,
    drift.QUIET_ON_BASELINE: _q_quiet, drift.DETECTS_SCENARIOS: _q_detect,
    drift.DETECTION_DELAY: _q_delay, drift.ATTRIBUTION: _q_attr,
    latency.P99_UNDER_SLO: _q_p99, latency.ERROR_RATE: _q_errors,
    rollback.RESTORES_V1: _q_restore, rollback.NO_FAILED_REQUESTS: _q_dropped,
    rollback.WITHIN_BUDGET: _q_budget, rollback.IDEMPOTENT: _q_idem,
    robustness.REJECTS_BAD_INPUT: _q_bad_input, robustness.STAYS_HEALTHY: _q_healthy,
    observability.METRICS_ENDPOINT: _q_metrics, observability.REQUEST_ID_LOGGED: _q_reqid,
    observability.REQUEST_REPLAY: _q_replay,
}
_BY_KEY = {(it.section, it.id): (it, ask) for it, ask in _ASK.items()}


def question_for(item: ItemResult, report: GradeReport, also: int = 0) -> str:
    """The follow-up question for one item that lost points (``also``: how many other items
    were skipped for the same reason, for a skipped item)."""
    if item.status == "skipped":
        more = f" (and {also} other item{'s' if also > 1 else ''})" if also > 0 else ""
        return (f"The grader could not check \"{short(item.title, 80)}\"{more}: "
                f"{short(item.message, 160)}. How would you have covered it, and how would you "
                "have tested it yourself?")
    found = _BY_KEY.get((item.section, item_key(item)))
    if found is None:
        lost = num(item.max_points - item.points)
        return (f"You lost {lost} point(s) on \"{short(item.title, 80)}\" ({short(item.message, 160)}). "
                "Talk us through that part of your design.")
    spec, ask = found
    return ask(_Ev(item, report, registry.spec(spec.section).evidence))


def broken_question(report: GradeReport) -> str:
    """The question for a submission the grader could not run to the end."""
    error = short(report.error or "no error text was recorded", 200)
    return (f"Your submission failed before grading could finish: {error}. Walk us through how you "
            "tested it from a clean checkout, and what you would change so it fails loudly and early.")


def followup_questions(report: GradeReport, limit: int = 6) -> list[str]:
    """Up to ``limit`` questions, the item with the most points lost first (ties: rubric order).

    A broken submission gets a question about its failure first. When a completed run lost no
    points, returns stretch questions instead.
    """
    if limit <= 0:
        return []
    questions: list[str] = []
    if report.status == "broken_submission":
        questions.append(broken_question(report))
    lost = [(i.max_points - i.points, n, i) for n, i in
            enumerate(i for s in report.sections for i in s.items)
            if i.max_points - i.points > 1e-9 and i.status not in ("inconclusive", "error", "timeout")]
    if report.status != "completed":  # items skipped because the run broke: the error says why
        lost = [t for t in lost if t[2].status != "skipped"]
    lost.sort(key=lambda t: (-t[0], t[1]))
    skipped_alike: dict[str, int] = {}  # one question per distinct reason an item was skipped
    for _, _, item in lost:
        if item.status == "skipped":
            skipped_alike[item.message] = skipped_alike.get(item.message, 0) + 1
    seen: set[str] = set()
    for _, _, item in lost:
        if item.status == "skipped":
            if item.message in seen:
                continue
            seen.add(item.message)
        questions.append(question_for(item, report, also=skipped_alike.get(item.message, 1) - 1))
    if not questions and report.status == "completed":
        questions = list(STRETCH_QUESTIONS)
    return questions[:limit]
