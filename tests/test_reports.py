"""Report renderers: every format is written, parses, and says what the result tree says."""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from grader.reports import followups as fu
from grader.reports import (drift_timeline_svg, followup_questions, latency_spectrum_svg,
                            render_gradescope, render_html, render_json, render_junit,
                            render_markdown, report_json_schema, rollback_timeline_svg,
                            write_reports)
from grader.reports.json_report import SCHEMA_PATH, schema_text
from grader.reports.markdown import md_text
from grader.checks import registry
from grader.config import load_config
from grader.results import (CandidateInfo, GradeReport, ItemResult, LatencySummary, PhaseResult, SectionResult,
                            TimelineEvent)

ROOT = Path(__file__).resolve().parent.parent
RUBRIC = load_config().model_dump()["rubric"]  # titles filled in from the check specs
HOSTILE = "<script>alert('pwned')</script>"


def _command(cmd: str, code: int = 0, took: float = 12.5) -> dict[str, Any]:
    return {"command": cmd, "exit_code": code, "timed_out": False, "duration_s": took,
            "stdout_tail": f"ran {cmd}\n", "stderr_tail": ""}


def _fp(version: str) -> dict[str, Any]:
    return {"version": version, "basis": "reference", "match_share": {"v1": float(version == "v1"),
                                                                      "v2": float(version == "v2")}}


_SCENARIOS = ["mean_shift", "unit_change", "new_category", "missing_spike", "frozen_feature"]
_DETECTED = {"mean_shift": 300, "unit_change": None, "new_category": 650, "missing_spike": 900,
             "frozen_feature": None}
_NAMED = {"mean_shift": ["f3"], "unit_change": [], "new_category": ["f1", "f2", "f3", "f4"],
          "missing_spike": ["f5"], "frozen_feature": []}
_TRUTH = {"mean_shift": ["f3"], "unit_change": ["f2"], "new_category": ["f4"], "missing_spike": ["f5"],
          "frozen_feature": ["f6"]}
_CASES = [{"case": "malformed JSON", "status": 422, "rejected_with_4xx": True},
          {"case": "missing feature", "status": 500, "rejected_with_4xx": False,
           "response_excerpt": "Internal Server Error"},
          {"case": "oversized body (~12 MB)", "status": None, "rejected_with_4xx": False,
           "error": "server disconnected"},
          {"case": "extra feature", "status": 400, "rejected_with_4xx": True}]

# (status, fraction, message, evidence) per rubric item of the full synthetic report; the evidence
# has the shapes grader/checks records.
FULL_OUTCOMES: dict[str, tuple[str, float, str, dict[str, Any]]] = {
    "v1_served": ("pass", 1.0, "v1 served 3.4s after the deploy command", {
        "deploy": _command("make deploy VERSION=v1"), "fingerprint": _fp("v1"),
        "versions_seen": ["error", "v1"], "seconds_until_served": 3.4}),
    "v2_rollout": ("pass", 1.0, "v2 served 2.1s after the deploy command", {
        "deploy": _command("make deploy VERSION=v2"), "fingerprint": _fp("v2"),
        "versions_seen": ["v1", "v2"], "seconds_until_served": 2.1}),
    "predictions_match": ("pass", 1.0, "100.0% of 200 hidden rows match the reference v2", {
        "rows": 200, "atol": 1e-4, "match_share": {"v2": 1.0, "v1": 0.12}, "compared_to": "v2",
        "max_abs_error": 2e-7, "rows_with_nulls": 31}),
    "quiet_on_baseline": ("fail", 0.0, "false alarm at 7 of 40 polls | on baseline traffic", {
        "baseline_rows": 2000, "polls": 40, "false_alarm_polls": 7, "unreadable_polls": 0,
        "request_errors": 0,
        "example_error": "\x1b[31mALARM\x1b[0m drift on f1\x00\n" * 50 + HOSTILE}),
    "detects_scenarios": ("partial", 0.6, "fired on 3 of 5 scenarios; missed: unit_change, frozen_feature", {
        "scenarios": [{"scenario": n, "kind": n, "ground_truth": _TRUTH[n], "quiet_before": True,
                       "detected": _DETECTED[n] is not None, "delay_rows": _DETECTED[n],
                       "named": _NAMED[n], "washout_rows": 0,
                       "shift": {_TRUTH[n][0]: {"test": "K-S", "statistic": 0.44, "p_value": 1.6e-18,
                                                "reference_median": 40.0, "sent_median": 110.1,
                                                "rows": _DETECTED[n] or 1500, "drifted": True}}}
                      for n in _SCENARIOS]}),
    "detection_delay": ("partial", 2 / 3, "drifted rows until the alarm: mean_shift 300, unit_change missed, ...", {
        "delay_rows": _DETECTED, "fast_rows": 500}),
    "attribution": ("partial", 0.6, "named the drifted feature in 3 of 5 scenarios", {
        "named": {n: {"named": _NAMED[n], "truth": _TRUTH[n]} for n in _SCENARIOS}}),
    "p99_under_slo": ("fail", 0.0, "p99 184.2 ms above SLO 100 ms", {
        "p50_ms": 85.0, "p95_ms": 152.5, "p99_ms": 184.2, "max_ms": 230.0, "measured": 1000,
        "scheduled": 1000, "errors": 0, "error_rate": 0.0, "achieved_rate_rps": 49.8, "slo_ms": 100,
        "error_kinds": {}}),
    "error_rate": ("pass", 1.0, "error rate 0.00% (0 of 1000 scheduled requests)", {
        "errors": 0, "scheduled": 1000, "error_rate": 0.0}),
    "restores_v1": ("pass", 1.0, "v1 served 6.2s after the rollback command started", {
        "command": _command("make rollback", took=5.0), "fingerprint_after": _fp("v1"),
        "versions_seen": ["v2", "v1"], "requests": 600, "failed_requests": 12,
        "responses_by_version": {"v2": 200, "unknown": 12, "v1": 388}}),
    "no_failed_requests": ("partial", 0.5, "12 of 600 requests failed during the switch", {
        "failed_requests": 12, "requests": 600, "failed_examples": [
            {"t": 210.1, "ok": False, "version": "unknown", "error": "connect: Connection refused",
             "status": None}]}),
    "within_budget": ("pass", 1.0, "switched in 6.2s (budget 30s)", {"switch_s": 6.2, "budget_s": 30}),
    "idempotent": ("pass", 1.0, "a second rollback exited 0 and v1 is still served", {
        "command": _command("make rollback", took=1.0), "fingerprint": _fp("v1")}),
    "rejects_bad_input": ("partial", 0.5, "2 of 4 bad inputs got a 4xx", {"cases": _CASES}),
    "stays_healthy": ("pass", 1.0, "ready and answering valid requests after the bad inputs", {
        "ready_after": {"request": "GET /ready", "status": 200, "latency_ms": 1.2},
        "valid_request_after": {"request": "POST /predict", "status": 200, "latency_ms": 8.0},
        "process_alive": True}),
    "metrics_endpoint": ("pass", 1.0, "12 metric families, 80 samples", {
        "families": ["http_requests", "predict_latency_seconds"]}),
    "request_id_logged": ("skipped", 0.0, "no log source declared in the contract", {}),
    "request_replay": ("partial", 2 / 3, "2 of 3 requests replayed from their log records got the served "
                       "predictions; tk-1-replay-3: record found, but no inputs the grader can read", {
                           "atol": 1e-4, "replayed": [
                               {"request_id": "tk-1-replay-1", "inputs": "instances (instances by feature name)",
                                "rows_logged": 4, "max_abs_diff": 0.0, "result": "same predictions", "match": True},
                               {"request_id": "tk-1-replay-2", "inputs": "instances (instances by feature name)",
                                "rows_logged": 4, "max_abs_diff": 0.0, "result": "same predictions", "match": True},
                               {"request_id": "tk-1-replay-3", "records": 1, "record_keys": ["request_id", "status"],
                                "result": "record found, but no inputs the grader can read"}]}),
}


def _sections(outcomes: dict[str, tuple[str, float, str, dict[str, Any]]]) -> list[SectionResult]:
    sections = []
    for sid, sec in RUBRIC.items():
        items = []
        for iid, spec in sec["items"].items():
            status, frac, msg, ev = outcomes[iid]
            registry.spec(sid).evidence.model_validate(ev)  # the fixtures have the checks' shapes
            items.append(ItemResult(id=f"{sid}.{iid}", title=spec["title"], section=sid,
                                    points=round(spec["points"] * frac, 2), max_points=spec["points"],
                                    status=status, message=msg, evidence=ev))
        sections.append(SectionResult(id=sid, title=sec["title"], items=items,
                                      points=sum(i.points for i in items),
                                      max_points=sum(i.max_points for i in items)))
    return sections


def _phases(bad: dict[str, tuple[str, str]] | None = None) -> list[PhaseResult]:
    names = ["fetch", "build", "deploy_v1", "rollout_v2", "correctness", "drift", "latency",
             "rollback", "robustness", "teardown"]
    out = []
    for n, name in enumerate(names):
        status, error = (bad or {}).get(name, ("ok", None))
        out.append(PhaseResult(name=name, status=status, started_at="2025-01-01T00:00:00+00:00",
                               duration_s=3.0 + n, message=f"{name} done", error=error))
    return out


def _timeline() -> list[TimelineEvent]:
    """Events as the drift, latency and rollback checks emit them."""
    ev: list[TimelineEvent] = []
    t = 10.0
    rows = 0
    phases = [("baseline", 2000, {600, 1300}), ("scenario:mean_shift", 700, set(range(2300, 2701, 50))),
              ("washout:unit_change", 300, set(range(2700, 2851, 50))), ("scenario:unit_change", 1500, set())]
    for label, n, firing_at in phases:
        start = rows
        ev.append(TimelineEvent(t_s=t, kind="phase", label=label, data={"start_rows": start}))
        for _ in range(n // 50):
            rows += 50
            t += 1.0
            firing = rows in firing_at
            ev.append(TimelineEvent(t_s=t, kind="drift_poll", label=label, data={
                "firing": firing, "rows": rows, "ok": True,
                "features": ["f3", HOSTILE, "$\\frac{a$"] if firing else []}))
        ev.append(TimelineEvent(t_s=t, kind="phase_end", label=label,
                                data={"start_rows": start, "end_rows": rows}))
    ev.append(TimelineEvent(t_s=150, kind="phase", label="latency", data={"rate_rps": 50}))
    for k in range(600):  # rollback traffic at 20 req/s; data["t"] is on the run clock, like t_s
        t = 200 + k / 20
        version, ok = ("v2", True) if t < 210 else (("unknown", False) if t < 210.6 else ("v1", True))
        ev.append(TimelineEvent(t_s=t, kind="rollback_request", label="request",
                                data={"t": t, "ok": ok, "version": version}))
    for t, label, extra in [(205, "rollback start", {}), (211.2, "rollback end", {"exit_code": 0}),
                            (220, "second rollback start", {}),
                            (221, "second rollback end", {"exit_code": 0})]:
        ev.append(TimelineEvent(t_s=t, kind="rollback", label=label, data=extra))
    return sorted(ev, key=lambda e: e.t_s)


def _latency() -> LatencySummary:
    """From ``LatencyStats.to_dict()``, as the latency check stores it."""
    pcts = [round(100.0 * (1.0 - 10.0 ** (-k / 10.0)), 6) for k in range(0, 51)]
    spectrum = [[p, round(10 + 1.5 * p if p < 99 else 180 + 50 * (p - 99), 3)] for p in pcts]
    spectrum.append([100.0, 260.0])
    return LatencySummary.from_stats(
        {"count": 1000, "scheduled": 1000, "sent": 1000, "ok": 1000, "errors": 0, "error_rate": 0.0,
         "latency_ms": {"p50": 85.0, "p95": 152.5, "p99": 184.2, "p99.9": 229.0, "max": 260.0, "mean": 80.1},
         "spectrum_ms": spectrum, "planned_rate_rps": 50.0, "scheduled_rate_rps": 50.0,
         "achieved_rate_rps": 49.8, "saturated": False, "saturation_reason": None}, slo_ms=100)


def full_report() -> GradeReport:
    sections = _sections(FULL_OUTCOMES)
    return GradeReport(run_id="run-full-1", runtime="docker", started_at="2025-01-01T00:00:00+00:00",
                       candidate=CandidateInfo(repo="https://github.com/cand/takehome", commit="abc1234",
                                               name="Ada Candidate", framework="fastapi"),
                       duration_s=512.3, score=sum(s.points for s in sections),
                       max_score=sum(s.max_points for s in sections), sections=sections,
                       phases=_phases(), timeline=_timeline(), latency=_latency(),
                       grader_version="0.1.0", config_digest="sha256:1234")


def crashed_report() -> GradeReport:
    return GradeReport(run_id="run-crash-2", runtime="local", status="grader_error",
                       candidate=CandidateInfo(repo="/tmp/cand"), duration_s=4.0, max_score=100,
                       phases=_phases({"build": ("error", "KeyError: 'python_version'")})[:2],
                       error="Traceback (most recent call last):\n  ...\nKeyError: 'python_version'")


def broken_report() -> GradeReport:
    outcomes = {iid: ("skipped", 0.0, "not run: v1 never became ready", {})
                for sec in RUBRIC.values() for iid in sec["items"]}
    deploy = {**_command("make deploy VERSION=v1", code=1),
              "stderr_tail": "Traceback ...\nModuleNotFoundError: No module named 'fastapi'"}
    outcomes["v1_served"] = ("fail", 0.0, "deploy v1 failed (exit 1) and error is served", {
        "deploy": deploy, "fingerprint": {"version": "error", "basis": "none", "match_share": {}},
        "versions_seen": ["error"], "seconds_until_served": 90.0})
    sections = _sections(outcomes)
    return GradeReport(run_id="run-broken-3", runtime="docker", status="broken_submission",
                       candidate=CandidateInfo(repo="https://example.com/b.git", commit="ffff000"),
                       duration_s=80.0, score=0, max_score=sum(s.max_points for s in sections),
                       sections=sections, phases=_phases({"deploy_v1": ("failed", "exit 1")})[:3],
                       error="candidate deploy command exited 1: No module named 'fastapi'")


REPORTS = {"full": full_report, "crashed": crashed_report, "broken": broken_report}


def _items(report: GradeReport) -> list[ItemResult]:
    return [i for s in report.sections for i in s.items]


# ------------------------------------------------------------------ write / parse -------------
@pytest.mark.parametrize("kind", sorted(REPORTS))
def test_every_format_is_written_and_parses(kind: str, tmp_path: Path) -> None:
    report = REPORTS[kind]()
    paths = write_reports(report, tmp_path / "out")
    assert {p.name for p in paths.values()} == {"report.json", "scorecard.md", "report.html",
                                                 "junit.xml", "results.json"}
    data = json.loads(paths["json"].read_text())
    jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text())).validate(data)
    assert GradeReport.model_validate(data) == report
    ET.fromstring(paths["junit"].read_text())
    assert json.loads(paths["gradescope"].read_text())["score"] == pytest.approx(report.score)
    assert paths["html"].read_text().startswith("<!DOCTYPE html>")
    assert "renderer failed" not in paths["markdown"].read_text()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_schema_file_is_in_sync_with_the_model() -> None:
    assert SCHEMA_PATH.read_text() == schema_text(), \
        "grader/report.schema.json is stale: run `python -m grader.reports.json_report --write-schema`"
    schema = report_json_schema()
    assert schema["$schema"].endswith("2020-12/schema") and "1.1" in schema["title"]


def test_json_is_stable_and_finite() -> None:
    report = full_report()
    report.sections[0].items[0].evidence.update(nan=math.nan, inf=math.inf, path=Path("/x"))
    text = render_json(report)
    assert text == render_json(report)
    data = json.loads(text)
    assert list(data) == sorted(data)
    ev = data["sections"][0]["items"][0]["evidence"]
    assert ev["nan"] is None and ev["inf"] is None and ev["path"] == "/x"


# ------------------------------------------------------------------ html ----------------------
def test_html_escapes_candidate_text_and_inlines_plots() -> None:
    report = full_report()
    report.sections[1].items[0].message = HOSTILE
    page = render_html(report)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;" in page
    assert page.count("<svg") == 3
    for external in ("src=", "<link", 'href="http', "url(http", "@import"):  # self-contained
        assert external not in page


def test_html_without_plot_data_has_no_svg_and_shows_the_error() -> None:
    page = render_html(crashed_report())
    assert "<svg" not in page
    assert "What went wrong" in page and "KeyError: &#x27;python_version&#x27;" in page


# ------------------------------------------------------------------ junit ---------------------
def _suites(xml: str) -> dict[str, ET.Element]:
    return {s.get("name"): s for s in ET.fromstring(xml).iter("testsuite")}


def test_junit_failures_match_failed_and_partial_items() -> None:
    report = full_report()
    suites = _suites(render_junit(report))
    section_ids = [s.id for s in report.sections]
    failures = sum(len(suites[sid].findall("testcase/failure")) for sid in section_ids)
    assert failures == sum(i.status in ("fail", "partial") for i in _items(report)) == 8
    assert sum(int(suites[sid].get("failures")) for sid in section_ids) == failures
    assert len(suites["observability"].findall("testcase/skipped")) == 1
    case = suites["deployment"].find("testcase[@name='deployment.v1_served']")
    assert case.get("classname") == "deployment" and case.get("time") == "12.500"  # deploy.duration_s
    partial = suites["rollback"].find("testcase[@name='rollback.no_failed_requests']/failure")
    assert "earned 3 of 6 points" in partial.get("message")
    props = {p.get("name"): p.get("value") for p in suites["drift"].iter("property")}
    assert props["score"] == str(round(report.score, 2)).rstrip("0").rstrip(".")
    assert props["run_id"] == "run-full-1" and props["status"] == "completed"
    assert len(suites["lifecycle"].findall("testcase")) == len(report.phases)
    assert "run" not in suites


def test_junit_crashed_run_keeps_the_error_and_phase_errors() -> None:
    report = crashed_report()
    suites = _suites(render_junit(report))
    err = suites["run"].find("testcase/error")
    assert "KeyError" in err.get("message") and "Traceback" in err.text
    assert suites["lifecycle"].find("testcase[@name='build']/error") is not None
    root = ET.fromstring(render_junit(report))
    assert root.get("errors") == "2"


def test_junit_broken_submission_is_a_failure() -> None:
    suites = _suites(render_junit(broken_report()))
    assert "fastapi" in suites["run"].find("testcase/failure").get("message")
    assert suites["lifecycle"].find("testcase[@name='deploy_v1']/failure") is not None


# ------------------------------------------------------------------ gradescope ----------------
def test_gradescope_scores_sum_and_leaderboard() -> None:
    report = full_report()
    data = json.loads(render_gradescope(report))
    assert sum(t["score"] for t in data["tests"]) == pytest.approx(report.score)
    assert len(data["tests"]) == len(_items(report))
    assert data["leaderboard"] == [{"name": "p99_ms", "value": 184.2, "order": "asc"}]
    assert data["stdout_visibility"] == "visible"
    # Which feature drifted and when the alarm fired stay hidden until the grades are published.
    by_section = {t["number"].split(".")[0]: t["visibility"] for t in data["tests"]}
    assert by_section["drift"] == by_section["observability"] == "after_published"
    assert by_section["latency"] == by_section["rollback"] == "visible"
    title = RUBRIC["latency"]["items"]["p99_under_slo"]["title"]
    p99 = next(t for t in data["tests"] if t["name"] == f"Latency under load: {title}")
    assert p99["status"] == "failed" and "184.2" in p99["output"] and p99["max_score"] == 10


def test_gradescope_without_latency_or_sections() -> None:
    data = json.loads(render_gradescope(crashed_report()))
    assert "leaderboard" not in data
    assert data["score"] == 0 and "KeyError" in data["tests"][0]["output"]


# ------------------------------------------------------------------ markdown ------------------
def test_markdown_scorecard_has_sections_score_and_evidence() -> None:
    report = full_report()
    report.candidate.name = HOSTILE
    md = render_markdown(report)
    for s in report.sections:
        assert s.title in md
    assert f"**{round(report.score, 2):g} / 100**" in md
    assert "`false_alarm_polls=7`" in md and "`deploy.exit_code=0`" in md
    assert "missing feature, status=500" in md  # a list of records: one line per record
    outside_code = md.split("```")[::2]  # raw HTML is inert only inside fenced blocks
    assert HOSTILE in md and not any(re.search(r"(?<!\\)<script", part) for part in outside_code)
    assert "ALARM" in md and "\x1b" not in md and "\x00" not in md
    assert "7 of 40 polls \\| on baseline traffic" in md  # a pipe cannot break a table
    assert "| p99 (ms) |" in md and "| 50 | 49.8 | 85 | 152.5 | 184.2 |" in md
    assert "## Lifecycle phases" in md and "## Interview follow-ups" in md
    assert "What went wrong" not in md


def test_markdown_crashed_run_shows_what_went_wrong() -> None:
    md = render_markdown(crashed_report())
    assert "## ⚠️ What went wrong" in md and "KeyError: 'python_version'" in md
    assert "grader itself failed" in md


def test_md_text_neutralises_links_and_html() -> None:
    assert md_text("[x](http://e) ![i](http://t.png) <b>|") == \
        "\\[x\\](http://e) \\!\\[i\\](http://t.png) \\<b\\>\\|"


# ------------------------------------------------------------------ followups -----------------
def test_followups_ordered_by_points_lost_with_evidence() -> None:
    report = full_report()
    qs = followup_questions(report, limit=20)
    order = ["At 50 req/s open-loop your p99 was 184.2 ms against a 100 ms SLO",
             "false alarm at 7 of 40 polls over 2000 in-distribution rows",
             "missed 2 of 5 drift scenarios (unit_change, frozen_feature)",
             "dropped 12 request(s) of 600 during the switch (e.g. connect: Connection refused)",
             "missing feature -> 500; oversized body (~12 MB) -> server disconnected",
             "could not check \"Request id",
             "in 3 of 5 scenarios (for unit_change the alarm named no feature; the drifted feature was f2)",
             "median of 650 drifted rows to fire (slowest: missing_spike at 900 rows; "
             "full credit within 500)"]
    pos = [next(i for i, q in enumerate(qs) if key in q) for key in order]
    assert pos == sorted(pos)
    assert len(followup_questions(report)) == 6


def test_followups_cover_every_rubric_item() -> None:
    for sid, sec in RUBRIC.items():
        for iid, spec in sec["items"].items():
            assert (sid, iid) in fu._BY_KEY, f"no follow-up question for {sid}.{iid}"
            item = ItemResult(id=iid, title=spec["title"], section=sid, points=0,
                              max_points=spec["points"], status="fail", message="it broke")
            q = fu.question_for(item, crashed_report())  # no evidence, no latency data
            assert q.endswith(("?", ".")) and "it broke" in q and "None" not in q and "{" not in q


def test_followup_names_the_bad_inputs_that_got_a_server_error() -> None:
    item = ItemResult(id="stays_healthy", title="t", section="robustness", points=1.5, max_points=3,
                      status="partial", message="still answering",
                      evidence={"process_alive": True, "server_errors_on_bad_input": ["missing feature", "extra feature"]})
    q = fu.question_for(item, full_report())
    assert "2 bad inputs got a server error" in q and "missing feature" in q


def test_followups_broken_stretch_and_grader_error() -> None:
    broken = followup_questions(broken_report())
    assert "No module named 'fastapi'" in broken[0] and "exited with code 1" in broken[1]
    assert len(broken) == 2  # items skipped because of the break are not asked about one by one
    perfect = full_report()
    for item in _items(perfect):
        item.points, item.status = item.max_points, "pass"
    assert 2 <= len(followup_questions(perfect)) <= 3
    assert followup_questions(perfect)[0] == fu.STRETCH_QUESTIONS[0]
    assert followup_questions(crashed_report()) == []


# ------------------------------------------------------------------ plots ---------------------
def test_plots_render_svg_and_none_without_data() -> None:
    report = full_report()
    lat = latency_spectrum_svg(report.latency)
    drift = drift_timeline_svg(report.timeline)
    rb = rollback_timeline_svg(report.timeline)
    assert lat.startswith("<svg") and "SLO 100 ms" in lat and "99.9%" in lat
    assert drift.startswith("<svg") and "S1" in drift and "S2" in drift and "false alarm (2)" in drift
    assert ">baseline<" in drift and ">washout<" not in drift and "latency" not in drift
    assert "<script" not in drift
    assert rb.startswith("<svg") and "failed" in rb and "second rollback end (exit 0)" in rb
    assert lat == latency_spectrum_svg(report.latency)  # deterministic
    assert latency_spectrum_svg(None) is None and latency_spectrum_svg(LatencySummary()) is None
    assert drift_timeline_svg([]) is None and rollback_timeline_svg([]) is None


def test_drift_plot_falls_back_to_time_axis() -> None:
    events = [TimelineEvent(t_s=t, kind="drift_poll", label="p", data={"firing": t > 5})
              for t in range(10)]
    svg = drift_timeline_svg(events)
    assert svg is not None and "seconds since start" in svg


# ------------------------------------------------------------------ resilience ----------------
def test_a_failing_renderer_leaves_the_others_written(tmp_path: Path, monkeypatch) -> None:
    import grader.reports.json_report as jr
    import grader.reports.junit as ju
    import grader.reports.markdown as md

    def boom(report: GradeReport) -> str:
        raise RuntimeError("renderer exploded")

    for module, name in [(md, "render_markdown"), (jr, "render_json"), (ju, "render_junit")]:
        monkeypatch.setattr(module, name, boom)
    paths = write_reports(crashed_report(), tmp_path)
    assert len(paths) == 5
    assert "renderer failed" in paths["markdown"].read_text()
    assert "renderer exploded" in paths["markdown"].read_text()
    assert json.loads(paths["json"].read_text())["renderer_error"] == "RuntimeError: renderer exploded"
    assert ET.fromstring(paths["junit"].read_text()).find(".//error") is not None
    assert "KeyError" in json.loads(paths["gradescope"].read_text())["tests"][0]["output"]
    assert "What went wrong" in paths["html"].read_text()


def test_write_reports_subset_and_unknown_format(tmp_path: Path) -> None:
    paths = write_reports(full_report(), tmp_path, formats=["junit"])
    assert list(paths) == ["junit"] and [p.name for p in tmp_path.iterdir()] == ["junit.xml"]
    with pytest.raises(ValueError, match="unknown report format"):
        write_reports(full_report(), tmp_path, formats=["pdf"])


def test_a_graded_report_names_the_seeds_source_never_its_value(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end through grade(): a run (here one that stops at the contract) and every report
    format carry the seed's source and fingerprint, and the seed in no spelling."""
    from grader.config import seed_fingerprint
    from grader.lifecycle import GradeRequest, grade
    from grader.reports.write import write_reports

    secret = 8_123_456_789_012_345
    monkeypatch.setenv("TAKEHOME_SCENARIO_SEED", str(secret))
    repo = tmp_path / "cand"
    repo.mkdir()
    (repo / "app.py").write_text("print('no takehome.yaml here')\n")
    said: list[str] = []
    report = grade(GradeRequest(repo=str(repo), progress=said.append))
    assert report.status == "broken_submission"
    assert report.seed is not None and report.seed.model_dump() == {"source": "environment",
                                                                   "fingerprint": seed_fingerprint(secret)}
    paths = write_reports(report, tmp_path / "out")
    assert {"json", "markdown", "html", "gradescope"} <= paths.keys()
    texts = {fmt: path.read_text() for fmt, path in paths.items()}
    assert json.loads(texts["json"])["seed"]["source"] == "environment"
    assert seed_fingerprint(secret) in texts["markdown"] and seed_fingerprint(secret) in texts["html"]
    spellings = {str(secret), f"{secret:_}", f"{secret:,}", f"{secret:x}", str(secret + 1), str(secret + 101)}
    for fmt, text in [*texts.items(), ("progress", "\n".join(said))]:
        assert not [s for s in spellings if s in text], fmt


# ------------------------------------------------------------------ terminal summary ----------
def test_terminal_summary_lists_the_biggest_losses_first_and_where_the_reports_are(tmp_path: Path) -> None:
    from grader.reports._format import pts
    from grader.reports.terminal import TOP_LOST, render_summary

    report = full_report()
    paths = {"json": tmp_path / "report.json", "html": tmp_path / "report.html"}
    text = render_summary(report, paths)
    lines = text.splitlines()
    assert lines[0].startswith(f"Score {pts(report.score, report.max_score)} (completed)")
    assert len(lines) < 30  # a screenful, not the scorecard
    assert all(f"{s.title}" in text for s in report.sections)
    losses = [float(line.split()[0].lstrip("-")) for line in lines if line.startswith("  -")]
    assert losses and losses == sorted(losses, reverse=True) and len(losses) <= TOP_LOST
    items = [i for s in report.sections for i in s.items]
    assert losses[0] == max(i.max_points - i.points for i in items)
    assert f"Reports in {tmp_path}/: report.json, report.html" in text
    broken = render_summary(broken_report())
    assert "broken submission" in broken.splitlines()[0] and "fastapi" in broken


def test_where_the_points_went_comes_first_with_a_question_per_loss() -> None:
    from grader.reports._format import lost_points

    report = full_report()
    lost = lost_points(report)
    assert lost and [i.max_points - i.points for i in lost] == sorted((i.max_points - i.points for i in lost),
                                                                      reverse=True)
    md = render_markdown(report)
    assert md.index("## Where the points went") < md.index("## Score by section")
    assert md.count("| -") >= len(lost)
    page = render_html(report)
    assert page.index("Where the points went") < page.index("Score by section")
    assert page.count("<td>-") == len(lost)
    # Bars say how full a section is by colour, not only by length.
    fractions = {s.id: s.points / s.max_points for s in report.sections if s.max_points}
    expected = {"ok" if f >= 1 else "warn" if f >= 0.5 else "bad" for f in fractions.values()}
    table = page[page.index("Score by section"):page.index("</table>", page.index("Score by section"))]
    assert {c for c in ("ok", "warn", "bad") if f'<span class="{c}" style="width' in table} == expected
    assert "Where the points went" not in render_markdown(report.model_copy(update={"sections": []}))


def test_the_candidates_copy_withholds_the_hidden_scenarios_and_keeps_every_score(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from grader import cli
    from grader.reports.audience import for_candidate

    team = full_report()
    team.followups = followup_questions(team)
    mine = for_candidate(team)
    assert [(i.id, i.points, i.status) for i in _items(mine)] == [(i.id, i.points, i.status) for i in _items(team)]
    assert mine.score == team.score and mine.section("rollback") == team.section("rollback")
    team_text = render_json(team) + render_markdown(team) + render_html(team) + render_junit(team)
    mine_text = render_json(mine) + render_markdown(mine) + render_html(mine) + render_junit(mine)
    for secret in _SCENARIOS:  # the scenario kinds appear in the team's report, nowhere in the candidate's
        assert secret in team_text and secret not in mine_text, secret
    assert "withheld" in render_markdown(mine) and all(ev.kind == "rollback" or ev.kind.startswith("rollback")
                                                      or ev.label == "latency" for ev in mine.timeline)
    assert len(mine.followups) > 0 and mine.followups != team.followups

    src = tmp_path / "team" / "report.json"
    write_reports(team, src.parent)
    result = CliRunner().invoke(cli.app, ["report", str(src), "--audience", "candidate", "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert "mean_shift" not in (tmp_path / "c" / "report.html").read_text()
    assert json.loads((tmp_path / "c" / "report.json").read_text())["score"] == team.score
    same_dir = CliRunner().invoke(cli.app, ["report", str(src), "--out", str(src.parent)])
    (tmp_path / "bad.json").write_text("{}")
    bad = CliRunner().invoke(cli.app, ["report", str(tmp_path / "bad.json"), "--out", str(tmp_path / "x")])
    assert same_dir.exit_code == bad.exit_code == 2 and "cannot read" in bad.output, bad.output


def test_drift_phase_labels_never_overlap_and_stay_inside_the_axes() -> None:
    from grader.reports.plots import _AXES_CHARS, phase_labels

    # A good monitor: 2000 baseline rows, then scenarios caught in 50 rows, washouts of 50 to 500.
    spans, x = [(0.0, 2000.0, "baseline")], 2000.0
    for k in range(12):
        spans += [(x, x + 50, "scenario"), (x + 50, x + 50 + (50 if k % 2 else 500), "washout")]
        x = spans[-1][1]
    lo, hi = 0.0, x
    labels = phase_labels(spans, lo, hi)
    width = (hi - lo) / _AXES_CHARS
    for row in {r for _, r, _ in labels}:
        placed = sorted((mid - len(t) * width / 2, mid + len(t) * width / 2) for mid, r, t in labels if r == row)
        assert all(a[1] < b[0] for a, b in zip(placed, placed[1:])), placed  # no overlap on a row
        assert placed[0][0] >= lo and placed[-1][1] <= hi
    texts = [t for _, _, t in labels]
    assert texts[0] == "baseline" and "S12" in texts and len(set(texts)) == len(texts)


def test_the_drift_table_has_a_row_per_scenario_with_what_was_sent_and_seen() -> None:
    from grader.reports._format import DRIFT_TABLE_HEADERS, drift_table

    intro, rows = drift_table(full_report())
    assert "Baseline: 2000 in-distribution rows" in intro and "at 7 of 40 polls" in intro
    assert [r[0] for r in rows] == ["S1", "S2", "S3", "S4", "S5"] and len(rows[0]) == len(DRIFT_TABLE_HEADERS)
    by_kind = {r[1]: r for r in rows}
    assert by_kind["unit_change"][4] == "missed" and by_kind["mean_shift"][4] == "300"
    assert by_kind["new_category"][5] == "f1, f2, f3, f4"
    assert "K-S 0.44, p = 1.6e-18; median 40.0 -> 110.1 (300 rows)" in by_kind["mean_shift"][3]
    html, md = render_html(full_report()), render_markdown(full_report())
    assert html.index('class="drift"') < html.index("Drift alarm over the traffic phases")
    assert "| S2 | unit\\_change | f2 |" in md
    assert 'class="records"' in html and "raw evidence (JSON)" in html and "delay (rows)" in html


def test_a_grading_on_the_public_seed_says_practice_everywhere_and_a_team_seed_does_not() -> None:
    from grader.reports.terminal import render_summary
    from grader.results import SeedInfo

    practice, real = full_report(), full_report()
    practice.seed = SeedInfo(source="built-in default", fingerprint="0123456789ab")
    real.seed = SeedInfo(source="environment", fingerprint="ba9876543210")
    for render in (render_html, render_markdown, render_summary):
        assert "PRACTICE grading" in render(practice) and "PRACTICE" not in render(real), render
    assert "<h1>Practice grade:" in render_html(practice) and "# Take-home grade:" in render_markdown(real)
    assert "| Scenario seed | environment, fingerprint ba9876543210" in render_markdown(real)


def test_default_report_folders_are_per_candidate_and_commit() -> None:
    from grader.reports.write import default_report_dir

    report = full_report()
    assert default_report_dir(report) == Path("reports/takehome/abc1234")
    report.candidate = CandidateInfo(repo="/home/x/Ada Lovelace's repo/", commit="f" * 40)
    assert default_report_dir(report, Path("/r")) == Path("/r/Ada-Lovelace-s-repo/ffffffffffff")
    report.candidate = CandidateInfo(repo="../..", commit=None)  # never a path outside the root
    assert default_report_dir(report, Path("/r")) == Path("/r/candidate/no-commit")
