"""The scorecard as GitHub-flavoured Markdown (``scorecard.md``).

Written for two readers: a hiring team preparing a debrief, and a GitHub Actions job summary
(``cat scorecard.md >> "$GITHUB_STEP_SUMMARY"``). Candidate text is escaped so it cannot add
links, images, HTML or table columns, and the whole file stays under the 1 MiB job-summary limit.
"""

from __future__ import annotations

import re

from grader.reports._format import (DRIFT_TABLE_HEADERS, ITEM_BADGES, PHASE_BADGES, RUN_BADGES, clean,
                                    PRACTICE_NOTE, drift_table, duration, evidence_view, is_practice, header_facts, lost_points, num, pts, short,
                                    what_went_wrong)
from grader.reports.followups import followup_questions, question_for
from grader.results import GradeReport, ItemResult, SectionResult

#: GitHub rejects job summaries over 1 MiB; stay well below it.
MAX_CHARS = 900_000
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|!~#])")


def md_text(value: object, limit: int = 300) -> str:
    """Untrusted text as one line of inert Markdown (no links, HTML, emphasis or cell breaks)."""
    return _MD_SPECIAL.sub(r"\\\1", short(str(value), limit)).replace("&", "&amp;")


def md_code(value: str) -> str:
    """``value`` as an inline code span, whatever backticks it contains."""
    text = " ".join(clean(value).split()).replace("|", "\\|")
    run = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (run + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or run else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_block(text: str, indent: str = "") -> list[str]:
    """``text`` as a fenced code block (fence longer than any backtick run inside)."""
    run = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, run + 1)
    return [indent + fence] + [indent + line for line in text.splitlines()] + [indent + fence]


def _header(report: GradeReport) -> list[str]:
    emoji, word = RUN_BADGES.get(report.status, ("", report.status))
    who = report.candidate.name or report.candidate.repo
    title = "Practice grade" if is_practice(report) else "Take-home grade"
    lines = [f"# {title}: {md_text(who, 120)}", ""]
    if is_practice(report):
        lines += [f"> **{md_text(PRACTICE_NOTE, 300)}**", ""]
    lines += [
             f"**{emoji} {word}** · score **{pts(report.score, report.max_score)}**", "",
             "| | |", "|---|---|"]
    lines += [f"| {label} | {md_text(value, 200)} |" for label, value in header_facts(report)]
    return lines + [""]


def _what_went_wrong(report: GradeReport) -> list[str]:
    if report.status == "completed":
        return []
    lines = ["## ⚠️ What went wrong", "", f"> **{md_text(what_went_wrong(report), 600)}**", ""]
    lines += md_block(clean(report.error or "(no error text was recorded)")[-4000:])
    return lines + [""]


def _where_points_went(report: GradeReport) -> list[str]:
    lost = lost_points(report)
    if not lost:
        return []
    lines = ["## Where the points went", "", "| Lost | Item | Reason | Ask in the interview |", "|---:|---|---|---|"]
    for i in lost:
        lines.append(f"| -{num(i.max_points - i.points)} | {md_text(i.title, 80)} | {md_text(short(i.message, 200), 220)} "
                     f"| {md_text(question_for(i, report), 400)} |")
    return lines + [""]


def _section_table(report: GradeReport) -> list[str]:
    if not report.sections:
        return ["## Score by section", "", "_No section was scored._", ""]
    lines = ["## Score by section", "", "| Section | Points | Max | |", "|---|---:|---:|---|"]
    for s in report.sections:
        bad = [i for i in s.items if i.status != "pass"]
        mark = "✅" if not bad else ("❌" if s.points <= 0 else "🟡")
        lines.append(f"| {md_text(s.title, 80)} | {num(s.points)} | {num(s.max_points)} | {mark} |")
    lines.append(f"| **Total** | **{num(report.score)}** | **{num(report.max_score)}** | |")
    return lines + [""]


def _item(item: ItemResult) -> list[str]:
    emoji, word = ITEM_BADGES.get(item.status, ("", item.status))
    lines = [f"- {emoji} **{word}** · {pts(item.points, item.max_points)} · "
             f"**{md_text(item.title, 160)}**  ",
             f"  {md_text(item.message, 500)}"]
    view = evidence_view(item.evidence)
    if view.inline:
        lines[-1] += "  "
        lines.append("  " + " · ".join(md_code(f"{k}={v}") for k, v in view.inline))
    for key, block in view.blocks:
        lines += ["", f"  {md_text(key, 80)}:", ""] + md_block(block, indent="  ")
    return lines


def _section(section: SectionResult) -> list[str]:
    lines = [f"### {md_text(section.title, 120)} — {pts(section.points, section.max_points)}", ""]
    for item in section.items:
        lines += _item(item)
    return lines + [""]


def _drift(report: GradeReport) -> list[str]:
    table = drift_table(report)
    if table is None:
        return []
    intro, rows = table
    lines = [md_text(intro, 600), "", "| " + " | ".join(DRIFT_TABLE_HEADERS) + " |",
             "|" + "---|" * len(DRIFT_TABLE_HEADERS)]
    lines += ["| " + " | ".join(md_text(c, 300) for c in row) + " |" for row in rows]
    return lines + [""]


def _latency(report: GradeReport) -> list[str]:
    lat = report.latency
    if lat is None or lat.p99_ms is None:
        return []
    keys = [("rate_rps", "target rate (req/s)"), ("achieved_rps", "achieved (req/s)"),
            ("p50_ms", "p50 (ms)"), ("p95_ms", "p95 (ms)"), ("p99_ms", "p99 (ms)"),
            ("p999_ms", "p99.9 (ms)"), ("max_ms", "max (ms)"), ("slo_ms", "SLO p99 (ms)"),
            ("error_rate", "error rate"), ("count", "requests")]
    cells = [(label, getattr(lat, k)) for k, label in keys if getattr(lat, k) is not None]
    lines = ["### Load test", "", "| " + " | ".join(lbl for lbl, _ in cells) + " |",
             "|" + "---:|" * len(cells), "| " + " | ".join(num(v, 3) for _, v in cells) + " |", ""]
    if report.machine is not None and report.machine.concurrent_gradings > 1:
        lines += [f"> Measured while {report.machine.concurrent_gradings} gradings shared this "
                  f"{report.machine.cpus or '?'}-CPU machine (takehome batch --jobs).", ""]
    if lat.saturated:
        lines += [f"> The load generator could not keep its schedule "
                  f"({md_text(lat.saturation_reason or 'saturated', 200)}): latency is inconclusive.", ""]
    return lines


def _phases(report: GradeReport) -> list[str]:
    if not report.phases:
        return []
    lines = ["## Lifecycle phases", "", "| Phase | Status | Duration | Message |", "|---|---|---:|---|"]
    for p in report.phases:
        emoji, word = PHASE_BADGES.get(p.status, ("", p.status))
        msg = p.message
        if p.error:
            msg = f"{msg} — {p.error}" if msg else p.error
        lines.append(f"| {md_text(p.name, 60)} | {emoji} {word} | {duration(p.duration_s)} | "
                     f"{md_text(msg or '', 300)} |")
    return lines + [""]


def _followups(report: GradeReport) -> list[str]:
    questions = report.followups or followup_questions(report)
    if not questions:
        return []
    lines = ["## Interview follow-ups", ""]
    lines += [f"{n}. {md_text(q, 600)}" for n, q in enumerate(questions, 1)]
    return lines + [""]


def _footer(report: GradeReport) -> list[str]:
    bits = [f"report schema {md_text(report.schema_version, 20)}"]
    if report.grader_version:
        bits.append(f"grader {md_text(report.grader_version, 40)}")
    if report.config_digest:
        bits.append(f"config {md_text(report.config_digest, 80)}")
    if report.seed:
        bits.append(f"seed {md_text(report.seed.source, 20)} {md_text(report.seed.fingerprint, 12)}")
    return ["---", "<sub>" + " · ".join(bits) + "</sub>", ""]


def render_markdown(report: GradeReport) -> str:
    """The scorecard: header, what went wrong, section table, items with evidence, load test,
    phases and follow-up questions (``report.followups``, or computed when empty)."""
    lines = _header(report) + _what_went_wrong(report) + _where_points_went(report) + _section_table(report)
    if report.sections:
        lines += ["## Details", ""]
        for section in report.sections:
            lines += _section(section)
            if section.id == "latency":
                lines += _latency(report)
            if section.id == "drift":
                lines += _drift(report)
    elif report.latency:
        lines += _latency(report)
    lines += _phases(report) + _followups(report) + _footer(report)
    text = "\n".join(lines)
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS] + "\n\n_[scorecard clipped: see report.json for everything]_\n"
    return text
