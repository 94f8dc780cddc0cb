"""Wall time to grade a bundled candidate, cold (empty env cache) and cached, with the figures a
closing note needs: section scores, p99 at the default rate, detection delay per scenario, and
false alarms over the baseline phase.

    .venv/bin/python benchmarks/grade_benchmark.py [--candidate reference-fastapi] [--runtime local] [--runs 1]
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

from calibration.assemble import assemble  # noqa: E402
from grader.config import load_config  # noqa: E402
from grader.lifecycle import GradeRequest, grade  # noqa: E402
from grader.results import GradeReport  # noqa: E402
from reference_model.paths import ensure_artifacts  # noqa: E402


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
        print(f"   baseline false-alarm polls: {quiet.evidence.get('false_alarm_polls')} of "
              f"{quiet.evidence.get('polls')} polls over {quiet.evidence.get('baseline_rows')} rows")
    det = report.item("drift.detects_scenarios")
    for sc in (det.evidence.get("scenarios", []) if det else []):
        print(f"   scenario {sc['scenario']:40s} detected={sc['detected']!s:5s} delay_rows={sc['delay_rows']} "
              f"named={sc['named']} truth={sc['ground_truth']}")
    rb = report.item("rollback.restores_v1")
    if rb:
        print(f"   rollback: {rb.message}; failed requests {rb.evidence.get('failed_requests')}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", default="reference-fastapi")
    parser.add_argument("--runtime", default="local")
    parser.add_argument("--runs", type=int, default=1, help="cached runs after the cold one")
    parser.add_argument("--skip-cold", action="store_true", help="only measure cached runs")
    args = parser.parse_args()
    artifacts = ensure_artifacts()
    work = Path(tempfile.mkdtemp(prefix="grade-bench-"))
    try:
        repo = assemble(args.candidate, work / "repo", artifacts_dir=artifacts)
        cache = work / "cache"
        print(f"load average at start: {os.getloadavg()[0]:.2f} (2-core machine figures depend on it)")
        runs = ([("cold (empty env cache)", True)] if not args.skip_cold else []) + \
            [(f"cached #{i + 1}", False) for i in range(args.runs)]
        for label, cold in runs:
            overrides = {"local": {"cache_dir": str(cache)}} if (cold or not args.skip_cold) else None
            cfg = load_config(overrides=overrides)
            start = time.monotonic()
            report = grade(GradeRequest(repo=str(repo), runtime=args.runtime, config=cfg, artifacts_dir=artifacts))
            _summary(label, report, time.monotonic() - start)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
