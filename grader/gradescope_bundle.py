"""The Gradescope autograder bundle: ``make gradescope`` writes the zip Gradescope expects.

Gradescope unpacks the zip into ``/autograder/source``, runs ``setup.sh`` once to build the image,
then ``run_autograder`` for every submission (uploaded files in ``/autograder/submission``);
whatever ``/autograder/results/results.json`` holds is the grade. The bundle carries the kit's
source, the reference artifacts (so nothing is trained at grading time) and a grader config that
holds the team's scenario seed: the zip stays with the hiring team, and every report records
only the seed's source ("config") and fingerprint. Hidden-scenario details are only in tests
marked ``after_published`` (grader/reports/gradescope.py).

    python -m grader.gradescope_bundle --out dist/gradescope-autograder.zip [--flavor sklearn]
"""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, on its Ubuntu image.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq python3 python3-venv python3-pip git bubblewrap socat util-linux
KIT=/autograder/source/kit
python3 -m venv "$KIT/.venv"
"$KIT/.venv/bin/pip" install -q --upgrade pip
"$KIT/.venv/bin/pip" install -q {extras_spec}
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission. AUTOGRADER_ROOT (default /autograder) and
# TAKEHOME_KIT_PYTHON let the bundle be tried on a local folder of the same shape.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
KIT="$ROOT/source/kit"
PY="${TAKEHOME_KIT_PYTHON:-$KIT/.venv/bin/python}"
OUT="$ROOT/results/takehome"
mkdir -p "$OUT"
# The team's seed is in gradescope.yaml; one in the environment would win over it, so drop it.
unset TAKEHOME_SCENARIO_SEED
"$PY" -c "from grader.cli import main; main()" grade --repo "$ROOT/submission" --runtime local \\
    --out "$OUT" --config "$KIT/gradescope.yaml" --artifacts "$KIT/artifacts" > "$OUT/grade.log" 2>&1
rc=$?
if [ -s "$OUT/results.json" ]; then
    cp "$OUT/results.json" "$ROOT/results/results.json"
else
    # No report at all (the grader could not even start): say so in Gradescope, score 0.
    "$PY" - "$rc" "$OUT/grade.log" "$ROOT/results/results.json" <<'PY'
import json, sys
rc, log, dest = sys.argv[1], sys.argv[2], sys.argv[3]
tail = open(log, errors="replace").read()[-4000:]
json.dump({"score": 0, "output": f"The grader wrote no report (exit {rc}). End of its log:\\n{tail}",
           "tests": []}, open(dest, "w"))
PY
fi
exit 0
"""

_EXCLUDE = (".venv", "build", "dist", "reports", ".git", "__pycache__", ".mypy_cache", ".pytest_cache",
            ".ruff_cache")


def kit_files() -> list[Path]:
    """The kit's tracked files (git ls-files), or every file outside the build folders."""
    try:
        run = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60)
        files = [REPO / f for f in run.stdout.decode().split("\0") if f]
    except (OSError, subprocess.SubprocessError):
        files = [p for p in REPO.rglob("*") if p.is_file()]
    return [f for f in files if f.is_file() and not any(part in _EXCLUDE for part in f.relative_to(REPO).parts)]


def _add(zf: zipfile.ZipFile, arcname: str, data: bytes, executable: bool = False) -> None:
    info = zipfile.ZipInfo(arcname, date_time=(2026, 1, 1, 0, 0, 0))
    info.external_attr = ((0o755 if executable else 0o644) | stat.S_IFREG) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def build_bundle(out: Path, artifacts: Path, seed: int, flavor: str = "sklearn") -> Path:
    """Write the autograder zip to ``out`` and return it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    extras = "'/autograder/source/kit[torch]'" if flavor == "torch" else "/autograder/source/kit"
    config = {"scenario_seed": seed}
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        _add(zf, "setup.sh", SETUP_SH.format(extras_spec=extras).encode(), executable=True)
        _add(zf, "run_autograder", RUN_AUTOGRADER.encode(), executable=True)
        _add(zf, "kit/gradescope.yaml", ("# The hiring team's grader config for Gradescope (keep this zip private).\n"
                                         + yaml.safe_dump(config)).encode())
        for f in kit_files():
            _add(zf, f"kit/{f.relative_to(REPO)}", f.read_bytes(), executable=os.access(f, os.X_OK))
        for f in sorted(artifacts.rglob("*")):
            if f.is_file():
                _add(zf, f"kit/artifacts/{f.relative_to(artifacts)}", f.read_bytes())
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the Gradescope autograder zip (setup.sh, run_autograder).")
    parser.add_argument("--out", type=Path, default=Path("dist/gradescope-autograder.zip"))
    parser.add_argument("--flavor", choices=["sklearn", "torch"], default="sklearn",
                        help="torch installs the torch extra in setup.sh")
    parser.add_argument("--artifacts", type=Path, default=None, help="default: build/artifacts (built if missing)")
    args = parser.parse_args(argv)
    raw = os.environ.get("TAKEHOME_SCENARIO_SEED", "").strip()
    if not raw:
        print("error: set TAKEHOME_SCENARIO_SEED to the team's private seed first "
              "(python -c 'import secrets; print(secrets.randbits(62))'); the bundle carries it so that "
              "Gradescope never grades on the built-in one", file=sys.stderr)
        return 2
    try:
        seed = int(raw)
    except ValueError:
        print(f"error: TAKEHOME_SCENARIO_SEED must be an integer, got {raw[:20]!r}", file=sys.stderr)
        return 2
    from reference_model.paths import ensure_artifacts

    artifacts = args.artifacts or ensure_artifacts()
    path = build_bundle(args.out, artifacts, seed, args.flavor)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): upload it as the autograder of a Gradescope "
          "programming assignment; keep it private (it holds the scenario seed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
