"""Helpers shared by the renderers: numbers, statuses, clipping, and evidence layout.

Everything from the candidate (messages, evidence, log excerpts) is untrusted text. These helpers
only *shape* it (clip, strip terminal escapes and control characters); each renderer still escapes
it for its own format (HTML entities, XML, Markdown table cells).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from grader.results import GradeReport, ItemResult

#: Status word and emoji per item status, used by Markdown and HTML alike.
ITEM_BADGES: dict[str, tuple[str, str]] = {
    "pass": ("✅", "pass"),
    "partial": ("🟡", "partial"),
    "fail": ("❌", "fail"),
    "skipped": ("⏭️", "skipped"),
    "error": ("💥", "error"),
    "timeout": ("⏱️", "timed out"),
    "inconclusive": ("❔", "inconclusive"),
}
PHASE_BADGES: dict[str, tuple[str, str]] = {
    "ok": ("✅", "ok"),
    "failed": ("❌", "failed"),
    "timeout": ("⏱️", "timeout"),
    "skipped": ("⏭️", "skipped"),
    "interrupted": ("⛔", "interrupted"),
    "error": ("💥", "error"),
}
RUN_BADGES: dict[str, tuple[str, str]] = {
    "completed": ("✅", "completed"),
    "broken_submission": ("❌", "broken submission"),
    "grader_error": ("💥", "grader error"),
    "interrupted": ("⛔", "interrupted"),
}

#: Evidence values longer than this (or multi-line) are shown as a block, not inline.
INLINE_MAX = 80
#: Blocks are clipped to this many lines and characters.
BLOCK_MAX_LINES = 30
BLOCK_MAX_CHARS = 3000
#: Evidence keys that hold bulk data for plots, not for reading.
BULK_KEYS = frozenset({"spectrum", "histogram", "samples", "timeline", "requests_log"})

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
# Characters XML 1.0 forbids (everything below 0x20 but tab, LF, CR), plus lone surrogates and
# the two non-characters; also used for HTML/Markdown so all formats show the same text.
_BAD_CHARS_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def clean(text: Any) -> str:
    """``text`` as a string without terminal escape sequences or control characters."""
    s = text if isinstance(text, str) else str(text)
    return _BAD_CHARS_RE.sub("", _ANSI_RE.sub("", s))


def clip(text: str, max_chars: int = BLOCK_MAX_CHARS, max_lines: int = BLOCK_MAX_LINES) -> str:
    """Keep the *end* of long text (log tails matter most) and say how much was cut."""
    lines = text.splitlines()
    cut_lines = max(0, len(lines) - max_lines)
    if cut_lines:
        lines = lines[-max_lines:]
    out = "\n".join(lines)
    cut_chars = max(0, len(out) - max_chars)
    if cut_chars:
        out = out[-max_chars:]
    if cut_lines or cut_chars:
        what = f"{cut_lines} line(s)" if cut_lines else f"{cut_chars} character(s)"
        out = f"[… {what} clipped …]\n{out}"
    return out


def short(text: str, limit: int = 300) -> str:
    """One-line version of ``text``, clipped at ``limit`` characters."""
    one = " ".join(clean(text).split())
    return one if len(one) <= limit else one[: limit - 1] + "…"


def num(value: Any, digits: int = 2) -> str:
    """A compact number: ``12``, ``12.5``, ``0.0012``; non-numbers as text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return clean(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if float(value).is_integer():
        return str(int(value))
    if abs(value) >= 1:
        return f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return f"{value:.{digits + 1}g}"


def pts(points: float, max_points: float) -> str:
    """``"7.5 / 10"``."""
    return f"{num(points)} / {num(max_points)}"


def duration(seconds: float | None) -> str:
    """``"1m 02s"``, ``"3.4s"`` or ``"–"``."""
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def item_key(item: ItemResult) -> str:
    """The item's id without its section prefix (``drift.attribution`` -> ``attribution``)."""
    prefix = item.section + "."
    return item.id[len(prefix):] if item.id.startswith(prefix) else item.id


@dataclass
class EvidenceView:
    """Evidence split for display: short scalars inline, long values as clipped blocks."""

    inline: list[tuple[str, str]]
    blocks: list[tuple[str, str]]
    #: blocks that are lists of records (cases, scenarios, replayed requests), for a table
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _inline_text(value: Any) -> str | None:
    """The value as one short line, or None when it needs a block."""
    if isinstance(value, str):
        s = clean(value)
        return s if "\n" not in s and len(s) <= INLINE_MAX else None
    if _is_scalar(value):
        return "null" if value is None else (str(value).lower() if isinstance(value, bool) else num(value, 4))
    if isinstance(value, (list, tuple)) and all(_is_scalar(v) for v in value):
        s = "[" + ", ".join(_inline_text(v) or "…" for v in value) + "]"
        return s if len(s) <= INLINE_MAX else None
    if isinstance(value, dict) and all(_is_scalar(v) or isinstance(v, (list, tuple)) and
                                       all(_is_scalar(x) for x in v) for v in value.values()):
        s = "{" + ", ".join(f"{clean(k)}: {_inline_text(v) or '…'}" for k, v in value.items()) + "}"
        return s if len(s) <= INLINE_MAX else None
    return None


def _compact(value: Any) -> str:
    """One line for any value (used for rows of a list of records)."""
    text = _inline_text(value)
    if text is not None:
        return text
    if isinstance(value, dict):
        return ", ".join(f"{clean(k)}={_compact(v)}" for k, v in value.items())
    try:
        return clean(json.dumps(value, default=str, ensure_ascii=False))
    except (TypeError, ValueError):
        return clean(repr(value))


def _block_text(value: Any) -> str:
    if isinstance(value, str):
        return clip(clean(value))
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) for v in value):
        # A list of records (cases, scenarios, failed requests): one line per record.
        return clip("\n".join(short(_compact(v), 400) for v in value))
    try:
        dumped = json.dumps(value, indent=2, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        dumped = repr(value)
    return clip(clean(dumped))


def flatten(evidence: dict[str, Any], depth: int = 2, prefix: str = "") -> dict[str, Any]:
    """Nested dicts of evidence as dotted keys (``deploy.exit_code``), ``depth`` levels deep.

    A nested dict whose values are all short scalars stays whole (it reads well inline).
    """
    out: dict[str, Any] = {}
    for key, value in evidence.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and depth > 0 and _inline_text(value) is None:
            out.update(flatten(value, depth - 1, name + "."))
        else:
            out[name] = value
    return out


def evidence_view(evidence: dict[str, Any]) -> EvidenceView:
    """Split ``evidence`` for display; bulk plot data and empty strings are left out."""
    inline: list[tuple[str, str]] = []
    blocks: list[tuple[str, str]] = []
    records: dict[str, list[dict[str, Any]]] = {}
    for key, value in flatten(evidence).items():
        if key.rsplit(".", 1)[-1] in BULK_KEYS or value == "":
            continue
        text = _inline_text(value)
        if text is not None:
            inline.append((clean(key), text))
        else:
            blocks.append((clean(key), _block_text(value)))
            if isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) for v in value):
                records[clean(key)] = list(value)
    return EvidenceView(inline, blocks, records)


#: Key suffixes that carry a unit: shown as the value's unit, not in the label.
UNITS: dict[str, str] = {"_ms": "ms", "_s": "s", "_rows": "rows", "_mb": "MB", "_bytes": "bytes",
                         "_rps": "req/s", "_kib": "KiB"}


def _label_and_unit(key: str) -> tuple[str, str]:
    """A dotted evidence key as a label for people and the unit its suffix names ("" for none)."""
    unit = ""
    last = key.rsplit(".", 1)[-1]
    for suffix, name in UNITS.items():
        if last.endswith(suffix) and last != suffix.lstrip("_"):
            unit, key = name, key[: -len(suffix)]
            break
    return key.replace(".", " ").replace("_", " "), unit


def human(key: str, text: str) -> tuple[str, str]:
    """A dotted evidence key and its value as a label and a value with its unit, for people:
    ``("deploy.duration_s", "0.2")`` -> ``("deploy duration", "0.2 s")``."""
    label, unit = _label_and_unit(key)
    if unit and text not in ("null", "") and not text.startswith(("[", "{")):
        text = f"{text} {unit}"
    return label, text


def record_table(records: list[dict[str, Any]], max_rows: int = 60) -> tuple[list[str], list[list[str]]]:
    """A list of records as (columns, rows of cell text): the union of their keys, in first-seen order."""
    columns: list[str] = []
    for rec in records[:max_rows]:
        columns.extend(k for k in rec if k not in columns)
    rows = [[short(_compact(rec[c]), 200) if c in rec else "" for c in columns] for rec in records[:max_rows]]
    headers = [f"{label} ({unit})" if unit else label for label, unit in map(_label_and_unit, columns)]
    return headers, rows


def evidence_text(evidence: dict[str, Any], max_chars: int = 1500) -> str:
    """Evidence as plain text (for JUnit bodies and Gradescope outputs)."""
    view = evidence_view(evidence)
    parts = [f"{k}: {v}" for k, v in view.inline]
    parts += [f"{k}:\n{v}" for k, v in view.blocks]
    return clip("\n".join(parts), max_chars=max_chars, max_lines=60)


def _finite(*values: Any) -> float | None:
    for value in values:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def latency_p99(report: GradeReport) -> float | None:
    """The latency phase's p99 in ms, if measured."""
    return report.latency.p99_ms if report.latency is not None else None


def header_facts(report: GradeReport) -> list[tuple[str, str]]:
    """The scorecard header as (label, value) pairs, in display order."""
    cand = report.candidate
    facts = [("Candidate", clean(cand.name or "–")), ("Repository", clean(cand.repo)),
             ("Commit", clean(cand.commit or "–")), ("Runtime", clean(report.runtime)),
             ("Status", RUN_BADGES.get(report.status, ("", report.status))[1]),
             ("Score", pts(report.score, report.max_score)), ("Run id", clean(report.run_id)),
             ("Duration", duration(report.duration_s)), ("Started", clean(report.started_at))]
    if cand.framework or cand.flavor:
        facts.insert(4, ("Framework", clean(" / ".join(x for x in (cand.framework, cand.flavor) if x))))
    if report.seed:
        facts.insert(facts.index(("Run id", clean(report.run_id))), ("Scenario seed", seed_summary(report)))
    iso = isolation_summary(report)
    if iso:
        facts.append(("Isolation", iso))
    hits = (report.isolation or {}).get("limits_hit") or []
    if hits:
        facts.append(("Limits hit", clean("; ".join(str(h) for h in hits))))
    notes = (report.isolation or {}).get("notes") or []
    if notes:
        facts.append(("Isolation notes", clean("; ".join(str(n) for n in notes))))
    if report.grader_version:
        facts.append(("Grader", clean(report.grader_version)))
    return facts


PRACTICE_NOTE = ("PRACTICE grading: the kit's public built-in scenarios, which candidates can know. A hiring "
                 "team's grade uses its own secret seed (TAKEHOME_SCENARIO_SEED).")


def is_practice(report: GradeReport) -> bool:
    """A grading on the public built-in seed: a practice run, not a grade to hire on."""
    return report.seed is not None and report.seed.source == "built-in default"


def seed_summary(report: GradeReport) -> str:
    """Where the scenario seed came from and its fingerprint (never the seed), with what that means:
    the built-in seed is public, so a grading on it is a practice grading."""
    seed = report.seed
    if seed is None:
        return "not recorded"
    from grader.config import SEED_ENV  # lazy: the renderers need no config otherwise

    meaning = {"environment": f"from ${SEED_ENV}", "config": "from the grader config",
               "built-in default": "the public built-in seed: candidates can know these scenarios"}
    return f"{seed.source}, fingerprint {seed.fingerprint} ({meaning.get(seed.source, seed.source)})"


def isolation_summary(report: GradeReport) -> str:
    """One line: how the candidate's code was isolated (and a warning when it was not)."""
    iso = report.isolation or {}
    kind = iso.get("sandbox")
    if not kind:
        return ""
    if kind == "none":
        return "⚠️ NOT sandboxed (--unsafe-local): " + clean(str(iso.get("warning", "")))
    if kind == "bubblewrap":
        usage = iso.get("usage") or {}
        bits = ["bubblewrap sandbox (own mount, PID and network namespaces"
                + (f", uid {iso['uid']}" if iso.get("uid") else "") + ")"]
        if usage.get("memory_peak_mb") is not None:
            bits.append(f"peak {usage['memory_peak_mb']} of {usage.get('memory_limit_mb')} MB, "
                        f"{usage.get('pids_peak')} of {usage.get('max_pids')} processes")
        elif usage.get("why_not"):
            bits.append("no aggregate limits: " + clean(str(usage["why_not"])))
        if iso.get("scope"):
            bits.append(clean(str(iso["scope"])))
        if iso.get("cluster"):  # first: the server version is what a reader of a kind report needs most
            bits.insert(0, clean(str(iso["cluster"])))
        return "; ".join(bits)
    return clean(str(iso.get("detail") or kind))


def lost_points(report: GradeReport) -> list[ItemResult]:
    """Every item that lost points, the largest loss first (ties in rubric order)."""
    items = [i for sec in report.sections for i in sec.items if i.max_points - i.points > 1e-9]
    return sorted(items, key=lambda i: i.points - i.max_points)


def fraction_class(points: float, max_points: float) -> str:
    """``ok`` (full marks), ``warn`` (at least half) or ``bad``: the colour of a score bar."""
    if not max_points or points >= max_points - 1e-9:
        return "ok"
    return "warn" if points >= max_points / 2 else "bad"


def what_went_wrong(report: GradeReport) -> str:
    """A one-paragraph explanation for a run that did not complete."""
    lead = {
        "broken_submission": "The submission could not be graded to the end: a required step failed "
                             "on the candidate's side. Items that depend on it scored zero.",
        "grader_error": "The grader itself failed. This is not the candidate's fault: re-run the "
                        "grade before judging the submission.",
        "interrupted": "The run was interrupted before it finished; scores are partial.",
    }.get(report.status, "The run did not complete.")
    bad = [p for p in report.phases if p.status in ("failed", "timeout", "error", "interrupted")]
    if bad:
        p = bad[0]
        lead += f" First failing phase: {clean(p.name)} ({p.status})."
    return lead


DRIFT_TABLE_HEADERS = ("#", "Scenario", "Feature shifted", "Grader's test on the rows it sent",
                       "Rows until the alarm", "Alarm named", "Clean rows before")


def _shift_text(stats: dict[str, Any]) -> str:
    if "p_value" not in stats:
        return clean(str(stats.get("note") or stats.get("test") or ""))
    text = f"{stats.get('test')} {stats.get('statistic')}, p = {stats.get('p_value'):.3g}"
    if "sent_median" in stats:
        text += f"; median {stats.get('reference_median')} -> {stats.get('sent_median')}"
    elif "sent_null_share" in stats:
        text += f"; nulls {stats.get('reference_null_share'):.1%} -> {stats.get('sent_null_share'):.1%}"
    elif stats.get("unseen_categories"):
        text += f"; unseen: {', '.join(map(str, stats['unseen_categories']))}"
    elif stats.get("sent_top_category"):
        text += f"; top category {stats['sent_top_category']}"
    return clean(text + f" ({stats.get('rows')} rows)")


def drift_table(report: GradeReport) -> tuple[str, list[list[str]]] | None:
    """The drift phases for people: a sentence on the baseline, then one row per scenario (the
    numbers S1, S2, ... are the drift plot's labels). None when no scenario was played."""
    from grader.evidence import DriftEvidence  # lazy: evidence imports results only

    detects, quiet = report.item("drift.detects_scenarios"), report.item("drift.quiet_on_baseline")
    scenarios = DriftEvidence.of(detects).scenarios if detects else None
    if not scenarios:
        return None
    rows = []
    for n, sc in enumerate(scenarios, 1):
        shift = "; ".join(f"{clean(f)}: {_shift_text(s)}" for f, s in sc.shift.items()) or "–"
        if not sc.quiet_before:
            until = "alarm never cleared before it"
        else:
            until = str(sc.delay_rows) if sc.detected and sc.delay_rows is not None else "missed"
        rows.append([f"S{n}", clean(sc.kind or sc.scenario.split(":")[0]), clean(", ".join(sc.ground_truth)), shift,
                     until, clean(", ".join(sc.named)) if sc.detected else "–", str(sc.washout_rows or 0)])
    intro = ""
    if quiet is not None:
        q = DriftEvidence.of(quiet)
        if q.baseline_rows is not None:
            warm = (q.warmup or {}).get("rows")
            intro = (f"Baseline: {q.baseline_rows} in-distribution rows"
                     + (f" after an unscored warm-up of {warm}" if warm else "")
                     + f"; the alarm was on at {q.false_alarm_polls or 0} of {q.polls} polls (false alarms). ")
    from harness.traffic.shift_stats import P_THRESHOLD  # lazy: only a report with scenarios needs it

    intro += ("Each scenario then sends drifted rows until the alarm fires; the grader's own test of those rows "
              f"(Kolmogorov-Smirnov or chi-square against the training distribution, drift at p < {P_THRESHOLD:g}) "
              "says how plain the shift was.")
    return intro, rows
