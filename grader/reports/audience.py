"""Who a report is for: the hiring team sees everything; a candidate's copy withholds the hidden scenarios.

The drift scenarios (which feature shifts, how, after how many rows) are what the hidden seed
keeps secret, so the same seed can grade a whole cohort. A report a candidate may read
(``takehome grade --audience candidate``, ``takehome report --audience candidate``) keeps every
score and everything about the other sections, and replaces what would tell the scenarios: the
drift items' messages and evidence, the drift timeline, and follow-up questions built from them.
"""

from __future__ import annotations

from typing import Literal

from grader.reports._format import num
from grader.reports.followups import followup_questions
from grader.results import GradeReport, ItemResult

Audience = Literal["team", "candidate"]
AUDIENCES: tuple[str, ...] = ("team", "candidate")

#: Sections whose messages and evidence name the hidden scenarios.
HIDDEN_SECTIONS = frozenset({"drift"})
#: Timeline events of the drift phases (their labels are scenario names).
HIDDEN_EVENTS = frozenset({"phase", "phase_end", "drift_poll"})
WITHHELD = ("details withheld from the candidate's copy of the report: they would name the hidden drift "
            "scenarios")


def _withheld_message(item: ItemResult) -> str:
    verdict = {"pass": "met", "fail": "not met", "partial": "partly met", "skipped": "not checked",
               "inconclusive": "inconclusive"}.get(item.status, item.status)
    return f"{verdict} ({num(item.points)} of {num(item.max_points)} points); {WITHHELD}"


def for_audience(report: GradeReport, audience: Audience) -> GradeReport:
    """``report`` as ``audience`` may see it (the team's is the report itself)."""
    return report if audience == "team" else for_candidate(report)


def for_candidate(report: GradeReport) -> GradeReport:
    """A copy of ``report`` without the hidden scenario details; scores unchanged."""
    copy = report.model_copy(deep=True)
    for section in copy.sections:
        if section.id not in HIDDEN_SECTIONS:
            continue
        for item in section.items:
            item.message = _withheld_message(item)
            item.evidence = {"withheld": WITHHELD}
    copy.timeline = [ev for ev in copy.timeline if ev.kind not in HIDDEN_EVENTS]
    copy.followups = followup_questions(copy)  # rebuilt from the withheld messages, not the team's
    return copy
