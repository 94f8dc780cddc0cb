"""The terminal summary ``takehome grade`` prints: total, one line per section, the items that
lost the most points with their reason, and where the full reports are. The whole scorecard is
in scorecard.md (``--full`` prints it instead)."""

from __future__ import annotations

from pathlib import Path

from grader.reports._format import (PRACTICE_NOTE, RUN_BADGES, clean, duration, is_practice, lost_points, pts, short,
                                    what_went_wrong)
from grader.results import GradeReport

#: Lost-point items listed; the rest are in the scorecard.
TOP_LOST = 5
_BAR = 20


def _bar(points: float, max_points: float) -> str:
    full = round(_BAR * points / max_points) if max_points else 0
    return "█" * full + "░" * (_BAR - full)


def render_summary(report: GradeReport, paths: dict[str, Path] | None = None) -> str:
    """A screenful: plain text, lines of any length (the caller must not hard-wrap them)."""
    word = RUN_BADGES.get(report.status, ("", report.status))[1]
    who = clean(report.candidate.name or report.candidate.repo)
    commit = clean((report.candidate.commit or "?")[:12])
    lines = [f"Score {pts(report.score, report.max_score)} ({word}) · {who} @ {commit} · {clean(report.runtime)}"
             f" · {duration(report.duration_s)}"]
    if is_practice(report):
        lines.insert(0, PRACTICE_NOTE)
    if report.status != "completed":
        lines += [what_went_wrong(report), "  " + short(clean((report.error or "").splitlines()[0] if report.error
                                                              else "(no error text)"), 300)]
    width = max((len(s.title) for s in report.sections), default=0)
    for s in report.sections:
        lines.append(f"  {clean(s.title):<{width}}  {_bar(s.points, s.max_points)}  {pts(s.points, s.max_points)}")
    lost = lost_points(report)
    if lost:
        lines.append("Where the points went:")
        for item in lost[:TOP_LOST]:
            lines.append(f"  -{item.max_points - item.points:g}  {clean(item.title)}: {short(clean(item.message), 200)}")
        if len(lost) > TOP_LOST:
            lines.append(f"  ... and {len(lost) - TOP_LOST} more item(s) in the scorecard")
    if paths:
        folder = next(iter(paths.values())).parent
        lines.append(f"Reports in {folder}/: " + ", ".join(p.name for p in paths.values()))
    return "\n".join(lines) + "\n"
