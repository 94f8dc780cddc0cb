"""Batch grading: the roster, the resumable state, caps and kills of grading processes, the
cohort view, and one real batch of ``takehome grade`` processes on broken submissions."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from grader.batch.cohort import compare_table, write_cohort
from grader.batch.roster import RosterError, parse_roster
from grader.batch.runner import BatchOptions, run_batch
from grader.batch.state import BatchState, StateError

REPO = Path(__file__).resolve().parents[1]


# --- roster ----------------------------------------------------------------------------------

def test_roster_reads_csv_and_yaml_and_refuses_what_would_collide() -> None:
    csv_rows = parse_roster("name,repo,ref\nada,https://git.example/ada.git,main\nbob,/tmp/bob,\n")
    assert [(e.name, e.repo, e.ref) for e in csv_rows] == [("ada", "https://git.example/ada.git", "main"),
                                                           ("bob", "/tmp/bob", None)]
    yaml_rows = parse_roster("candidates:\n  - {name: ada, repo: /tmp/ada}\n  - {name: cy, repo: /tmp/cy, ref: v2}\n")
    assert [e.name for e in yaml_rows] == ["ada", "cy"] and yaml_rows[1].ref == "v2"
    with pytest.raises(RosterError, match="appears twice"):
        parse_roster("name,repo\nada,/a\nada,/b\n")
    with pytest.raises(RosterError, match="candidate 1: name"):
        parse_roster("- {name: ../etc, repo: /a}\n")
    with pytest.raises(RosterError, match="missing: repo"):
        parse_roster("name,url\nada,/a\n")
    with pytest.raises(RosterError, match="no candidates"):
        parse_roster("name,repo\n")


# --- state -----------------------------------------------------------------------------------

def test_state_keeps_finished_rows_and_resets_the_rest_on_resume(tmp_path: Path) -> None:
    entries = parse_roster("name,repo\na,/a\nb,/b\nc,/c\n")
    state = BatchState(tmp_path)
    assert state.sync(entries, resume=False)["added"] == 3
    state.claim("a")
    state.finish("a", wall_s=1.0, exit_code=0, status="completed", score=90.0, max_score=100.0,
                 commit_id="abc", report_dir="a/abc", message=None)
    state.claim("b")
    state._db.execute("UPDATE gradings SET batch_pid=? WHERE name='b'", (2**22 + 12345,))  # a dead batch
    state.close()
    state = BatchState(tmp_path)
    with pytest.raises(StateError, match="--resume"):
        state.sync(entries, resume=False)
    counts = state.sync(parse_roster("name,repo\na,/a\nb,/b\nc,/c2\nd,/d\n"), resume=True)
    assert counts == {"kept": 1, "added": 1, "reset": 1, "resumed": 1}
    assert [r.name for r in state.pending(["a", "b", "c", "d"])] == ["b", "c", "d"]
    assert state.row("a").score == 90.0 and state.row("b").attempts == 1


# --- runner, with stand-in gradings ----------------------------------------------------------

STANDIN = textwrap.dedent("""
    import json, os, sys, time
    out, mode = sys.argv[1], sys.argv[2]
    if mode == "hang":
        time.sleep(600)
    if mode == "crash":
        sys.exit(9)
    if mode.startswith("sleep"):
        time.sleep(float(mode[5:]))
    report = {"status": "completed", "score": 42.0, "max_score": 100.0, "candidate": {"commit": "c0ffee" * 7,
              "name": os.path.basename(out)}, "sections": [], "shared": os.environ.get("TAKEHOME_CONCURRENT_GRADINGS")}
    open(os.path.join(out, "report.json"), "w").write(json.dumps(report))
""")


def _opts(tmp_path: Path, **kw: object) -> BatchOptions:
    script = tmp_path / "standin.py"
    script.write_text(STANDIN)
    return BatchOptions(out_dir=tmp_path / "out", argv_for=lambda row, _o, out: [sys.executable, str(script),
                        str(out), row.repo], **kw)  # type: ignore[arg-type]


def _run(opts: BatchOptions, roster: str, resume: bool = False) -> BatchState:
    state = BatchState(opts.out_dir)
    entries = parse_roster(roster)
    state.sync(entries, resume)
    run_batch(state, [e.name for e in entries], opts, lambda *_: None, lambda _n: None, threading.Event())
    return state


def test_an_interrupt_stops_the_running_gradings_at_once(tmp_path: Path) -> None:
    state = BatchState(tmp_path / "out")
    entries = parse_roster("name,repo\nada,/a\nbob,/b\ncy,/c\n")
    state.sync(entries, False)
    seen: dict[str, float | None] = {}
    bob_running = threading.Event()

    def grade(row, _opts, _state, _progress, stop: threading.Event) -> None:  # type: ignore[no-untyped-def]
        if row.name == "ada":  # Ctrl-C reaches the batch while bob is mid-grading
            bob_running.wait(10)
            raise KeyboardInterrupt
        started = time.monotonic()
        bob_running.set()
        seen[row.name] = time.monotonic() - started if stop.wait(10) else None

    calls: list[str] = []
    opts = BatchOptions(out_dir=tmp_path / "out", jobs=2, grade_fn=grade)
    with pytest.raises(KeyboardInterrupt):
        run_batch(state, [e.name for e in entries], opts, lambda *_: None, lambda _n: None, threading.Event(),
                  on_interrupt=lambda: calls.append("told"))
    # bob was stopped, not waited out; cy (queued) never started, or (when it took ada's freed worker
    # in the instant before the stop) stopped at once too
    assert "bob" in seen and all(v is not None and v < 5 for v in seen.values())
    assert calls == ["told"]


def test_caps_crashes_and_results_each_land_in_their_own_row(tmp_path: Path) -> None:
    opts = _opts(tmp_path, cap_s=2.0, jobs=2)
    started = time.monotonic()
    state = _run(opts, "name,repo\nok,fine\nhung,hang\nbroke,crash\n")
    assert time.monotonic() - started < 30  # the hung one was stopped at its cap, not waited for
    rows = {r.name: r for r in state.rows()}
    assert rows["ok"].status == "completed" and rows["ok"].score == 42.0
    assert rows["ok"].report_dir == "ok/" + ("c0ffee" * 7)[:12]
    report = json.loads((opts.out_dir / rows["ok"].report_dir / "report.json").read_text())
    assert report["shared"] == "2"  # the grading knows how many shared the machine
    assert rows["hung"].status == "timed_out" and "cap" in (rows["hung"].message or "")
    assert rows["broke"].status == "crashed" and "exited 9" in (rows["broke"].message or "")
    assert all(r.state == "done" for r in rows.values())
    assert not list(opts.out_dir.glob("*/.incoming"))
    csv_path, html_path = write_cohort(opts.out_dir, state)
    table = list(csv.DictReader(csv_path.open()))
    assert [(t["name"], t["status"], t["total"]) for t in table] == [("ok", "completed", "42.0"),
                                                                      ("hung", "timed_out", ""), ("broke", "crashed", "")]
    page = html_path.read_text()
    assert "href='ok/c0ffee" in page and "<script>" in page


@pytest.mark.timeout(120)
def test_a_sigkilled_batch_resumes_without_losing_or_regrading_a_finished_one(tmp_path: Path) -> None:
    script = tmp_path / "standin.py"
    script.write_text(STANDIN)
    out = tmp_path / "out"
    roster = tmp_path / "roster.csv"
    roster.write_text("name,repo\nfirst,fine\nslow,sleep60\nlast,fine\n")
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import sys, threading
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from grader.batch.roster import load_roster
        from grader.batch.runner import BatchOptions, run_batch
        from grader.batch.state import BatchState
        entries = load_roster(Path({str(roster)!r}))
        state = BatchState(Path({str(out)!r}))
        state.sync(entries, resume=len(sys.argv) > 1)
        opts = BatchOptions(out_dir=Path({str(out)!r}), argv_for=lambda row, _o, o: [sys.executable,
                            {str(script)!r}, str(o), row.repo])
        run_batch(state, [e.name for e in entries], opts, lambda *_: None, lambda n: print("done", n, flush=True),
                  threading.Event())
    """))
    proc = subprocess.Popen([sys.executable, str(driver)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().split() == ["done", "first"]
    time.sleep(1.0)  # "slow" is running now
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = BatchState(out)
    assert state.row("first").state == "done" and state.row("slow").state == "running"
    child = state._db.execute("SELECT child_pid FROM gradings WHERE name='slow'").fetchone()[0]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # PR_SET_PDEATHSIG: the orphaned grading was told to stop
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the grading of a SIGKILLed batch kept running")
    first_report = out / state.row("first").report_dir / "report.json"  # type: ignore[operator]
    before = first_report.stat().st_mtime_ns
    state.close()
    roster.write_text("name,repo\nfirst,fine\nslow,fine\nlast,fine\n")  # the fix the candidate pushed
    subprocess.run([sys.executable, str(driver), "--resume"], check=True, capture_output=True, timeout=60)
    state = BatchState(out)
    rows = {r.name: r for r in state.rows()}
    assert all(r.state == "done" and r.status == "completed" for r in rows.values())
    assert rows["first"].attempts == 1 and first_report.stat().st_mtime_ns == before  # never graded twice
    assert rows["slow"].attempts == 2 and rows["last"].attempts == 1


# --- the real thing: takehome batch on broken submissions (fast: they stop at the contract) ------

def test_takehome_batch_grades_each_candidate_into_its_own_folder(tmp_path: Path) -> None:
    for name in ("no-contract", "bad-contract"):
        repo = tmp_path / name
        repo.mkdir()
        (repo / "README.md").write_text("nothing here\n")
    (tmp_path / "bad-contract" / "takehome.yaml").write_text("rolback: yes\n")
    for name in ("no-contract", "bad-contract"):
        subprocess.run(["git", "init", "-q"], cwd=tmp_path / name, check=True)
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"], cwd=tmp_path / name, check=True)
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x"], cwd=tmp_path / name,
                       check=True)
    roster = tmp_path / "roster.yaml"
    roster.write_text(f"- {{name: no-contract, repo: {tmp_path / 'no-contract'}}}\n"
                      f"- {{name: bad-contract, repo: {tmp_path / 'bad-contract'}}}\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", "from grader.cli import main; main()", "batch", str(roster), "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 1, run.stderr  # graded, but neither completed
    table = {r["name"]: r for r in csv.DictReader((out / "cohort.csv").open())}
    assert table["no-contract"]["status"] == table["bad-contract"]["status"] == "broken_submission"
    for name in table:
        reports = list((out / name).glob("*/report.json"))
        assert len(reports) == 1 and reports[0].parent.name != ".incoming"
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert again.returncode == 2 and "--resume" in again.stderr  # never mixes two batches in one folder
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert resumed.returncode == 1 and "0 to grade (2 already done)" in resumed.stderr
    a, b = (json.loads(p.read_text()) for p in sorted(out.glob("*/*/report.json")))
    assert "total" in compare_table(a, b)
