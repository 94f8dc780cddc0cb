"""Report renderers: each turns a ``GradeReport`` into text; ``write_reports`` writes them all.

Pure functions of the result tree (``grader/results.py``). Names are imported lazily on first
use (PEP 562), so ``python -m grader.reports.json_report`` runs cleanly and matplotlib is only
imported when the HTML report draws its plots.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "ALL": "write",
    "FILENAMES": "write",
    "write_reports": "write",
    "render_json": "json_report",
    "report_json_schema": "json_report",
    "render_markdown": "markdown",
    "render_html": "html",
    "render_junit": "junit",
    "render_gradescope": "gradescope",
    "followup_questions": "followups",
    "latency_spectrum_svg": "plots",
    "drift_timeline_svg": "plots",
    "rollback_timeline_svg": "plots",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from grader.reports.followups import followup_questions
    from grader.reports.gradescope import render_gradescope
    from grader.reports.html import render_html
    from grader.reports.json_report import render_json, report_json_schema
    from grader.reports.junit import render_junit
    from grader.reports.markdown import render_markdown
    from grader.reports.plots import drift_timeline_svg, latency_spectrum_svg, rollback_timeline_svg
    from grader.reports.write import ALL, FILENAMES, write_reports


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'grader.reports' has no attribute {name!r}")
    return getattr(importlib.import_module(f"grader.reports.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
