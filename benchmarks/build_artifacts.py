"""How long does the reference-model build take, and how much CPU and memory does it use?

Builds the artifacts into a temporary folder (nothing in the repo is touched) in a fresh process
per run, so each run pays the real import costs (torch.export pulls in torch._inductor, ~2 s).
Prints wall seconds, CPU seconds, peak RSS and the 1-minute load average per run, because on a
shared 2-core machine a high load average, not the build, explains a slow run.

    python benchmarks/build_artifacts.py [--runs 2] [--flavor all|sklearn|torch]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_once(flavor: str) -> dict[str, float]:
    """Build once in a child process; return wall/CPU seconds and the child's peak RSS in MB."""
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        load = os.getloadavg()[0]
        t0 = time.monotonic()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        cmd = [sys.executable, "-m", "reference_model.build", "--out", str(Path(tmp) / "a"), "--flavor", flavor]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            sys.exit(f"build failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return {
        "wall_s": wall,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "peak_rss_mb": after.ru_maxrss / 1024,  # ru_maxrss is in KiB on Linux
        "load_1min": load,
    }


def main() -> None:
    """Run the benchmark and print one line per run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--flavor", default="all", choices=["all", "sklearn", "torch"])
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, flavor: {args.flavor}")
    for i in range(args.runs):
        r = run_once(args.flavor)
        print(f"run {i + 1}: wall {r['wall_s']:.1f}s  cpu {r['cpu_s']:.1f}s  peak RSS {r['peak_rss_mb']:.0f} MB  "
              f"load(1m) before {r['load_1min']:.1f}", flush=True)


if __name__ == "__main__":
    main()
