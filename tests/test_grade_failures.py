"""Broken and hostile submissions get a report that says what went wrong: never a traceback, a hang,
or a leaked process. Driven through the real CLI, so exit codes are checked too."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "tiny_candidate"


def _takehome(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "grader.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def test_missing_contract_is_a_broken_submission(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "app.py").write_text("print('hello')\n")
    out = tmp_path / "out"
    proc = _takehome("grade", "--repo", str(repo), "--out", str(out))
    assert proc.returncode == 3, proc.stderr
    report = _report(out)
    assert report["status"] == "broken_submission"
    assert "takehome.yaml" in report["error"]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert report["score"] == 0 and report["max_score"] == 100
    assert (out / "junit.xml").exists() and (out / "scorecard.md").exists()


def test_invalid_contract_names_field_and_line(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(TINY, repo)
    text = (repo / "takehome.yaml").read_text().replace("rollback: bash deploy.sh v1", "rolback: bash deploy.sh v1")
    (repo / "takehome.yaml").write_text(text)
    out = tmp_path / "out"
    proc = _takehome("grade", "--repo", str(repo), "--out", str(out))
    assert proc.returncode == 3
    err = _report(out)["error"]
    assert "runtimes.local.rolback (line" in err and "runtimes.local.rollback" in err


def test_a_mistyped_repo_path_is_the_operators_error_not_a_zero(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _takehome("grade", "--repo", str(tmp_path / "does-not-exist"), "--out", str(out), timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no such directory" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()  # no report, so no 0/100 to mistake for the candidate's
    (tmp_path / "a-file").write_text("x")
    proc = _takehome("grade", "--repo", str(tmp_path / "a-file"), "--out", str(out), timeout=60)
    assert proc.returncode == 2 and "is a file, not a directory" in proc.stderr and not out.exists()


def test_unreachable_repo_url_is_reported_fast(tmp_path: Path) -> None:
    out = tmp_path / "out"
    start = time.monotonic()
    proc = _takehome("grade", "--repo", f"file://{tmp_path}/gone.git", "--out", str(out), timeout=60)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert time.monotonic() - start < 60
    assert _report(out)["status"] == "broken_submission"


def test_server_that_crashes_on_start(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(TINY, repo)
    (repo / "server.py").write_text("import sys\nprint('boom: missing model file', file=sys.stderr)\nsys.exit(3)\n")
    out = tmp_path / "out"
    proc = _takehome("grade", "--repo", str(repo), "--out", str(out))
    assert proc.returncode == 3, proc.stderr
    report = _report(out)
    assert report["status"] == "broken_submission"
    assert "boom: missing model file" in report["error"]  # the log tail is kept


def test_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    cfg = tmp_path / "team.yaml"
    cfg.write_text("load:\n  rate_rsp: 10\n")
    proc = _takehome("grade", "--repo", str(TINY), "--config", str(cfg), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "load.rate_rsp" in proc.stderr


def _tagged(run_id: str) -> list[int]:
    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            if p.environ().get("TAKEHOME_RUN_ID") == run_id and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p.pid)
        except (psutil.Error, OSError):
            continue
    return found


def test_ctrl_c_tears_down_and_writes_a_partial_report(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(TINY, repo)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "grader.cli", "grade", "--repo", str(repo), "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = ""
        deadline = time.monotonic() + 240
        assert proc.stderr is not None
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            seen += line
            if "▶ deployment" in line or not line:
                break
        assert "▶ deployment" in seen, seen
        os.kill(proc.pid, signal.SIGINT)
        proc.communicate(timeout=120)  # drain both pipes: a full pipe would block the grader's exit
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    report = _report(out)
    assert report["status"] == "interrupted"
    assert any(p["name"] == "teardown" for p in report["phases"])
    time.sleep(1)
    assert _tagged(report["run_id"]) == []  # nothing the candidate started survives
