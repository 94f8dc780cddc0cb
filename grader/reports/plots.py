"""Small figures for the HTML report, returned as inline SVG strings (``<svg ...>...</svg>``).

matplotlib is imported only when a figure is drawn (importing it costs about a second), with the
Agg backend selected and without pyplot: figures are ``matplotlib.figure.Figure`` objects that are
never shown, so no GUI or global figure state is involved. Every function returns ``None`` when
there is nothing to plot. Output is deterministic for the same input (fixed SVG id salt, no date).

Events the plots read from ``GradeReport.timeline`` (``TimelineEvent(t_s, kind, label, data)``);
``t_s`` is seconds since the run started:

``kind="phase"`` / ``kind="phase_end"`` -- a drift traffic phase starts / ends.
    ``label``: ``"baseline"``, ``"scenario:<name>"`` (e.g. ``scenario:mean_shift``), or
    ``"washout"`` / ``"washout:<next scenario>"``; other labels (e.g. ``"latency"``) are ignored
    by the drift plot. A ``phase_end`` closes the open phase with the same label.
    ``data`` (all optional): ``start_rows`` / ``end_rows`` -- cumulative drift-traffic rows sent
    when the phase began / ended (the same counter as ``drift_poll.rows``); on the time axis the
    events' own ``t_s`` are used (or ``start_t_s`` / ``end_t_s``); ``feature`` -- the drifted
    feature name or list of names (ground truth, shown under the scenario's name). A phase never
    closed ends where the next one starts, or at the last poll. One ``phase`` event carrying both
    ``start_rows`` and ``end_rows`` is enough on its own.

``kind="drift_poll"`` -- one reading of the candidate's drift signal; ``label`` is the phase name.
    ``data``: ``firing`` (bool), ``features`` (list of feature names the alarm named, may be
    empty), ``rows`` (int, cumulative drift-traffic rows sent when read), optional ``ok``
    (False: the signal could not be read; drawn as a grey tick).
    The x axis is rows sent when every poll has ``rows``; otherwise it is run time ``t_s``.
    A firing poll during ``baseline`` is drawn as a false alarm.

``kind="rollback_request"`` -- a request of the traffic kept flowing during rollback (a sample
    is fine, but keep every failed one: the plot shows what it is given).
    ``data``: ``t`` (seconds on the same clock as the ``rollback`` events; default: ``t_s``),
    ``ok`` (bool: a 2xx with a valid prediction), ``version`` (``"v1"``, ``"v2"`` or
    ``"unknown"``: the fingerprinted model that answered).

``kind="rollback"`` -- a rollback command boundary, drawn as a vertical line labelled ``label``
    (e.g. ``"rollback start"``, ``"rollback end"``, ``"second rollback start"``).
    ``data``: ``t`` (same clock as ``rollback_request.t``; default ``t_s``), optional
    ``exit_code`` (shown on ``end`` lines).
"""

from __future__ import annotations

import io
import math
import os
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from grader.results import LatencySummary, TimelineEvent

_SIZE = (7.5, 2.6)  # inches; about 720 x 250 px at 96 dpi
_RC = {"svg.fonttype": "none", "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8,
       "axes.spines.top": False, "axes.spines.right": False}
_PHASE_COLORS = {"baseline": "#dff0e0", "scenario": "#fde3cf", "washout": "#ececec"}
_NINES = [(1.0, "0%"), (2.0, "50%"), (10.0, "90%"), (100.0, "99%"), (1e3, "99.9%"),
          (1e4, "99.99%"), (1e5, "99.999%"), (1e6, "99.9999%")]


@contextmanager
def _plot(salt: str) -> Iterator[tuple[Any, Any]]:
    """A new (Figure, Axes) under the report's rc settings; matplotlib is imported here."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({**_RC, "svg.hashsalt": f"takehome-{salt}"}):  # type: ignore[dict-item]
        fig = Figure(figsize=_SIZE, layout="constrained")
        yield fig, fig.add_subplot()


def _svg(fig: Any) -> str:
    """Render ``fig`` to an inline ``<svg>`` element (no XML prolog, no date)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    start, end = text.find("<metadata>"), text.find("</metadata>")
    if 0 <= start < end:  # RDF boilerplate: bytes and external namespace URLs, no information
        text = text[:start] + text[end + len("</metadata>"):]
    return text.strip()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _label(value: Any, limit: int) -> str:
    """Untrusted text made safe for a plot label: one line, clipped (mathtext is off per call)."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------- latency ---------------------
def latency_spectrum_svg(latency: LatencySummary | None) -> str | None:
    """Latency by percentile, HdrHistogram style: x is 1/(1-p) on a log axis ("nines").

    Reads ``latency.spectrum``: ``[[percentile, ms], ...]`` with percentiles in 0..100 (or 0..1
    when none exceeds 1; the 100th, the max, is left out), and ``slo_ms`` (dashed line), ``p99_ms``
    (marked) and ``rate_rps`` (in the title) when known.
    """
    if latency is None:
        return None
    numbers = [(_number(p[0]), _number(p[1])) for p in latency.spectrum if len(p) >= 2]
    pairs = [(p, ms) for p, ms in numbers if p is not None and ms is not None]
    if not pairs:
        return None
    scale = 100.0 if max(p for p, _ in pairs) > 1.0 else 1.0
    pts = sorted((1.0 / (1.0 - p / scale), ms) for p, ms in pairs if 0.0 <= p / scale < 1.0)
    if not pts:
        return None
    with _plot("latency") as (fig, ax):
        xs, ys = [x for x, _ in pts], [y for _, y in pts]
        ax.plot(xs, ys, color="#1f5fa8", lw=1.6, marker="." if len(xs) < 40 else None, label="latency")
        ax.set_xscale("log")
        top = max(xs)
        ticks = [(x, lbl) for x, lbl in _NINES if x <= max(top * 1.5, 10.0)]
        ax.set_xticks([x for x, _ in ticks], [lbl for _, lbl in ticks])
        ax.set_xlim(1.0, max(top * 1.2, 10.0))
        ax.minorticks_off()
        ax.set_xlabel("percentile")
        ax.set_ylabel("latency (ms)")
        slo, p99 = latency.slo_ms, latency.p99_ms
        if slo is not None:
            ax.axhline(slo, color="#c0392b", ls="--", lw=1.2, label=f"SLO {slo:g} ms")
        if p99 is not None:
            ax.plot([100.0], [p99], "o", color="#c0392b" if slo is not None and p99 > slo else "#1e8449",
                    ms=6, label=f"p99 {p99:.1f} ms")
        ax.set_ylim(bottom=0, top=max([*ys, slo or 0.0, p99 or 0.0]) * 1.15 or 1.0)
        rate = latency.rate_rps
        title = (f"Latency by percentile at {rate:g} req/s (open loop)" if rate is not None
                 else "Latency by percentile (open loop)")
        if latency.saturated:
            title += " — load generator saturated: inconclusive"
        ax.set_title(title)
        ax.grid(True, axis="both", color="#dddddd", lw=0.6)
        fig.legend(loc="outside right upper", frameon=False, fontsize=7)
        return _svg(fig)


# ---------------------------------------------------------------- drift -----------------------
def _phase_kind(label: str) -> str | None:
    """``"baseline"``, ``"washout"`` or ``"scenario"`` for a drift phase label, else None."""
    if label == "baseline":
        return "baseline"
    if label == "washout" or label.startswith("washout:"):
        return "washout"
    return "scenario" if label.startswith("scenario:") else None


def _spans(events: list[TimelineEvent], use_rows: bool, last_x: float) -> list[tuple[float, float, str]]:
    """(start, end, kind) per drift phase on the chosen axis, in order of start."""
    key = "rows" if use_rows else "t_s"
    spans: list[list[Any]] = []  # [start, end, label]
    open_: dict[str, int] = {}
    for ev in events:
        if ev.kind not in ("phase", "phase_end") or _phase_kind(ev.label) is None:
            continue
        start = _number(ev.data.get(f"start_{key}"))
        end = _number(ev.data.get(f"end_{key}"))
        if ev.kind == "phase":
            if start is None and not use_rows:
                start = ev.t_s
            spans.append([start, end, ev.label])
            if end is None:
                open_[ev.label] = len(spans) - 1
        else:
            if end is None and not use_rows:
                end = ev.t_s
            i = open_.pop(ev.label, None)
            if i is None:
                spans.append([start, end, ev.label])
            else:
                spans[i][1] = end
                spans[i][0] = spans[i][0] if spans[i][0] is not None else start
    known = sorted((s for s in spans if s[0] is not None), key=lambda s: s[0])
    out = []
    for i, (start, end, label) in enumerate(known):
        if end is None:
            end = known[i + 1][0] if i + 1 < len(known) else max(last_x, start)
        out.append((start, end, _phase_kind(label) or "washout"))
    return out


#: Characters of a fontsize-7 label across the drift plot's axes (its width in label widths).
_AXES_CHARS = 95
_LABEL_ROWS = 2


def phase_labels(spans: list[tuple[float, float, str]], lo: float, hi: float) -> list[tuple[float, int, str]]:
    """(x, row, text) of the drift plot's phase labels, none overlapping another on its row, all
    inside [lo, hi]. Scenarios are numbered S1, S2, ... as in the report's per-scenario table:
    names would not fit the band of a scenario a good monitor catches in 50 rows. A label that
    would touch the previous one goes a row lower; with no room on any row it is left out (the
    table still names it)."""
    per_char = (hi - lo) / _AXES_CHARS
    row_ends = [-math.inf] * _LABEL_ROWS
    out: list[tuple[float, int, str]] = []
    number = 0
    for start, end, kind in spans:
        if kind == "scenario":
            number += 1
            text = f"S{number}"
        elif kind == "baseline":
            text = "baseline"
        else:
            continue
        half = len(text) * per_char / 2
        mid = min(max((start + end) / 2, lo + half), hi - half)  # whole label inside the axes
        row = next((r for r, edge in enumerate(row_ends) if mid - half > edge), None)
        if row is None:
            continue
        row_ends[row] = mid + half + per_char / 2
        out.append((mid, row, text))
    return out


def drift_timeline_svg(timeline: Iterable[TimelineEvent]) -> str | None:
    """The drift alarm over the drift phases: shaded traffic phases, a step line of the alarm
    state, red dots where it fired and black crosses where it fired on baseline traffic."""
    events = list(timeline)
    polls = sorted((e for e in events if e.kind == "drift_poll"), key=lambda e: e.t_s)
    if not polls:
        return None
    use_rows = all(_number(e.data.get("rows")) is not None for e in polls)
    xs = [float(e.data["rows"]) if use_rows else e.t_s for e in polls]
    order = sorted(range(len(polls)), key=lambda i: xs[i])  # stable: ties keep time order
    xs, polls = [xs[i] for i in order], [polls[i] for i in order]
    firing = [1.0 if e.data.get("firing") else 0.0 for e in polls]
    spans = _spans(events, use_rows, max(xs))

    def phase_of(x: float, poll: TimelineEvent) -> str | None:
        kind = _phase_kind(poll.label)
        return kind or next((k for s, e, k in spans if s <= x <= e), None)

    phases = [phase_of(x, p) for x, p in zip(xs, polls)]
    lo = min([xs[0]] + [s for s, _, _ in spans])
    hi = max([xs[-1]] + [e for _, e, _ in spans])
    hi = hi if hi > lo else lo + 1
    with _plot("drift") as (fig, ax):
        for start, end, kind in spans:
            ax.axvspan(start, end, color=_PHASE_COLORS[kind], lw=0, zorder=0)
        for x, row, text in phase_labels(spans, lo, hi):
            ax.text(x, 1.34 - 0.1 * row, text, ha="center", va="top", fontsize=7, color="#444444",
                    clip_on=True, parse_math=False)
        ax.step(xs, firing, where="post", color="#555555", lw=1.1, label="alarm state")
        groups = {
            "firing": [x for x, f, k in zip(xs, firing, phases) if f and k != "baseline"],
            "false": [x for x, f, k in zip(xs, firing, phases) if f and k == "baseline"],
            "unreadable": [x for x, p in zip(xs, polls) if p.data.get("ok") is False],
        }
        if groups["firing"]:
            ax.plot(groups["firing"], [1.0] * len(groups["firing"]), "o", color="#c0392b", ms=3.5,
                    label="firing")
        if groups["false"]:
            ax.plot(groups["false"], [1.0] * len(groups["false"]), "x", color="black", ms=6, mew=1.5,
                    label=f"false alarm ({len(groups['false'])})")
        if groups["unreadable"]:
            ax.plot(groups["unreadable"], [0.5] * len(groups["unreadable"]), "|", color="#888888",
                    ms=8, label="unreadable")
        ax.set_ylim(-0.1, 1.38)
        ax.set_yticks([0, 1], ["quiet", "firing"])
        pad = 0.02 * (hi - lo)  # the last phase's band and label stay inside the axes
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_xlabel("rows sent" if use_rows else "seconds since start")
        ax.set_title("Drift alarm during baseline, drift scenarios and washout")
        fig.legend(loc="outside right upper", frameon=False, fontsize=7)
        return _svg(fig)


# ---------------------------------------------------------------- rollback --------------------
def rollback_timeline_svg(timeline: Iterable[TimelineEvent]) -> str | None:
    """Requests during rollback: which version answered (y) and whether they failed, over time,
    with the rollback command's start/end as vertical lines."""
    events = list(timeline)
    reqs = [e for e in events if e.kind == "rollback_request"]
    if not reqs:
        return None

    def t_of(e: TimelineEvent) -> float:
        t = _number(e.data.get("t"))
        return t if t is not None else e.t_s

    rows = {"v2": 2, "v1": 1, "unknown": 0}
    with _plot("rollback") as (fig, ax):
        groups = {
            "ok": [e for e in reqs if e.data.get("ok")],
            "failed": [e for e in reqs if not e.data.get("ok")],
        }
        for name, group in groups.items():
            if not group:
                continue
            ys = [rows.get(str(e.data.get("version")), 0) for e in group]
            if name == "ok":
                ax.scatter([t_of(e) for e in group], ys, s=9, color="#1e8449", alpha=0.6, lw=0,
                           label="ok")
            else:
                ax.scatter([t_of(e) for e in group], ys, s=28, color="#c0392b", marker="x", lw=1.3,
                           label="failed")
        times = [t_of(e) for e in reqs]
        for ev in (e for e in events if e.kind == "rollback"):
            t = t_of(ev)
            times.append(t)
            ax.axvline(t, color="#34495e", ls=":", lw=1.1)
            text = ev.label
            code = ev.data.get("exit_code")
            if code is not None:
                text += f" (exit {code})"
            ax.text(t, 2.45, _label(text, 40), rotation=90, ha="right", va="top", fontsize=6.5,
                    color="#34495e", parse_math=False)
        ax.set_yticks([0, 1, 2], ["unknown", "v1", "v2"])
        ax.set_ylim(-0.5, 2.5)
        span = max(times) - min(times)
        ax.set_xlim(min(times) - 0.03 * span - 0.1, max(times) + 0.03 * span + 0.1)
        ax.set_xlabel("seconds since start")
        ax.set_ylabel("model served")
        ax.set_title("Requests during rollback: which version answered")
        fig.legend(loc="outside right upper", frameon=False, fontsize=7)
        return _svg(fig)
