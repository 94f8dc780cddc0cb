"""The Gradescope bundle, run against a local folder shaped like /autograder."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grader.gradescope_bundle import build_bundle, main
from reference_model.paths import ensure_artifacts


def test_the_bundle_refuses_to_carry_the_built_in_seed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TAKEHOME_SCENARIO_SEED", raising=False)
    assert main(["--out", str(tmp_path / "b.zip")]) == 2
    assert not (tmp_path / "b.zip").exists()


@pytest.mark.timeout(300)
def test_run_autograder_grades_the_submission_folder_into_results_json(tmp_path: Path) -> None:
    bundle = build_bundle(tmp_path / "autograder.zip", ensure_artifacts(), seed=123456789)
    root = tmp_path / "autograder"
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        assert {"setup.sh", "run_autograder", "kit/gradescope.yaml", "kit/pyproject.toml",
                "kit/artifacts/manifest.json"} <= names
        assert not any(n.startswith(("kit/.venv/", "kit/build/", "kit/.git/")) for n in names)
        mode = zf.getinfo("run_autograder").external_attr >> 16
        assert mode & stat.S_IXUSR
        zf.extractall(root / "source")
    for script in ("run_autograder", "setup.sh"):
        (root / "source" / script).chmod(0o755)
    submission = root / "submission"  # Gradescope uploads files, not a git repository
    submission.mkdir()
    (submission / "app.py").write_text("print('no takehome.yaml here')\n")
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "TAKEHOME_KIT_PYTHON": sys.executable,
           "TAKEHOME_SCENARIO_SEED": "999"}  # dropped by run_autograder: the bundle's seed counts
    run = subprocess.run([str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True,
                         timeout=240)
    assert run.returncode == 0, run.stderr
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 0
    assert any(t["name"].startswith("Grading run: broken_submission") for t in results["tests"])
    assert "takehome.yaml" in results["output"]
    report = json.loads((root / "results" / "takehome" / "report.json").read_text())
    assert report["seed"]["source"] == "config"  # the team's seed from the bundle, not the built-in one
