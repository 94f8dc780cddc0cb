"""A hard cap on every string a report quotes, whichever check or phase put it there.

Evidence quotes the candidate: command output, response and log excerpts, error messages built
from what a service answered. The runtimes and checks clip each of these where they are taken;
this is the backstop that holds even for a path that forgot to, so no single field of a report
can carry megabytes of a hostile candidate's output. Applied by ``write_reports`` before any
format is rendered.
"""

from __future__ import annotations

import logging
from typing import Any

from grader.results import GradeReport
from harness.limits import EVIDENCE_MAX_CHARS

log = logging.getLogger(__name__)

#: Nesting kept in evidence; deeper structures (only a hostile payload has them) are replaced.
MAX_DEPTH = 32


def clip_text(text: str, limit: int = EVIDENCE_MAX_CHARS) -> str:
    """``text`` if short, else its head and tail around a marker; never longer than ``limit``."""
    if len(text) <= limit:
        return text
    marker = f"\n... [{len(text)} characters, clipped] ...\n"
    keep = max(0, limit - len(marker))
    head = keep - keep // 2
    return text[:head] + marker + (text[len(text) - keep // 2:] if keep // 2 else "")


def bound_strings(value: Any, limit: int = EVIDENCE_MAX_CHARS, depth: int = 0) -> Any:
    """``value`` with every string in it (dict keys included) clipped to ``limit`` characters."""
    if isinstance(value, str):
        return clip_text(value, limit)
    if isinstance(value, (bytes, bytearray)):
        return clip_text(bytes(value[:limit]).decode("utf-8", "replace"), limit)
    if depth >= MAX_DEPTH and isinstance(value, (dict, list, tuple)):
        return f"[{type(value).__name__} nested deeper than {MAX_DEPTH} levels, left out]"
    if isinstance(value, dict):
        return {bound_strings(k, limit, depth + 1) if isinstance(k, str) else k: bound_strings(v, limit, depth + 1)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [bound_strings(v, limit, depth + 1) for v in value]
    return value


def bound_report(report: GradeReport, limit: int = EVIDENCE_MAX_CHARS) -> GradeReport:
    """A copy of ``report`` whose every string is at most ``limit`` characters.

    Returns ``report`` itself when nothing needed clipping, and also (logged) if the copy cannot
    be built: a report with long fields is better than no report.
    """
    data = report.model_dump()
    bounded = bound_strings(data, limit)
    if bounded == data:
        return report
    try:
        return GradeReport.model_validate(bounded)
    except Exception as exc:  # noqa: BLE001 - never lose the report over its own cap
        log.error("could not cap the report's text fields: %s", exc)
        return report
