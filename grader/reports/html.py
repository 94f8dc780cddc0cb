"""The scorecard as one self-contained HTML file (``report.html``).

Everything the Markdown scorecard has, plus the plots from ``plots.py`` as inline SVG. No
external assets and no JavaScript (long evidence folds with ``<details>``). Every string that
comes from the report is HTML-escaped: messages and evidence are candidate-controlled. Plot SVG
is produced by matplotlib, which escapes text it draws; it is the only unescaped markup inserted.
"""

from __future__ import annotations

import html
import json
import logging
from typing import Callable

from grader.reports import plots
from grader.reports._format import (DRIFT_TABLE_HEADERS, ITEM_BADGES, PHASE_BADGES, RUN_BADGES, clean,
                                    PRACTICE_NOTE, clip, drift_table, duration, evidence_view, human, is_practice,
                                    record_table, fraction_class, header_facts, lost_points, num, pts, short,
                                    what_went_wrong)
from grader.reports.followups import followup_questions, question_for
from grader.results import GradeReport, ItemResult, SectionResult

log = logging.getLogger(__name__)

_CSS = """
:root{--ok:#1e8449;--warn:#b9770e;--bad:#c0392b;--muted:#6b7280;--line:#e5e7eb;--bg:#f8fafc}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#111827;
 margin:0;background:var(--bg)}
main{max-width:1080px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:0 0 8px}
h3{font-size:15px;margin:0;display:flex;justify-content:space-between;gap:12px}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:16px;margin:12px 0}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:12px 0 0}
.facts dt{color:var(--muted)}.facts dd{margin:0;word-break:break-all}
.score{font-size:28px;font-weight:700}
.bar{height:10px;background:var(--line);border-radius:5px;overflow:hidden;margin:6px 0}
.bar>span{display:block;height:100%;background:var(--ok)}
.bar>span.warn{background:var(--warn)}.bar>span.bad{background:var(--bad)}
.lost td:first-child{white-space:nowrap;font-weight:600;color:var(--bad)}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;
 color:#fff;background:var(--muted);white-space:nowrap}
.s-pass,.s-ok,.s-completed{background:var(--ok)}.s-partial{background:var(--warn)}
.s-fail,.s-failed,.s-broken_submission,.s-timeout{background:var(--bad)}
.s-error,.s-grader_error,.s-interrupted{background:#7d3c98}
.alert{border-left:5px solid var(--bad);background:#fdecea}
.practice{border-left:5px solid var(--warn);background:#fef5e7;padding:6px 10px;margin:6px 0;font-weight:600}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:12px;color:var(--muted);font-weight:600}
td.num,th.num{text-align:right;white-space:nowrap}
table.items{table-layout:fixed}.items th:first-child{width:120px}.items th:last-child{width:90px}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
code{background:#f1f5f9;padding:0 4px;border-radius:4px;word-break:break-all}
pre{background:#0f172a;color:#e2e8f0;padding:10px;border-radius:6px;overflow:auto;
 max-height:360px;white-space:pre-wrap;word-break:break-all;margin:6px 0}
.ev{margin-top:4px;display:flex;flex-wrap:wrap;gap:4px 10px;font-size:12px}
.kv{background:#f1f5f9;padding:1px 6px;border-radius:4px;word-break:break-word}.kv .k{color:var(--muted)}
.scroll{overflow-x:auto;max-height:360px;overflow-y:auto}
table.records{font-size:12px;margin:4px 0}table.records td,table.records th{padding:2px 6px;word-break:break-word}
table.drift{font-size:13px;margin:6px 0}
details.raw pre{max-height:240px}
details summary{cursor:pointer;color:var(--muted);font-size:12px}
figure{margin:12px 0 0}figure svg{max-width:100%;height:auto}
figcaption{color:var(--muted);font-size:12px}
.muted{color:var(--muted)}ol li{margin:4px 0}
footer{color:var(--muted);font-size:12px;margin-top:24px}
"""

_PLOTS: dict[str, tuple[str, Callable[[GradeReport], str | None]]] = {
    "latency": ("Latency by percentile; x axis in nines (log of 1/(1-p)).",
                lambda r: plots.latency_spectrum_svg(r.latency)),
    "drift": ("Drift alarm over the traffic phases; the x axis counts rows sent.",
              lambda r: plots.drift_timeline_svg(r.timeline)),
    "rollback": ("Requests while the rollback command ran, by the model version that answered.",
                 lambda r: plots.rollback_timeline_svg(r.timeline)),
}


def e(value: object) -> str:
    """HTML-escaped text (control characters and terminal escapes removed)."""
    return html.escape(clean(value), quote=True)


def _badge(status: str, word: str) -> str:
    return f'<span class="badge s-{e(status)}">{e(word)}</span>'


def _header(report: GradeReport) -> str:
    word = RUN_BADGES.get(report.status, ("", report.status))[1]
    pct = 100.0 * report.score / report.max_score if report.max_score else 0.0
    facts = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in header_facts(report))
    who = report.candidate.name or report.candidate.repo
    practice = f'<p class="practice">{e(PRACTICE_NOTE)}</p>' if is_practice(report) else ""
    title = "Practice grade" if practice else "Take-home grade"
    return (f'<header class="card"><h1>{title}: {e(short(who, 120))}</h1>'
            f"{practice}"
            f'<div>{_badge(report.status, word)}</div>'
            f'<div class="score">{e(pts(report.score, report.max_score))}'
            f' <span class="muted">({pct:.0f}%)</span></div>'
            f'<div class="bar"><span class="{fraction_class(report.score, report.max_score)}"'
            f' style="width:{max(0.0, min(100.0, pct)):.1f}%"></span></div>'
            f'<dl class="facts">{facts}</dl></header>')


def _alert(report: GradeReport) -> str:
    if report.status == "completed":
        return ""
    error = clean(report.error or "(no error text was recorded)")[-8000:]
    return (f'<section class="card alert"><h2>What went wrong</h2>'
            f"<p><strong>{e(what_went_wrong(report))}</strong></p><pre>{e(error)}</pre></section>")


def _lost(report: GradeReport) -> str:
    """Where the points went: each item that lost points, the loss, the reason and the question to ask."""
    lost = lost_points(report)
    if not lost:
        return ""
    rows = "".join(f'<tr><td>-{e(num(i.max_points - i.points))}</td><td><a href="#s-{e(i.section)}">'
                   f"{e(i.title)}</a><br><span class=\"muted\">{e(short(i.message, 240))}</span></td>"
                   f"<td>{e(question_for(i, report))}</td></tr>" for i in lost)
    return ('<section class="card"><h2>Where the points went</h2><table class="lost"><tr><th>Lost</th>'
            "<th>Item and reason</th><th>Ask in the interview</th></tr>" + rows + "</table></section>")


def _summary_table(report: GradeReport) -> str:
    if not report.sections:
        return '<section class="card"><h2>Score by section</h2><p>No section was scored.</p></section>'
    rows = []
    for s in report.sections:
        pct = 100.0 * s.points / s.max_points if s.max_points else 0.0
        rows.append(f'<tr><td><a href="#s-{e(s.id)}">{e(s.title)}</a></td>'
                    f'<td class="num">{e(num(s.points))}</td><td class="num">{e(num(s.max_points))}</td>'
                    f'<td style="width:30%"><div class="bar"><span class="{fraction_class(s.points, s.max_points)}"'
                    f' style="width:{pct:.1f}%"></span></div></td></tr>')
    rows.append(f'<tr><th>Total</th><th class="num">{e(num(report.score))}</th>'
                f'<th class="num">{e(num(report.max_score))}</th><th></th></tr>')
    return ('<section class="card"><h2>Score by section</h2><table><tr><th>Section</th>'
            '<th class="num">Points</th><th class="num">Max</th><th></th></tr>'
            + "".join(rows) + "</table></section>")


def _evidence(item: ItemResult) -> str:
    """Evidence for people (labels, units, tables of records), the raw JSON one click away."""
    view = evidence_view(item.evidence)
    out = ""
    if view.inline:
        out += '<div class="ev">' + "".join(
            f'<span class="kv"><span class="k">{e(label)}</span> {e(value)}</span>'
            for label, value in (human(k, v) for k, v in view.inline)) + "</div>"
    for key, block in view.blocks:
        label = human(key, "")[0]
        if key in view.records:
            columns, rows = record_table(view.records[key])
            head = "".join(f"<th>{e(c)}</th>" for c in columns)
            body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
            out += (f'<details open><summary>{e(label)} ({len(view.records[key])})</summary>'
                    f'<div class="scroll"><table class="records"><tr>{head}</tr>{body}</table></div></details>')
        else:
            out += f"<details open><summary>{e(label)}</summary><pre>{e(block)}</pre></details>"
    if item.evidence:
        raw = json.dumps(item.evidence, indent=2, ensure_ascii=False, default=str)
        out += f'<details class="raw"><summary>raw evidence (JSON)</summary><pre>{e(clip(raw, 20000))}</pre></details>'
    return out


def _item_row(item: ItemResult) -> str:
    word = ITEM_BADGES.get(item.status, ("", item.status))[1]
    return (f'<tr><td>{_badge(item.status, word)}</td>'
            f"<td><strong>{e(item.title)}</strong><div>{e(item.message)}</div>{_evidence(item)}</td>"
            f'<td class="num">{e(pts(item.points, item.max_points))}</td></tr>')


def _plot(report: GradeReport, key: str) -> str:
    """The plot for ``key`` as a <figure>, "" when there is no data; a plot error is shown, not raised."""
    caption, draw = _PLOTS[key]
    try:
        svg = draw(report)
    except Exception as exc:  # a broken plot must not cost the report
        log.warning("plot %s failed: %s", key, exc, exc_info=True)
        return f'<p class="muted">Plot unavailable ({e(type(exc).__name__)}: {e(short(str(exc), 200))}).</p>'
    return f"<figure>{svg}<figcaption>{e(caption)}</figcaption></figure>" if svg else ""


def _drift_table(report: GradeReport) -> str:
    table = drift_table(report)
    if table is None:
        return ""
    intro, rows = table
    head = "".join(f"<th>{e(h)}</th>" for h in DRIFT_TABLE_HEADERS)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<p class="muted">{e(intro)}</p><table class="drift"><tr>{head}</tr>{body}</table>'


def _section(report: GradeReport, section: SectionResult) -> str:
    rows = "".join(_item_row(i) for i in section.items)
    figure = _plot(report, section.id) if section.id in _PLOTS else ""
    if section.id == "drift":
        figure = _drift_table(report) + figure
    return (f'<section class="card" id="s-{e(section.id)}"><h3><span>{e(section.title)}</span>'
            f"<span>{e(pts(section.points, section.max_points))}</span></h3>"
            '<table class="items"><tr><th>Status</th><th>Item</th><th class="num">Points</th></tr>'
            f"{rows}</table>"
            f"{figure}</section>")


def _orphan_plots(report: GradeReport) -> str:
    """Plots whose section was not scored (e.g. a run that crashed after the load test)."""
    scored = {s.id for s in report.sections}
    figures = "".join(_plot(report, k) for k in _PLOTS if k not in scored)
    return f'<section class="card"><h2>Measurements</h2>{figures}</section>' if figures else ""


def _phases(report: GradeReport) -> str:
    if not report.phases:
        return ""
    rows = []
    for p in report.phases:
        word = PHASE_BADGES.get(p.status, ("", p.status))[1]
        err = f"<pre>{e(clean(p.error)[-3000:])}</pre>" if p.error else ""
        rows.append(f"<tr><td>{e(p.name)}</td><td>{_badge(p.status, word)}</td>"
                    f'<td class="num">{e(duration(p.duration_s))}</td><td>{e(p.message)}{err}</td></tr>')
    return ('<section class="card"><h2>Lifecycle phases</h2><table><tr><th>Phase</th><th>Status</th>'
            '<th class="num">Duration</th><th>Message</th></tr>' + "".join(rows) + "</table></section>")


def _followups(report: GradeReport) -> str:
    questions = report.followups or followup_questions(report)
    if not questions:
        return ""
    items = "".join(f"<li>{e(q)}</li>" for q in questions)
    return f'<section class="card"><h2>Interview follow-ups</h2><ol>{items}</ol></section>'


def render_html(report: GradeReport) -> str:
    """The whole scorecard as one HTML document (inline CSS and SVG, no scripts)."""
    footer = f"report schema {report.schema_version}"
    if report.grader_version:
        footer += f" · grader {report.grader_version}"
    if report.config_digest:
        footer += f" · config {report.config_digest}"
    if report.seed:
        footer += f" · seed {report.seed.source} {report.seed.fingerprint}"
    body = (_header(report) + _alert(report) + _lost(report) + _summary_table(report)
            + "".join(_section(report, s) for s in report.sections) + _orphan_plots(report)
            + _phases(report) + _followups(report))
    title = f"Grade: {short(report.candidate.name or report.candidate.repo, 80)} — {num(report.score)}" \
            f" / {num(report.max_score)}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{e(title)}</title><style>{_CSS}</style></head><body><main>{body}"
            f"<footer>{e(footer)}</footer></main></body></html>\n")
