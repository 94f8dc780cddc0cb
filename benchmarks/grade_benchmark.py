"""Wall time to grade a bundled candidate, cold (empty env cache) and cached, with the figures a
closing note needs: section scores, p99 at the default rate, detection delay per scenario, and
false alarms over the baseline phase.

    .venv/bin/python benchmarks/grade_benchmark.py [--candidate reference-fastapi] [--runtime local] [--runs 1]
        [--compare]

``--compare`` grades cold and cached twice in one run: first as the grader did before issue 11's
speed-ups (pip for the candidate's env, the latency window always its full ``duration_s`` after a
3 s warm-up, a 5 s drift settle, 2 s of rollback traffic each side of a switch), then with the
defaults (uv, a window that ends once the verdict is settled and the requests a p99 claim needs are
in, a 2 s settle, rollback steady state as responses seen), and prints the wall times side by side.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calibration.assemble import assemble
from grader.config import load_config
from grader.evidence import DriftEvidence, RollbackEvidence
from grader.lifecycle import GradeRequest, grade
from grader.results import GradeReport
from reference_model.paths import ensure_artifacts


def _summary(label: str, report: GradeReport, wall: float) -> None:
    print(f"\n== {label}: {wall:.1f}s wall, score {report.score:g}/{report.max_score:g} ({report.status})")
    phases = {p.name: p.duration_s for p in report.phases}
    print("   phases: " + ", ".join(f"{k} {v:.1f}s" for k, v in phases.items()))
    print("   sections: " + ", ".join(f"{s.id} {s.points:g}/{s.max_points:g}" for s in report.sections))
    lat = report.latency
    if lat is not None:
        print(f"   latency @ {lat.rate_rps} req/s: p50 {lat.p50_ms} ms, p99 {lat.p99_ms} ms, "
              f"max {lat.max_ms} ms, errors {lat.errors}, saturated {lat.saturated}")
    quiet = report.item("drift.quiet_on_baseline")
    if quiet:
        ev = DriftEvidence.of(quiet)
        print(f"   baseline false-alarm polls: {ev.false_alarm_polls} of {ev.polls} polls over {ev.baseline_rows} rows")
    det = report.item("drift.detects_scenarios")
    for sc in (DriftEvidence.of(det).scenarios or [] if det else []):
        print(f"   scenario {sc.scenario:40s} detected={sc.detected!s:5s} delay_rows={sc.delay_rows} "
              f"named={sc.named} truth={sc.ground_truth}")
    rb, failed = report.item("rollback.restores_v1"), report.item("rollback.no_failed_requests")
    if rb:
        print(f"   rollback: {rb.message}; failed requests "
              f"{RollbackEvidence.of(failed).failed_requests if failed else None}")

#: The grader as it was before issue 11's speed-ups: pip installs, full-length latency windows
#: after a 3 s warm-up, a 5 s drift settle, and 2 s of rollback traffic (40 responses at 20 req/s)
#: on each side of a switch.
BEFORE = {"local": {"installer": "pip"}, "traffic": {"settle_s": 5.0},
          "load": {"min_duration_s": load_config().load.duration_s, "warmup_s": 3.0,
                   "rollback_steady_requests": 40}}


def _bench(repo: Path, runtime: str, artifacts: Path, cache: Path, runs: list[tuple[str, bool]],
           extra: dict | None) -> list[tuple[str, float, float]]:
    """Grade once per entry of ``runs``; (label, wall s, score) for each."""
    out = []
    for label, cold in runs:
        if cold:
            shutil.rmtree(cache, ignore_errors=True)
        cfg = load_config(overrides={**(extra or {}), "local": {**(extra or {}).get("local", {}),
                                                                "cache_dir": str(cache)}})
        start = time.monotonic()
        report = grade(GradeRequest(repo=str(repo), runtime=runtime, config=cfg, artifacts_dir=artifacts))
        wall = time.monotonic() - start
        _summary(label, report, wall)
        out.append((label, wall, report.score))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", default="reference-fastapi")
    parser.add_argument("--runtime", default="local")
    parser.add_argument("--runs", type=int, default=1, help="cached runs after the cold one")
    parser.add_argument("--skip-cold", action="store_true", help="only measure cached runs")
    parser.add_argument("--compare", action="store_true",
                        help="grade as before issue 11's speed-ups (pip, full latency window) and as now, side by side")
    args = parser.parse_args()
    artifacts = ensure_artifacts()
    work = Path(tempfile.mkdtemp(prefix="grade-bench-"))
    try:
        repo = assemble(args.candidate, work / "repo", artifacts_dir=artifacts)
        # --skip-cold measures against the grader's own env cache (never emptied here).
        cache = load_config().local.resolved_cache_dir() if args.skip_cold else work / "cache"
        print(f"load average at start: {os.getloadavg()[0]:.2f} (2-core machine figures depend on it)")
        runs = ([("cold (empty env cache)", True)] if not args.skip_cold else []) + \
            [(f"cached #{i + 1}", False) for i in range(args.runs)]
        if not args.compare:
            _bench(repo, args.runtime, artifacts, cache, runs, None)
            return 0
        before = _bench(repo, args.runtime, artifacts, cache if args.skip_cold else work / "cache-before",
                        [(f"before: {label}", cold) for label, cold in runs], BEFORE)
        after = _bench(repo, args.runtime, artifacts, cache if args.skip_cold else work / "cache-after",
                       [(f"after: {label}", cold) for label, cold in runs], None)
        print("\n| grading | before (pip, fixed waits) | after (uv, conditions) |\n|---|---:|---:|")
        for (label, b_wall, b_score), (_, a_wall, a_score) in zip(before, after):
            print(f"| {label.removeprefix('before: ')} | {b_wall:.1f} s ({b_score:g}) | {a_wall:.1f} s ({a_score:g}) |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
