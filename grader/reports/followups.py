"""Interview follow-up questions drawn from where the candidate lost points.

``followup_questions(report)`` asks about the items with the most points lost first, and quotes
the evidence when the check recorded it. Each rubric item has its own question; the evidence keys
it reads are those the checks in ``grader/checks`` record (nested keys such as
``deploy.exit_code``); without them the question falls back to the item's message. Items the
grader could not judge (``inconclusive``, ``error``: the grader's problem, not the candidate's)
are not asked about.
"""

from __future__ import annotations

import statistics
from typing import Any, Callable

from grader.reports._format import item_key, latency_summary, num, short
from grader.results import GradeReport, ItemResult

STRETCH_QUESTIONS = [
    "Everything the grader checked passed. What three things would you add with eight more hours?",
    "Which part of your submission are you least confident in under real production traffic, "
    "and how would you find out before your users do?",
    "If a second model version had to run beside this one as a canary, what would you change "
    "in your deploy and rollback?",
]


class _Ev:
    """Read-only view of an item's evidence: dotted keys reach into nested dicts
    (``deploy.exit_code``), the first present key wins, numbers come back formatted."""

    def __init__(self, item: ItemResult, report: GradeReport):
        self.item, self.report, self.data = item, report, item.evidence

    def get(self, *keys: str) -> Any:
        for key in keys:
            value: Any = self.data
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value is not None and value != "" and value != [] and value != {}:
                return value
        return None

    def n(self, *keys: str) -> str | None:
        value = self.get(*keys)
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            return _names(value)
        return num(value) if isinstance(value, (int, float)) else short(str(value), 80)

    @property
    def msg(self) -> str:
        return short(self.item.message, 160)


def _names(values: Any, limit: int = 5) -> str:
    values = list(values)
    return ", ".join(short(str(v), 40) for v in values[:limit]) + (" …" if len(values) > limit else "")


def _opt(template: str, **values: str | None) -> str:
    """``template`` formatted when every value is present, else ``""``."""
    return "" if any(v is None for v in values.values()) else template.format(**values)


def _records(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _q_deploy(e: _Ev, version: str) -> str:
    code = e.n("deploy.exit_code", "exit_code")
    seen = e.n("fingerprint.version", "served_version")
    if code is not None and code != "0":
        timed_out = " and timed out" if e.get("deploy.timed_out") else ""
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
    versus = e.get("compared_to")
    share = e.get(f"match_share.{versus}") if isinstance(versus, str) else None
    if isinstance(share, (int, float)):
        what = (f"Only {num(100 * share)}% of " + (_opt("{r} ", r=e.n("rows")))
                + f"hidden rows matched the reference {versus} predictions"
                + _opt(" (largest error {d})", d=e.n("max_abs_error")))
    elif e.get("failing_request"):
        what = ("A prediction request on valid input failed"
                + _opt(" ({s})", s=e.n("failing_request.error", "failing_request.status")))
    else:
        what = f"Your predictions did not match the reference model ({e.msg})"
    return (f"{what}. Where can preprocessing, null handling or feature order diverge between "
            "training and your serving code, and what test would have caught it?")


def _q_quiet(e: _Ev) -> str:
    alarms = e.n("false_alarm_polls", "false_alarms")
    if alarms and alarms != "0":
        what = (f"Your monitor raised a false alarm at {alarms}" + _opt(" of {p}", p=e.n("polls"))
                + " polls" + _opt(" over {r} in-distribution rows", r=e.n("baseline_rows")))
        return (f"{what}. How did you choose the window size and the statistical test, did you "
                "correct for testing many features at once, and what false-alarm rate would "
                "on-call accept?")
    return (f"Your monitor's quiet on baseline traffic earned no credit ({e.msg}). How would you "
            "show that a monitor is both quiet on clean data and sensitive to real drift?")


def _q_detect(e: _Ev) -> str:
    scenarios = _records(e.get("scenarios"))
    missed = [str(r.get("scenario")) for r in scenarios if not r.get("detected")]
    stuck = [str(r.get("scenario")) for r in scenarios if r.get("quiet_before") is False]
    if missed:
        what = f"Your monitor missed {len(missed)} of {len(scenarios)} drift scenarios ({_names(missed)})"
        if stuck:
            what += f"; before {_names(stuck)} its alarm never cleared on clean traffic"
    else:
        what = f"Your monitor did not fire on every drift scenario ({e.msg})"
    return (f"{what}. Which statistic would catch those kinds of change, and how would you test the "
            "monitor against synthetic drift before shipping it?")


def _q_delay(e: _Ev) -> str:
    delays = e.get("delay_rows")
    fired = {k: v for k, v in delays.items() if isinstance(v, (int, float))} \
        if isinstance(delays, dict) else {}
    if fired:
        slow = max(fired, key=fired.__getitem__)
        what = (f"Your alarm needed a median of {num(statistics.median(fired.values()))} drifted rows "
                f"to fire (slowest: {short(str(slow), 40)} at {num(fired[slow])} rows"
                + _opt("; full credit within {f}", f=e.n("fast_rows")) + ")")
    else:
        what = f"Your alarm was slow to fire after drift began ({e.msg})"
    return (f"{what}. What sets that delay in your design, and how would you trade it against "
            "false alarms?")


def _q_attr(e: _Ev) -> str:
    named = e.get("named")
    per = {k: v for k, v in named.items() if isinstance(v, dict)} if isinstance(named, dict) else {}
    hits = [k for k, v in per.items()
            if set(map(str, v.get("named") or [])) & set(map(str, v.get("truth") or []))]
    miss = next((k for k in per if k not in hits), None)
    if per and miss is not None:
        said = _names(per[miss].get("named") or []) or "no feature"
        what = (f"Your alarms named the drifted feature in {len(hits)} of {len(per)} scenarios "
                f"(for {short(str(miss), 40)} the alarm named {said}; the drifted feature was "
                f"{_names(per[miss].get('truth') or []) or 'unknown'})")
    else:
        what = f"Your alarms did not name the drifted feature ({e.msg})"
    return (f"{what}. How would an on-call engineer get from your alert to the feature and its "
            "upstream cause?")


def _q_p99(e: _Ev) -> str:
    lat = latency_summary(e.report.latency)
    p99 = e.n("p99_ms") or (num(lat["p99_ms"]) if lat["p99_ms"] is not None else None)
    slo = e.n("slo_ms") or (num(lat["slo_ms"]) if lat["slo_ms"] is not None else None)
    rate = num(lat["rate_rps"]) if lat["rate_rps"] is not None else e.n("achieved_rate_rps")
    what = (_opt("At {r} req/s open-loop", r=rate) or "Under open-loop load") + \
        (f" your p99 was {p99} ms" + _opt(" against a {s} ms SLO", s=slo) if p99 else
         f" your latency missed the SLO ({e.msg})")
    return (f"{what}. Where does the time go in one request, and what would you change first "
            "(workers, batching, model format, serialization)?")


def _q_errors(e: _Ev) -> str:
    errors, total, rate = e.n("errors"), e.n("scheduled", "requests"), e.get("error_rate")
    if errors and total:
        what = f"{errors} of {total} requests failed under load"
    elif isinstance(rate, (int, float)):
        what = f"{num(100 * rate)}% of requests failed under load"
    else:
        what = f"Requests failed under load ({e.msg})"
    kinds = e.get("error_kinds")
    if isinstance(kinds, dict) and kinds:
        top = max(kinds, key=lambda k: kinds[k] if isinstance(kinds[k], (int, float)) else 0)
        what += f" (most often: {short(str(top), 60)})"
    return f"{what}. What fails first when your server is saturated, and how should it shed load?"


def _q_restore(e: _Ev) -> str:
    served = e.n("fingerprint_after.version", "served_version")
    code = e.n("command.exit_code", "exit_code")
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
    failed = e.n("failed_requests")
    example = next(iter(_records(e.get("failed_examples"))), {})
    why = example.get("error") or (f"HTTP {example['status']}" if example.get("status") else None)
    what = (f"Your rollback dropped {failed} request(s)" + _opt(" of {t}", t=e.n("requests"))
            + " during the switch") if failed else f"Requests failed during your rollback ({e.msg})"
    what += _opt(" (e.g. {w})", w=short(str(why), 80) if why else None)
    return (f"{what}. Walk us through how traffic moves from v2 to v1 in your setup, and how you "
            "would make it zero-downtime.")


def _q_budget(e: _Ev) -> str:
    took = e.n("switch_s")
    what = (f"Your rollback took {took}s to serve v1 again"
            + _opt(" against a {b}s budget", b=e.n("budget_s"))) if took else \
        f"Your rollback did not finish within the time budget ({e.msg})"
    return f"{what}. What dominates that time, and what would you pre-stage to make it faster?"


def _q_idem(e: _Ev) -> str:
    code = e.n("command.exit_code", "second_exit_code")
    served = e.n("fingerprint.version")
    if served and served != "v1":
        what = f"Running your rollback a second time left {served} being served instead of v1"
    elif code and code != "0":
        what = f"Running your rollback a second time exited with code {code}"
    else:
        what = f"Running your rollback a second time was not shown to be harmless ({e.msg})"
    return (f"{what}. Why does that matter for a command someone runs under pressure at 3 a.m., "
            "and how would you make it safe to repeat?")


def _q_bad_input(e: _Ev) -> str:
    cases = [r for r in _records(e.get("cases")) if not r.get("rejected_with_4xx")]
    if cases:
        def got(r: dict[str, Any]) -> str:
            return str(r["status"]) if r.get("status") is not None else short(str(r.get("error")), 40)

        shown = "; ".join(f"{short(str(r.get('case')), 40)} -> {got(r)}" for r in cases[:4])
        what = f"Your service did not answer these bad inputs with a 4xx: {shown}"
    else:
        what = f"Malformed requests were not rejected with a 4xx ({e.msg})"
    return (f"{what}. Where should input validation live in your service, and what should a client "
            "see for each of those?")


def _q_healthy(e: _Ev) -> str:
    errors = e.get("server_errors_on_bad_input")
    if e.get("process_alive") is False:
        what = "Your service process was no longer running after the grader's bad inputs"
    elif errors:
        return (f"Your service survived, but {len(errors)} bad inputs got a server error or a dropped "
                f"connection (e.g. {short(str(errors[0]), 60)}). Walk me through where that exception "
                "escaped, and how you would make every invalid request fail as the client's fault.")
    elif e.get("ready_after") or e.get("valid_request_after"):
        what = ("After the grader's bad inputs your service answered readiness with "
                f"{e.n('ready_after.status', 'ready_after.error') or 'nothing'} and a valid request with "
                f"{e.n('valid_request_after.status', 'valid_request_after.error') or 'nothing'}")
    else:
        what = f"Your service did not stay healthy after bad input ({e.msg})"
    return f"{what}. What happened, and how would you keep one bad request from taking down a replica?"


def _q_metrics(e: _Ev) -> str:
    request, status = e.n("request"), e.n("status", "error")
    what = "The grader could not read Prometheus metrics from your service" + (
        _opt(" ({r} returned {c})", r=request, c=status) or f" ({e.msg})")
    return f"{what}. Which three metrics would you alert on for this service, and why those?"


def _q_reqid(e: _Ev) -> str:
    missing, looked = e.get("missing"), e.get("looked_for")
    if isinstance(missing, list) and missing and isinstance(looked, list):
        what = (f"{len(missing)} of {len(looked)} request ids the grader sent"
                + _opt(" in the {h} header", h=e.n("header"))
                + f" were not in your logs (e.g. {short(str(missing[0]), 60)})")
    else:
        what = f"The grader could not find its request ids in your logs ({e.msg})"
    return (f"{what}. How would you trace one bad prediction from a customer complaint back to its "
            "input and the model version that served it?")


#: One question per rubric item, keyed by (section id, item id).
_ASK: dict[tuple[str, str], Callable[[_Ev], str]] = {
    ("deployment", "v1_served"): _q_v1, ("deployment", "v2_rollout"): _q_v2,
    ("correctness", "predictions_match"): _q_correct,
    ("drift", "quiet_on_baseline"): _q_quiet, ("drift", "detects_scenarios"): _q_detect,
    ("drift", "detection_delay"): _q_delay, ("drift", "attribution"): _q_attr,
    ("latency", "p99_under_slo"): _q_p99, ("latency", "error_rate"): _q_errors,
    ("rollback", "restores_v1"): _q_restore, ("rollback", "no_failed_requests"): _q_dropped,
    ("rollback", "within_budget"): _q_budget, ("rollback", "idempotent"): _q_idem,
    ("robustness", "rejects_bad_input"): _q_bad_input, ("robustness", "stays_healthy"): _q_healthy,
    ("observability", "metrics_endpoint"): _q_metrics,
    ("observability", "request_id_logged"): _q_reqid,
}


def question_for(item: ItemResult, report: GradeReport, also: int = 0) -> str:
    """The follow-up question for one item that lost points (``also``: how many other items
    were skipped for the same reason, for a skipped item)."""
    if item.status == "skipped":
        more = f" (and {also} other item{'s' if also > 1 else ''})" if also > 0 else ""
        return (f"The grader could not check \"{short(item.title, 80)}\"{more}: "
                f"{short(item.message, 160)}. How would you have covered it, and how would you "
                "have tested it yourself?")
    ask = _ASK.get((item.section, item_key(item)))
    if ask is None:
        lost = num(item.max_points - item.points)
        return (f"You lost {lost} point(s) on \"{short(item.title, 80)}\" ({short(item.message, 160)}). "
                "Talk us through that part of your design.")
    return ask(_Ev(item, report))


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
            if i.max_points - i.points > 1e-9 and i.status not in ("inconclusive", "error")]
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
