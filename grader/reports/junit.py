"""The report as JUnit XML (``junit.xml``) for CI test-report viewers.

Layout: one ``<testsuite>`` per rubric section (``classname`` = section id, ``name`` = item id),
a ``lifecycle`` suite with one testcase per phase, and, when the run did not complete, a ``run``
suite whose testcase carries ``report.error`` -- so a failure is never missing from the XML, even
for a run that crashed before any section was scored.

Item status mapping: ``fail``/``partial`` -> ``<failure>`` (partial says the points earned),
``error`` -> ``<error>``, ``skipped``/``inconclusive`` -> ``<skipped>`` (message says why).
Phases: ``failed`` -> ``<failure>``; ``timeout``/``error``/``interrupted`` -> ``<error>``;
``skipped`` -> ``<skipped>``. Every suite carries the run's properties (score, max_score,
status, run_id, ...).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from grader.reports._format import clean, evidence_text, num, short
from grader.results import GradeReport, ItemResult, PhaseResult, SectionResult

def _t(value: float | None) -> str:
    return f"{max(0.0, value or 0.0):.3f}"


def _text(value: Any, limit: int | None = None) -> str:
    """XML-safe text (XML 1.0 forbids most control characters)."""
    return short(str(value), limit) if limit else clean(value)


def _properties(report: GradeReport, extra: dict[str, Any] | None = None) -> ET.Element:
    props = ET.Element("properties")
    values = {"score": num(report.score), "max_score": num(report.max_score), "status": report.status,
              "run_id": report.run_id, "runtime": report.runtime, "candidate_repo": report.candidate.repo,
              "candidate_commit": report.candidate.commit or "", **(extra or {})}
    for name, value in values.items():
        ET.SubElement(props, "property", name=name, value=_text(value, 500))
    return props


class _Suite:
    """A <testsuite> that keeps its counters in step with the testcases added."""

    def __init__(self, root: ET.Element, report: GradeReport, name: str, extra: dict[str, Any] | None = None):
        self.el = ET.SubElement(root, "testsuite", name=name)
        self.el.append(_properties(report, extra))
        self.counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        self.time = 0.0

    def case(self, classname: str, name: str, time_s: float | None,
             outcome: tuple[str, str, str] | None = None, stdout: str = "") -> ET.Element:
        """Add a testcase; ``outcome`` is (failure|error|skipped, message, body) or None (pass)."""
        tc = ET.SubElement(self.el, "testcase", classname=classname, name=name, time=_t(time_s))
        self.counts["tests"] += 1
        self.time += max(0.0, time_s or 0.0)
        if outcome:
            tag, message, body = outcome
            child = ET.SubElement(tc, tag, message=_text(message, 1000))
            if tag != "skipped":
                child.set("type", tag)
            if body:
                child.text = _text(body)
            self.counts["failures" if tag == "failure" else "errors" if tag == "error" else "skipped"] += 1
        if stdout:
            ET.SubElement(tc, "system-out").text = _text(stdout)
        return tc

    def close(self) -> dict[str, int]:
        for key, value in self.counts.items():
            self.el.set(key, str(value))
        self.el.set("time", _t(self.time))
        return self.counts


def _item_outcome(item: ItemResult) -> tuple[str, str, str] | None:
    body = evidence_text(item.evidence, max_chars=8000)
    earned = f"{num(item.points)} of {num(item.max_points)} points"
    if item.status == "pass":
        return None
    if item.status == "partial":
        return "failure", f"partial: earned {earned}: {item.message}", body
    if item.status == "fail":
        return "failure", f"failed: earned {earned}: {item.message}", body
    if item.status in ("error", "timeout"):  # the phase broke or ran out of time: no verdict
        return "error", f"check {item.status}: {item.message}", body
    return "skipped", f"{item.status}: {item.message}", body


def _item_time(item: ItemResult) -> float | None:
    """The item's own command time (deploy, rollback), from its section's evidence model."""
    from grader.checks.registry import SPECS

    spec = next((s for s in SPECS if s.section == item.section), None)
    return spec.evidence.of(item).duration_s() if spec else None


def _section_suite(root: ET.Element, report: GradeReport, s: SectionResult) -> dict[str, int]:
    suite = _Suite(root, report, s.id, {"title": s.title, "section_points": num(s.points),
                                        "section_max_points": num(s.max_points)})
    for item in s.items:
        out = f"{item.title}\n{num(item.points)} / {num(item.max_points)} points: {item.message}"
        suite.case(s.id, item.id, _item_time(item), _item_outcome(item), stdout=out)
    return suite.close()


def _phase_outcome(p: PhaseResult) -> tuple[str, str, str] | None:
    text = "; ".join(x for x in (p.message, p.error or "") if x) or p.status
    body = p.error or p.message
    if p.status == "ok":
        return None
    if p.status == "failed":
        return "failure", f"phase failed: {text}", body
    if p.status == "skipped":
        return "skipped", f"phase skipped: {text}", body
    return "error", f"phase {p.status}: {text}", body


def render_junit(report: GradeReport) -> str:
    """JUnit XML text (UTF-8, with XML declaration)."""
    root = ET.Element("testsuites", name=f"takehome grade {_text(report.run_id, 200)}")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    counts = [_section_suite(root, report, s) for s in report.sections]
    if report.phases:
        suite = _Suite(root, report, "lifecycle")
        for p in report.phases:
            suite.case("lifecycle", p.name, p.duration_s, _phase_outcome(p), stdout=p.message)
        counts.append(suite.close())
    if report.status != "completed":
        suite = _Suite(root, report, "run")
        tag = "failure" if report.status == "broken_submission" else "error"
        error = report.error or "(no error text was recorded)"
        suite.case("run", "grading_run", report.duration_s,
                   (tag, f"{report.status}: {short(error, 500)}", error))
        counts.append(suite.close())
    for c in counts:
        for key in totals:
            totals[key] += c[key]
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", _t(report.duration_s))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
