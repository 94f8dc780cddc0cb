"""The cohort view: ``cohort.csv`` and a sortable ``cohort.html``, one row per candidate, each
linking to that candidate's own report; and ``compare``, two reports side by side."""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path
from typing import Any

from grader.batch.state import BatchState, Row


def _sections() -> list[str]:
    from grader.checks.registry import SPECS

    return list(dict.fromkeys(spec.section for spec in SPECS))


def _report(out_dir: Path, row: Row) -> dict[str, Any] | None:
    if not row.report_dir:
        return None
    try:
        data = json.loads((out_dir / row.report_dir / "report.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _item(report: dict[str, Any], item_id: str) -> dict[str, Any] | None:
    section, _, item = item_id.partition(".")
    for s in report.get("sections", []):
        if s.get("id") == section:
            for i in s.get("items", []):
                if i.get("id") in (item, item_id):
                    return i
    return None


def cohort_rows(out_dir: Path, state: BatchState) -> list[dict[str, Any]]:
    """One flat dict per candidate: what the CSV holds and the HTML shows."""
    rows = []
    for row in state.rows():
        report = _report(out_dir, row) or {}
        sections = {s.get("id"): s for s in report.get("sections", [])}
        out: dict[str, Any] = {"name": row.name, "status": row.status or row.state,
                               "total": row.score, "max": row.max_score}
        for sec in _sections():
            out[sec] = sections[sec].get("points") if sec in sections else None
        out["p99_ms"] = (report.get("latency") or {}).get("p99_ms")
        detects = _item(report, "drift.detects_scenarios")
        scen = ((detects or {}).get("evidence") or {}).get("scenarios") or []
        # Rows until the alarm for a detected scenario; "missed" also for an alarm that never
        # cleared before it (it does not count as detection either).
        out["detection_delay_rows"] = "; ".join(
            f"{str(sc.get('scenario')).split(':')[0]} {sc.get('delay_rows') if sc.get('detected') else 'missed'}"
            for sc in scen)
        restores = _item(report, "rollback.restores_v1")
        out["rollback_failed_requests"] = ((restores or {}).get("evidence") or {}).get("failed_requests")
        out["grading_s"] = row.wall_s
        out["commit"] = (row.commit_id or "")[:12]
        out["attempts"] = row.attempts
        out["message"] = row.message or ""
        out["report"] = f"{row.report_dir}/report.html" if row.report_dir else ""
        rows.append(out)
    return rows


def render_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


_SORT_JS = """
document.querySelectorAll('th').forEach((th, col) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0];
  const asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
  const key = tr => { const v = tr.children[col].dataset.v; const n = parseFloat(v);
                      return isNaN(n) ? v : n; };
  [...body.rows].sort((a, b) => { const x = key(a), y = key(b);
    return (x > y ? 1 : x < y ? -1 : 0) * (asc ? 1 : -1); }).forEach(r => body.appendChild(r));
}));
"""


def render_html(rows: list[dict[str, Any]], title: str) -> str:
    """A self-contained page: the table sorts by any column on a click (no external scripts)."""
    cols = [c for c in (rows[0] if rows else {}) if c != "report"]
    head = "".join(f"<th title='click to sort'>{html.escape(c.replace('_', ' '))}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r[c]
            text = "" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))
            if c == "name" and r["report"]:
                text_html = f"<a href='{html.escape(r['report'])}'>{html.escape(text)}</a>"
            else:
                text_html = html.escape(text)
            cls = (f" class='st-{html.escape(str(v))}'" if c == "status" else
                   " class='wide'" if c in ("name", "detection_delay_rows", "commit") else "")
            sort_v = "" if v is None else str(v)
            cells.append(f"<td data-v='{html.escape(sort_v)}'{cls}>{text_html}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5rem; color: #1b1f24; }}
table {{ border-collapse: collapse; }} th, td {{ padding: .3rem .6rem; border-bottom: 1px solid #ddd; text-align: left; }}
th {{ cursor: pointer; background: #f3f4f6; position: sticky; top: 0; }}
td.wide {{ white-space: nowrap; }}
td.st-completed {{ color: #116329; }} td.st-broken_submission, td.st-crashed, td.st-timed_out {{ color: #b42318; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{len(rows)} candidates. Click a column to sort; a name opens that candidate's report.</p>
<table><thead><tr>{head}</tr></thead><tbody>
{chr(10).join(body)}
</tbody></table>
<script>{_SORT_JS}</script>
</body></html>
"""


def write_cohort(out_dir: Path, state: BatchState) -> tuple[Path, Path]:
    """Write cohort.csv and cohort.html into ``out_dir`` (atomically) and return their paths."""
    rows = cohort_rows(out_dir, state)
    paths = (out_dir / "cohort.csv", out_dir / "cohort.html")
    for path, text in zip(paths, (render_csv(rows), render_html(rows, f"Cohort: {out_dir.name}"))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return paths


def load_report(path: Path) -> dict[str, Any]:
    """A report.json, given the file or the folder holding it."""
    file = path / "report.json" if path.is_dir() else path
    data = json.loads(file.read_text())
    if not isinstance(data, dict) or "sections" not in data:
        raise ValueError(f"{file} is not a grading report")
    return data


def compare_table(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Markdown: the two candidates' sections and items side by side, with what differs marked."""
    name_a = (a.get("candidate") or {}).get("name") or "A"
    name_b = (b.get("candidate") or {}).get("name") or "B"
    lines = [f"| | {name_a} | {name_b} |", "|---|---:|---:|",
             f"| **total** | **{a.get('score', 0):g}** / {a.get('max_score', 0):g} | "
             f"**{b.get('score', 0):g}** / {b.get('max_score', 0):g} |"]
    sec_b = {s["id"]: s for s in b.get("sections", [])}
    for s in a.get("sections", []):
        t = sec_b.get(s["id"], {})
        mark = "" if s.get("points") == t.get("points") else " ≠"
        lines.append(f"| **{s['id']}**{mark} | {s.get('points', 0):g} / {s.get('max_points', 0):g} | "
                     f"{t.get('points', 0):g} / {t.get('max_points', 0):g} |")
        items_b = {i["id"]: i for i in t.get("items", [])}
        for i in s.get("items", []):
            j = items_b.get(i["id"], {})
            if i.get("points") != j.get("points"):
                lines.append(f"| &nbsp;&nbsp;{i['id']} | {i.get('points', 0):g}: {_cell(i.get('message'))} | "
                             f"{j.get('points', 0):g}: {_cell(j.get('message'))} |")
    return "\n".join(lines) + "\n"


def _cell(text: object) -> str:
    return str(text or "").replace("|", "\\|").replace("\n", " ")[:160]
