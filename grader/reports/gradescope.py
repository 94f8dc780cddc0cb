"""The report in Gradescope's autograder ``results.json`` format.

One test per rubric item (``"<section title>: <item title>"``), scored with the item's points, so
the tests' scores sum to the report's score. A run that did not complete gets one extra test
worth 0 of 0 points that carries ``report.error``, so the failure shows in Gradescope's UI. The
leaderboard has ``p99_ms`` (lower is better) only when the latency phase measured a p99.

Tests of sections whose messages and evidence name the hidden scenarios (which feature drifted,
how many rows until the alarm, the scenario request ids the logs were searched for) are
``after_published``: a candidate sees them only once the team publishes the grades.
"""

from __future__ import annotations

import json
from typing import Any

from grader.reports._format import (RUN_BADGES, clean, evidence_text, latency_p99, pts, short,
                                    what_went_wrong)
from grader.results import GradeReport


#: Sections whose details would tell a candidate what the hidden scenarios are.
HIDDEN_UNTIL_PUBLISHED = frozenset({"drift", "observability"})


def _round(value: float) -> float:
    return round(float(value), 4)


def _summary(report: GradeReport) -> str:
    word = RUN_BADGES.get(report.status, ("", report.status))[1]
    lines = [f"Grade: {pts(report.score, report.max_score)} ({word})",
             f"Candidate: {clean(report.candidate.repo)} @ {clean(report.candidate.commit or '?')}",
             f"Runtime: {clean(report.runtime)} · run {clean(report.run_id)}"]
    if report.status != "completed":
        lines += ["", what_went_wrong(report), short(report.error or "(no error text)", 2000)]
    for s in report.sections:
        lines.append(f"  {clean(s.title)}: {pts(s.points, s.max_points)}")
    return "\n".join(lines)


def gradescope_data(report: GradeReport) -> dict[str, Any]:
    """The ``results.json`` object."""
    tests: list[dict[str, Any]] = []
    for s in report.sections:
        for item in s.items:
            evidence = evidence_text(item.evidence, max_chars=4000)
            output = f"[{item.status}] {clean(item.message)}" + (f"\n\n{evidence}" if evidence else "")
            tests.append({
                "name": f"{clean(s.title)}: {clean(item.title)}",
                "number": f"{s.id}.{item.id.removeprefix(s.id + '.')}",
                "score": _round(item.points),
                "max_score": _round(item.max_points),
                "output": output,
                "visibility": "after_published" if s.id in HIDDEN_UNTIL_PUBLISHED else "visible",
                "status": "passed" if item.status == "pass" else "failed",
            })
    if report.status != "completed":
        tests.append({"name": f"Grading run: {report.status}", "score": 0.0, "max_score": 0.0,
                      "output": clean(report.error or "(no error text was recorded)")[-8000:],
                      "visibility": "visible", "status": "failed"})
    data: dict[str, Any] = {
        "score": _round(report.score),
        "execution_time": int(round(report.duration_s or 0.0)),
        "output": _summary(report),
        "stdout_visibility": "visible",
        "tests": tests,
    }
    p99 = latency_p99(report)
    if p99 is not None:
        data["leaderboard"] = [{"name": "p99_ms", "value": round(p99, 3), "order": "asc"}]
    return data


def render_gradescope(report: GradeReport) -> str:
    """``results.json`` text."""
    return json.dumps(gradescope_data(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
