"""Write every report format to a directory, whatever happens.

Call ``write_reports`` from the grader's ``finally``: each file is written atomically (a temp
file in the same directory, then ``os.replace``), and a renderer that raises gets a minimal
fallback file that says which renderer failed and why -- in a form the file's readers still
parse (valid JSON, valid JUnit XML) -- while the other formats are written normally.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Iterable

from grader.reports.bounds import bound_report
from grader.results import GradeReport

log = logging.getLogger(__name__)

#: Format name -> file name, in writing order (JSON first: it is the lossless one).
FILENAMES: dict[str, str] = {
    "json": "report.json",
    "markdown": "scorecard.md",
    "html": "report.html",
    "junit": "junit.xml",
    "gradescope": "results.json",
}
ALL: tuple[str, ...] = tuple(FILENAMES)


def _renderer(fmt: str) -> Callable[[GradeReport], str]:
    """The renderer for ``fmt``, imported on use (an import error counts as a renderer failure)."""
    if fmt == "json":
        from grader.reports.json_report import render_json
        return render_json
    if fmt == "markdown":
        from grader.reports.markdown import render_markdown
        return render_markdown
    if fmt == "html":
        from grader.reports.html import render_html
        return render_html
    if fmt == "junit":
        from grader.reports.junit import render_junit
        return render_junit
    from grader.reports.gradescope import render_gradescope
    return render_gradescope


def _facts(report: GradeReport) -> dict[str, object]:
    """What the fallbacks say about the run; never raises."""
    def get(name: str, default: object) -> object:
        try:
            return getattr(report, name, default)
        except Exception:  # pragma: no cover - a broken model must not break the fallback
            return default
    return {"run_id": str(get("run_id", "?")), "status": str(get("status", "?")),
            "score": get("score", 0.0), "max_score": get("max_score", 0.0),
            "error": get("error", None)}


def fallback_text(fmt: str, report: GradeReport, exc: BaseException) -> str:
    """A minimal file for ``fmt`` saying its renderer failed and why."""
    facts = _facts(report)
    why = f"{type(exc).__name__}: {exc}"
    note = f"The {fmt} renderer failed ({why}); see report.json or the grader log for the full result."
    if fmt in ("json", "gradescope"):
        body: dict[str, object] = {"renderer_error": why, **facts}
        if fmt == "gradescope":
            score = facts["score"] if isinstance(facts["score"], (int, float)) else 0.0
            body = {"score": score, "output": note, "stdout_visibility": "visible", "tests": [],
                    "renderer_error": why}
        return json.dumps(body, indent=2, default=str) + "\n"
    if fmt == "junit":
        root = ET.Element("testsuites", tests="1", failures="0", errors="1")
        suite = ET.SubElement(root, "testsuite", name="report", tests="1", failures="0", errors="1")
        case = ET.SubElement(suite, "testcase", classname="report", name="render_junit")
        ET.SubElement(case, "error", message=note, type="renderer_error").text = \
            "".join(traceback.format_exception(exc))
        return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
    lines = [f"Report renderer failed: {fmt}", "", note, "",
             *(f"{k}: {v}" for k, v in facts.items())]
    if fmt == "html":
        import html
        return ("<!DOCTYPE html><meta charset=\"utf-8\"><title>Report renderer failed</title><pre>"
                + html.escape("\n".join(lines)) + "</pre>\n")
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the new one, never a half."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; reports are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def default_report_dir(report: GradeReport, root: Path = Path("reports")) -> Path:
    """``<root>/<candidate>/<commit>/`` (as ``takehome batch`` lays a cohort out), so gradings of
    other candidates or other commits never overwrite each other: the candidate is the repo's
    last path component, the commit its first 12 characters."""
    name = report.candidate.repo.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git") or "candidate"
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")[:80] or "candidate"
    commit = re.sub(r"[^0-9a-fA-F]", "", report.candidate.commit or "")[:12] or "no-commit"
    return root / name / commit


def write_reports(report: GradeReport, out_dir: Path, formats: Iterable[str] = ALL) -> dict[str, Path]:
    """Write the requested formats into ``out_dir`` (created if needed); returns format -> path.

    A renderer failure is logged and replaced by its fallback file; a format whose file cannot be
    written at all (disk full, permissions) is logged and left out of the result. Every string the
    report quotes is first capped (``grader.reports.bounds``): evidence carries candidate output.
    """
    wanted = list(dict.fromkeys(formats))
    unknown = [f for f in wanted if f not in FILENAMES]
    if unknown:
        raise ValueError(f"unknown report format(s) {unknown}; known: {', '.join(ALL)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = bound_report(report)  # every format quotes the same capped text
    written: dict[str, Path] = {}
    for fmt in wanted:
        path = out_dir / FILENAMES[fmt]
        try:
            text = _renderer(fmt)(report)
        except Exception as exc:
            log.error("report renderer %s failed: %s", fmt, exc, exc_info=True)
            try:
                text = fallback_text(fmt, report, exc)
            except Exception:  # pragma: no cover - last resort: still leave a file behind
                text = f"Report renderer failed: {fmt}: {type(exc).__name__}: {exc}\n"
        try:
            write_atomic(path, text)
        except OSError as exc:
            log.error("could not write %s: %s", path, exc)
            continue
        written[fmt] = path
    return written
