"""Grade the calibration corpus and compare every section with ``calibration/expected.yaml``.

    python -m calibration.calibrate [--runtime local] [--jobs N] [--candidates a,b] [--repeat K]
                                    [--out reports/calibration] [--config my.yaml]

Each candidate is assembled (``calibration.assemble``) into a temporary git repo and graded like
a real submission; its reports go to ``<out>/<candidate>/`` (``<out>/<candidate>/run-<k>/`` with
``--repeat``). One table (candidate x section: expected, got, verdict) goes to stdout, the same
as ``calibration.md`` plus ``calibration.json`` in ``--out``; the exit code is 1 on any mismatch.

``--jobs`` grades that many candidates at once (default 1). The grading machine has two cores:
parallel runs compete for them, which inflates p99 (the latency section) and can delay the drift
monitors' asynchronous verdicts. Use it for a quick look; trust only ``--jobs 1`` numbers.
``--repeat K`` grades everything K times and reports, per candidate and section, the largest
movement across the repeats: a section that moves by more than its tolerance is a mismatch too.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shutil
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.runtimes import registry

EXPECTED_PATH = Path(__file__).parent / "expected.yaml"
RUNTIMES = registry.NAMES
EXIT_OK, EXIT_MISMATCH, EXIT_USAGE = 0, 1, 2


# --- the expectation file -------------------------------------------------------------------------

class Range(BaseModel):
    """Points between ``min`` and ``max`` (either may be left out: 0 and the maximum)."""

    model_config = ConfigDict(extra="forbid")
    min: float | None = Field(default=None, ge=0)
    max: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> "Range":
        if self.min is None and self.max is None:
            raise ValueError("a range needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


Bound = Union[Literal["full", "zero", "loses"], Range]


class Expectation(BaseModel):
    """What one corpus candidate must score. Sections not in ``loses`` / ``sections`` must be full."""

    model_config = ConfigDict(extra="forbid")
    description: str | None = None
    runtimes: list[Literal[RUNTIMES]] = Field(default_factory=lambda: ["local"], min_length=1)  # type: ignore[valid-type]
    loses: list[str] = Field(default_factory=list)
    sections: dict[str, Bound] = Field(default_factory=dict)
    items: dict[str, Bound] = Field(default_factory=dict)
    min_total: float | None = Field(default=None, ge=0)

    def holds_on(self, runtime: str) -> bool:
        """Whether this expectation applies on ``runtime``, or on the runtime whose contract section it
        grades with (kind's hold on any Kubernetes cluster too)."""
        return runtime in self.runtimes or registry.get(runtime).section_name() in self.runtimes

    @field_validator("runtimes", "loses")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("listed twice")
        return value


class ExpectedFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tolerance: dict[str, float]
    candidates: dict[str, Expectation] = Field(min_length=1)

    @field_validator("tolerance")
    @classmethod
    def _tolerance(cls, value: dict[str, float]) -> dict[str, float]:
        if "default" not in value:
            raise ValueError("needs a 'default' tolerance (points)")
        if any(v < 0 for v in value.values()):
            raise ValueError("tolerances are points, >= 0")
        return value

    def tol(self, section: str) -> float:
        return self.tolerance.get(section, self.tolerance["default"])

    def check_rubric(self, rubric: dict[str, Any]) -> None:
        """Every name must be a rubric section or ``section.item``, and every bound satisfiable."""
        problems = [f"tolerance.{k}: not a rubric section" for k in self.tolerance if k != "default" and k not in rubric]
        for name, exp in self.candidates.items():
            where = f"candidates.{name}"
            for section in [*exp.loses, *exp.sections]:
                if section not in rubric:
                    problems.append(f"{where}: unknown section {section!r} (rubric: {', '.join(rubric)})")
            for item in exp.items:
                section, _, item_id = item.partition(".")
                if section not in rubric or item_id not in rubric[section].items:
                    problems.append(f"{where}.items: unknown item {item!r} (write it as section.item)")
            if problems:
                continue
            for section in rubric:
                try:
                    section_bounds(exp, section, rubric[section].max_points)
                except ValueError as exc:
                    problems.append(f"{where}.sections.{section}: {exc}")
            for item, bound in exp.items.items():
                section, _, item_id = item.partition(".")
                try:
                    interval(bound, rubric[section].items[item_id].points)
                except ValueError as exc:
                    problems.append(f"{where}.items.{item}: {exc}")
        if problems:
            raise ValueError("calibration/expected.yaml does not match the rubric:\n  " + "\n  ".join(problems))


def load_expected(path: Path = EXPECTED_PATH, rubric: dict[str, Any] | None = None) -> ExpectedFile:
    """Parse and validate the expectation file (against the rubric when given)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        expected = ExpectedFile.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if rubric is not None:
        expected.check_rubric(rubric)
    return expected


def interval(bound: Bound, max_points: float) -> tuple[float, float]:
    """The [lo, hi] points a bound allows, before tolerance."""
    if bound == "full":
        return max_points, max_points
    if bound == "zero":
        return 0.0, 0.0
    if bound == "loses":
        return 0.0, max_points / 2
    assert isinstance(bound, Range)
    lo = 0.0 if bound.min is None else bound.min
    hi = max_points if bound.max is None else bound.max
    if hi > max_points or lo > max_points:
        raise ValueError(f"bound {lo:g}..{hi:g} is above the maximum ({max_points:g})")
    return lo, hi


def section_bounds(exp: Expectation, section: str, max_points: float) -> tuple[float, float, str]:
    """[lo, hi] and a label for one section of a candidate: ``sections`` refined by ``loses``."""
    bound: Bound = exp.sections.get(section, "loses" if section in exp.loses else "full")
    lo, hi = interval(bound, max_points)
    label = bound if isinstance(bound, str) else "range"
    if section in exp.loses and bound != "loses":
        hi = min(hi, max_points / 2)
        if lo > hi:
            raise ValueError(f"listed in loses (at most {max_points / 2:g}) but bounded at {lo:g} or more")
    return lo, hi, label


# --- comparing a graded run with the expectation --------------------------------------------------

@dataclass
class Row:
    """One line of the calibration table."""

    candidate: str
    target: str  # a section id, "section.item", "total" or "status"
    expected: str
    got: list[float | str]
    verdict: Literal["ok", "MISMATCH", "UNSTABLE", "SKIPPED", "ERROR"]
    lo: float | None = None
    hi: float | None = None
    tolerance: float | None = None
    max_points: float | None = None
    movement: float | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict in ("ok", "SKIPPED")

    def got_text(self) -> str:
        nums = [g for g in self.got if isinstance(g, (int, float))]
        if not self.got:
            return "-"
        if len(nums) != len(self.got):
            return ", ".join(str(g) for g in dict.fromkeys(self.got))
        lo, hi = min(nums), max(nums)
        return _fmt(lo) if lo == hi else f"{_fmt(lo)}..{_fmt(hi)}"

    def to_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "target": self.target, "expected": self.expected, "got": self.got,
                "verdict": self.verdict, "lo": self.lo, "hi": self.hi, "tolerance": self.tolerance,
                "max_points": self.max_points, "movement": self.movement, "reason": self.reason}


def _fmt(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _describe(label: str, lo: float, hi: float, max_points: float, tol: float) -> str:
    span = _fmt(lo) if lo == hi else f"{_fmt(lo)}..{_fmt(hi)}"
    name = {"full": "full", "zero": "zero", "loses": "loses"}.get(label, "")
    text = f"{name} {span}" if name else span
    return f"{text} /{_fmt(max_points)} ±{_fmt(tol)}"


def _judge(values: list[float], lo: float, hi: float, tol: float) -> tuple[str, float, str]:
    movement = round(max(values) - min(values), 4) if values else 0.0
    outside = [v for v in values if not (lo - tol - 1e-9 <= v <= hi + tol + 1e-9)]
    if outside:
        return "MISMATCH", movement, f"{', '.join(_fmt(v) for v in outside)} outside {_fmt(lo)}..{_fmt(hi)} ±{_fmt(tol)}"
    if movement > tol + 1e-9:
        return "UNSTABLE", movement, f"moved by {_fmt(movement)} across repeats (tolerance {_fmt(tol)})"
    return "ok", movement, ""


def compare(name: str, exp: Expectation, expected: ExpectedFile, rubric: dict[str, Any],
            reports: list[Any]) -> list[Row]:
    """Rows for one candidate graded ``len(reports)`` times (GradeReport objects)."""
    rows: list[Row] = []
    statuses = [r.status for r in reports]
    if any(s != "completed" for s in statuses):
        errors = "; ".join(sorted({((r.error or "").strip().splitlines() or ["no error recorded"])[0][:200]
                                   for r in reports if r.status != "completed"}))
        rows.append(Row(name, "status", "completed", list(statuses), "MISMATCH", reason=errors))

    def bounded(target: str, values: list[float], label: str, lo: float, hi: float, max_points: float) -> Row:
        tol = expected.tol(target.partition(".")[0])  # items use their section's tolerance
        verdict, movement, reason = _judge(values, lo, hi, tol)
        return Row(name, target, _describe(label, lo, hi, max_points, tol), values, verdict,  # type: ignore[arg-type]
                   lo, hi, tol, max_points, movement, reason)

    def points(found: Any) -> float:
        return float(found.points) if found is not None else 0.0

    for section, rub in rubric.items():
        lo, hi, label = section_bounds(exp, section, rub.max_points)
        rows.append(bounded(section, [points(r.section(section)) for r in reports], label, lo, hi, rub.max_points))
    for item, bound in exp.items.items():
        section, _, item_id = item.partition(".")
        max_points = rubric[section].items[item_id].points
        lo, hi = interval(bound, max_points)
        rows.append(bounded(item, [points(r.item(item)) for r in reports],
                            bound if isinstance(bound, str) else "range", lo, hi, max_points))
    if exp.min_total is not None:
        totals = [float(r.score) for r in reports]
        low = [t for t in totals if t < exp.min_total]
        rows.append(Row(name, "total", f">= {_fmt(exp.min_total)}", totals, "MISMATCH" if low else "ok",  # type: ignore[arg-type]
                        exp.min_total, None, 0.0, None, round(max(totals) - min(totals), 4) if totals else None,
                        f"total {', '.join(_fmt(t) for t in low)} below {_fmt(exp.min_total)}" if low else ""))
    return rows


# --- rendering ---------------------------------------------------------------------------------------

_STYLE = {"ok": "green", "MISMATCH": "bold red", "UNSTABLE": "bold yellow", "SKIPPED": "dim", "ERROR": "bold red"}


def render_table(rows: list[Row], repeat: int = 1, title: str = "calibration") -> Any:
    """The one rich table: candidate x section, expected, got, verdict."""
    from rich.table import Table

    table = Table(title=title, show_lines=False, header_style="bold")
    table.add_column("candidate", no_wrap=True)
    table.add_column("section", no_wrap=True)
    table.add_column("expected", no_wrap=True)
    table.add_column("got", justify="right", no_wrap=True)
    if repeat > 1:
        table.add_column("moved", justify="right")
    table.add_column("verdict", no_wrap=True)
    table.add_column("why")
    for i, row in enumerate(rows):
        last = i + 1 == len(rows) or rows[i + 1].candidate != row.candidate
        first = i == 0 or rows[i - 1].candidate != row.candidate
        cells = [row.candidate if first else "", row.target, row.expected, row.got_text()]
        if repeat > 1:
            cells.append("" if row.movement is None else _fmt(row.movement))
        cells += [f"[{_STYLE[row.verdict]}]{row.verdict}[/]", row.reason]
        table.add_row(*cells, end_section=last)
    return table


def render_markdown(rows: list[Row], meta: dict[str, Any], details: dict[str, list[str]]) -> str:
    repeat = int(meta.get("repeat", 1))
    bad = [r for r in rows if not r.ok]
    lines = [f"# Calibration: {meta['runtime']} runtime", "",
             f"{'**ALL AS EXPECTED**' if not bad else f'**{len(bad)} MISMATCH(ES)**'}: "
             f"{meta['graded']} candidate(s) graded {repeat} time(s), {meta['jobs']} at a time, "
             f"wall time {meta['wall_time_s']:.0f} s, grader {meta.get('grader_version')}, "
             f"config digest {meta.get('config_digest')}.", "",
             "A bound holds when lo - tolerance <= points <= hi + tolerance (expected.yaml)."
             + (" `moved` is the largest change across the repeats." if repeat > 1 else ""), ""]
    head = ["candidate", "section", "expected", "got"] + (["moved"] if repeat > 1 else []) + ["verdict", "why"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.candidate, row.target, row.expected, row.got_text()]
        if repeat > 1:
            cells.append("" if row.movement is None else _fmt(row.movement))
        cells += [row.verdict if row.ok else f"**{row.verdict}**", row.reason.replace("|", "\\|")]
        lines.append("| " + " | ".join(cells) + " |")
    if details:
        lines += ["", "## Evidence for the mismatches", ""]
        for key, text in details.items():
            lines += [f"### {key}", ""] + [f"- {t}" for t in text] + [""]
    return "\n".join(lines) + "\n"


def evidence_for(row: Row, reports: list[Any]) -> list[str]:
    """What the grader said about a mismatched section: every item's points and message, per run."""
    out: list[str] = []
    for k, report in enumerate(reports, 1):
        tag = f"run {k}: " if len(reports) > 1 else ""
        if row.target == "status":
            out.append(f"{tag}status {report.status}: {(report.error or '')[:500]}")
            continue
        if row.target == "total":
            out.append(f"{tag}total {report.score:g} / {report.max_score:g}")
            continue
        section = row.target.split(".")[0]
        s = report.section(section)
        if s is None:
            out.append(f"{tag}section {section} not in the report")
            continue
        for item in s.items:
            if "." in row.target and item.id != row.target:
                continue
            out.append(f"{tag}`{item.id}` {item.points:g}/{item.max_points:g} {item.status}: {item.message[:400]}")
    return out


# --- running -------------------------------------------------------------------------------------

@dataclass
class Job:
    candidate: str
    run: int  # 1-based repeat index
    out_dir: Path
    report: Any = None
    error: str | None = None
    seconds: float = 0.0
    retry: int = 0  # k for the k-th regrading of a mismatch (--retry-mismatch), 0 for the calibration's own


@dataclass
class Progress:
    start: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    quiet: bool = False

    def __call__(self, tag: str, message: str) -> None:
        if self.quiet and not message.startswith(("▶ grading", "■ ")):
            return
        with self.lock:
            print(f"{time.monotonic() - self.start:8.1f}s [{tag}] {message}", file=sys.stderr, flush=True)


def _grade_one(job: Job, runtime: str, config: Any, artifacts: Path, work: Path, keep: bool,
               progress: Progress) -> Job:
    from calibration.assemble import assemble
    from grader.lifecycle import GradeRequest, grade
    from grader.reports.write import write_reports

    tag = job.candidate if job.run == 0 else f"{job.candidate}#{job.run}"
    started = time.monotonic()
    try:
        progress(tag, f"▶ grading {job.candidate} on {runtime}")
        repo = assemble(job.candidate, work / f"{job.candidate}-{job.run}", artifacts_dir=artifacts,
                        progress=lambda m: progress(tag, m))
        job.report = grade(GradeRequest(repo=str(repo), runtime=runtime, config=config, artifacts_dir=artifacts,
                                        keep=keep, progress=lambda m: progress(tag, m)))
        write_reports(job.report, job.out_dir)
        progress(tag, f"■ {job.candidate}: {job.report.score:g} / {job.report.max_score:g} "
                      f"({job.report.status}) in {time.monotonic() - started:.0f}s")
    except Exception as exc:  # noqa: BLE001 - one broken candidate must not stop the calibration
        job.error = f"{type(exc).__name__}: {exc}"
        progress(tag, f"■ {job.candidate}: could not be graded: {job.error}")
        (job.out_dir).mkdir(parents=True, exist_ok=True)
        (job.out_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
    job.seconds = round(time.monotonic() - started, 1)
    return job


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m calibration.calibrate",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runtime", default="local", choices=RUNTIMES)
    parser.add_argument("--jobs", type=int, default=1, help="candidates graded at once (default 1: parallel runs "
                        "share the 2 cores and skew latency)")
    parser.add_argument("--candidates", default="", help="comma-separated corpus names (default: every candidate "
                        "whose expectation lists the runtime)")
    parser.add_argument("--repeat", type=int, default=1, help="grade everything this many times and report the "
                        "largest movement per section")
    parser.add_argument("--out", type=Path, default=Path("reports/calibration"))
    parser.add_argument("--config", type=Path, default=None, help="grader config (default: grader/defaults.yaml)")
    parser.add_argument("--expected", type=Path, default=EXPECTED_PATH)
    parser.add_argument("--keep", action="store_true", help="keep the assembled repos and grading work dirs")
    parser.add_argument("--quiet", action="store_true", help="only one progress line per candidate")
    parser.add_argument("--retry-mismatch", type=int, default=0, metavar="N",
                        help="grade a candidate that mismatches up to N more times; it passes only if a retry is "
                        "all as expected, and both gradings stay on record (the CI uses 1: one noisy grading "
                        "on a shared machine is not a regression, the same mismatch twice is)")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.repeat < 1 or args.retry_mismatch < 0:
        parser.error("--jobs and --repeat must be at least 1, --retry-mismatch at least 0")
    if args.retry_mismatch and args.repeat > 1:
        parser.error("--retry-mismatch is for single gradings; --repeat already measures spread")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    from rich.console import Console

    from calibration.assemble import corpus_entries
    from grader.config import ConfigError, load_config
    from grader.lifecycle import GRADER_VERSION
    from reference_model.paths import ensure_artifacts

    err = Console(stderr=True, highlight=False)
    try:
        config = load_config(args.config)
        rubric = config.rubric
        expected = load_expected(args.expected, rubric)
    except (ConfigError, ValueError) as exc:
        err.print(f"error: {exc}", markup=False)
        return EXIT_USAGE
    corpus = corpus_entries()
    missing = sorted(set(corpus) - set(expected.candidates))
    unknown = sorted(set(expected.candidates) - set(corpus))
    if missing or unknown:
        err.print(f"error: expected.yaml and the corpus disagree: no expectation for {missing or 'none'}; "
                  f"not in the corpus: {unknown or 'none'}", markup=False)
        return EXIT_USAGE
    chosen = [c.strip() for c in args.candidates.split(",") if c.strip()] or corpus
    bad = [c for c in chosen if c not in expected.candidates]
    if bad:
        err.print(f"error: not corpus candidates: {', '.join(bad)} (have: {', '.join(corpus)})", markup=False)
        return EXIT_USAGE
    skipped = [c for c in chosen if not expected.candidates[c].holds_on(args.runtime)]
    names = [c for c in chosen if c not in skipped]

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    artifacts = ensure_artifacts()
    work = Path(tempfile.mkdtemp(prefix="calibration-"))
    progress = Progress(quiet=args.quiet)
    jobs = [Job(name, k if args.repeat > 1 else 0,
                out / name / f"run-{k}" if args.repeat > 1 else out / name)
            for k in range(1, args.repeat + 1) for name in names]
    for job in jobs:  # stale reports from an earlier calibration must not be mistaken for this one's
        if job.out_dir.exists():
            shutil.rmtree(job.out_dir)
    started_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.monotonic()
    interrupted = False
    err.print(f"calibrating {len(names)} candidate(s) x {args.repeat} on the {args.runtime} runtime, "
              f"{args.jobs} at a time" + (f"; skipped (runtime not in their expectation): {', '.join(skipped)}"
                                            if skipped else ""))
    try:
        if args.jobs == 1:  # in the main thread: grade() then handles SIGTERM and tears down cleanly
            for job in jobs:
                _grade_one(job, args.runtime, config, artifacts, work, args.keep, progress)
                if job.report is not None and job.report.status == "interrupted":
                    raise KeyboardInterrupt  # grade() caught Ctrl-C / SIGTERM and tore down: stop here
        else:
            pool = ThreadPoolExecutor(max_workers=args.jobs)
            try:
                futures = [pool.submit(_grade_one, job, args.runtime, config, artifacts, work, args.keep, progress)
                           for job in jobs]
                for fut in as_completed(futures):
                    fut.result()
            finally:  # on Ctrl-C: start nothing new; the gradings under way finish and tear down
                pool.shutdown(wait=True, cancel_futures=True)
    except KeyboardInterrupt:
        interrupted = True
        err.print("interrupted: comparing what was graded so far")
    finally:
        if args.keep:
            err.print(f"assembled repos kept in {work}")

    def judged(name: str, mine: list[Job]) -> tuple[list[Row], dict[str, list[str]]]:
        failed = [j for j in mine if j.report is None]
        if failed:
            return [Row(name, "status", "graded", [j.error or "not run" for j in failed], "ERROR",
                        reason=(failed[0].error or "interrupted before it was graded")[:300])], {}
        reports = [j.report for j in mine]
        cand_rows = compare(name, expected.candidates[name], expected, rubric, reports)
        return cand_rows, {f"{name}: {row.target}": evidence_for(row, reports) for row in cand_rows if not row.ok}

    rows: list[Row] = []
    details: dict[str, list[str]] = {}
    retried: dict[str, dict[str, Any]] = {}
    for name in chosen:
        if name in skipped:
            rows.append(Row(name, "all", f"runtimes {expected.candidates[name].runtimes}", [], "SKIPPED",
                            reason=f"not calibrated on {args.runtime}"))
            continue
        mine = [j for j in jobs if j.candidate == name]
        cand_rows, cand_details = judged(name, mine)
        first_bad = [r for r in cand_rows if not r.ok]
        for k in range(1, args.retry_mismatch + 1):
            if not first_bad or interrupted:
                break
            summary = "; ".join(f"{r.target} got {r.got_text()} ({r.reason})" for r in first_bad)
            progress(name, f"■ {name}: mismatch ({summary}); grading it again ({k} of {args.retry_mismatch})")
            retry = Job(name, 0, out / name / f"retry-{k}", retry=k)
            _grade_one(retry, args.runtime, config, artifacts, work, args.keep, progress)
            jobs.append(retry)
            if retry.report is not None and retry.report.status == "interrupted":
                interrupted = True
                break
            retry_rows, retry_details = judged(name, [retry])
            entry = retried.setdefault(name, {"first": [r.to_dict() for r in first_bad], "retries": []})
            entry["retries"].append({"report_dir": str(retry.out_dir),
                                     "mismatches": [r.to_dict() for r in retry_rows if not r.ok]})
            if all(r.ok for r in retry_rows):
                for r in retry_rows:  # as expected on the retry; the first grading's miss stays on record
                    bad_first = next((b for b in first_bad if b.target == r.target), None)
                    if bad_first is not None:
                        r.reason = (f"as expected on retry {k}; the first grading got {bad_first.got_text()} "
                                    f"({bad_first.reason})")
                cand_rows, cand_details = retry_rows, {}
                break
            cand_details.update({f"{key} (retry {k})": v for key, v in retry_details.items()})
        rows += cand_rows
        details.update(cand_details)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    wall = time.monotonic() - t0

    graded = sum(1 for j in jobs if j.report is not None)
    first = next((j.report for j in jobs if j.report is not None), None)
    meta = {"runtime": args.runtime, "repeat": args.repeat, "jobs": args.jobs, "started_at": started_at,
            "wall_time_s": round(wall, 1), "graded": len({j.candidate for j in jobs if j.report is not None}),
            "gradings": graded, "grader_version": GRADER_VERSION,
            "config_digest": first.config_digest if first is not None else config.digest(),
            "seed": config.seed_provenance(), "tolerance": expected.tolerance, "skipped": skipped,
            "retried": retried}
    ok = all(r.ok for r in rows)
    runs = {name: [{"run": j.run or 1, **({"retry": j.retry} if j.retry else {}), "seconds": j.seconds,
                    "report_dir": str(j.out_dir),
                    "error": j.error,
                    **({"status": j.report.status, "score": j.report.score, "max_score": j.report.max_score,
                        "sections": {s.id: s.points for s in j.report.sections},
                        "items": {i.id: i.points for s in j.report.sections for i in s.items}}
                       if j.report is not None else {})}
                   for j in jobs if j.candidate == name] for name in names}
    (out / "calibration.json").write_text(json.dumps(
        {**meta, "ok": ok, "rows": [r.to_dict() for r in rows], "runs": runs, "evidence": details},
        indent=2, default=str) + "\n", encoding="utf-8")
    (out / "calibration.md").write_text(render_markdown(rows, meta, details), encoding="utf-8")

    console = Console(highlight=False, width=max(Console().width, 160))
    title = (f"calibration on {args.runtime}: {meta['graded']} candidate(s) x {args.repeat}, "
             f"wall time {wall:.0f}s")
    console.print(render_table(rows, args.repeat, title))
    for name, entry in retried.items():  # a CI log keeps only its tail: name every retry and miss there
        first_miss = "; ".join(f"{d['target']} got {d['got']} ({d['reason']})" for d in entry["first"])
        last = entry["retries"][-1]["mismatches"]
        console.print(f"retried {name} ({len(entry['retries'])}x): first grading {first_miss}; "
                      + ("as expected on the retry" if not last else "the retry mismatched too"),
                      markup=False, soft_wrap=True)
    missed = [r for r in rows if not r.ok]
    for row in missed:
        console.print(f"MISMATCH {row.candidate} {row.target}: expected {row.expected}, got {row.got_text()}: "
                      f"{row.reason}", markup=False, soft_wrap=True)
    console.print(("[bold green]all as expected[/]" if ok else f"[bold red]{len(missed)} mismatch(es)[/]")
                  + f" — {out / 'calibration.md'}, {out / 'calibration.json'}")
    return EXIT_OK if ok else EXIT_MISMATCH


if __name__ == "__main__":
    sys.exit(main())
