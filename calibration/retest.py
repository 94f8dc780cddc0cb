"""Grade one commit N times and print how far each section moves: the grader's retest stability.

    python -m calibration.retest --repo PATH_OR_URL [-n 10] [--runtime local] [--out reports/retest]
    python -m calibration.retest --candidate reference-fastapi -n 10

A retest changes nothing but time: the same commit, seed and config. Whatever moves between
gradings is noise, the grader's or the machine's, never the candidate's. One table (section:
points per grading, min, max, spread) goes to stdout and to ``<out>/retest.md``, every grading's
reports to ``<out>/run-<k>/``. Exit 1 when the total moved by more than ``--max-spread`` points.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.runtimes import registry

EXIT_UNSTABLE = 1
EXIT_USAGE = 2


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m calibration.retest",
                                     description=(__doc__ or "").split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--repo", help="candidate repo: a local path or a git URL")
    what.add_argument("--candidate", help="a calibration corpus candidate, assembled like calibrate does")
    parser.add_argument("-n", type=int, default=10, help="gradings of the same commit (default 10)")
    parser.add_argument("--runtime", default="local", choices=registry.NAMES)
    parser.add_argument("--config", type=Path, default=None, help="grader config (default: grader/defaults.yaml)")
    parser.add_argument("--out", type=Path, default=Path("reports/retest"))
    parser.add_argument("--max-spread", type=float, default=2.0,
                        help="largest movement of the total, in points, still called stable (default 2)")
    args = parser.parse_args(argv)
    if args.n < 2:
        parser.error("-n must be at least 2: a spread needs two gradings")
    return args


def spread_rows(reports: list[Any]) -> list[tuple[str, list[float], float]]:
    """(section, points per grading, spread) for every section, then the total."""
    sections = [s.id for s in reports[0].sections]
    rows = []
    for sid in sections:
        pts = [float(r.section(sid).points) if r.section(sid) is not None else 0.0 for r in reports]
        rows.append((sid, pts, round(max(pts) - min(pts), 2)))
    totals = [float(r.score) for r in reports]
    rows.append(("total", totals, round(max(totals) - min(totals), 2)))
    return rows


def render_markdown(name: str, runtime: str, rows: list[tuple[str, list[float], float]], wall: list[float]) -> str:
    """The retest table as Markdown, for calibration/README.md."""
    out = [f"Retest of `{name}` on {runtime}: {len(wall)} gradings of the same commit, "
           f"{min(wall):.0f}-{max(wall):.0f} s each.", "",
           "| section | points per grading | min | max | spread |", "|---|---|---:|---:|---:|"]
    for sid, pts, spread in rows:
        out.append(f"| {sid} | {' '.join(f'{p:g}' for p in pts)} | {min(pts):g} | {max(pts):g} | {spread:g} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    from grader.config import ConfigError, load_config
    from grader.lifecycle import GradeRequest, grade
    from grader.reports.write import write_reports
    from reference_model.paths import ensure_artifacts

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    artifacts = ensure_artifacts()
    work = Path(tempfile.mkdtemp(prefix="retest-"))
    try:
        if args.candidate:
            from calibration.assemble import assemble, corpus_entries

            if args.candidate not in corpus_entries():
                print(f"error: {args.candidate} is not a corpus candidate (have: {', '.join(corpus_entries())})",
                      file=sys.stderr)
                return EXIT_USAGE
            repo, name = str(assemble(args.candidate, work / "repo", artifacts_dir=artifacts)), args.candidate
        else:
            repo, name = args.repo, args.repo
        reports, wall = [], []
        for k in range(1, args.n + 1):
            t0 = time.monotonic()
            print(f"retest {k}/{args.n}: grading {name} on {args.runtime}", file=sys.stderr, flush=True)
            report = grade(GradeRequest(repo=repo, runtime=args.runtime, config=config, artifacts_dir=artifacts,
                                        progress=lambda m: None))
            wall.append(time.monotonic() - t0)
            write_reports(report, args.out / f"run-{k}")
            print(f"retest {k}/{args.n}: {report.score:g} / {report.max_score:g} ({report.status}) "
                  f"in {wall[-1]:.0f} s", file=sys.stderr, flush=True)
            if report.status == "interrupted":
                return EXIT_USAGE
            reports.append(report)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = spread_rows(reports)
    text = render_markdown(name, args.runtime, rows, wall)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "retest.md").write_text(text, encoding="utf-8")
    print(text)
    total_spread = rows[-1][2]
    if total_spread > args.max_spread:
        print(f"unstable: the total moved by {total_spread:g} points (allowed {args.max_spread:g})", file=sys.stderr)
        return EXIT_UNSTABLE
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
