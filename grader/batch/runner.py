"""Run a batch: each candidate graded by its own ``takehome grade`` process, at most ``jobs`` at
once, each with a wall-clock cap, each into its own folder ``<out>/<name>/<commit>/``.

A grading in its own process means a candidate that hangs, crashes or exhausts memory takes
down only its own grading: the batch records it and goes on. At the cap the grading gets
SIGTERM (its teardown runs and it writes an "interrupted" report), then SIGKILL, then
``takehome cleanup`` removes whatever it left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from grader.batch.state import BatchState, Row
from harness.processes import kill_group

#: After SIGTERM at the cap, this long for the grading's own teardown before SIGKILL.
TERM_GRACE_S = 90.0
_INCOMING = ".incoming"
#: The ``takehome`` command with this interpreter (the console script may not be on PATH).
TAKEHOME = [sys.executable, "-c", "from grader.cli import main; main()"]

Progress = Callable[[str, str], None]  # (candidate name, its latest progress line)


@dataclass
class BatchOptions:
    """How every grading of the batch runs."""

    out_dir: Path
    runtime: str = "local"
    jobs: int = 1
    config: Path | None = None
    cap_s: float = 1800.0
    artifacts: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    #: The command for one grading; tests put a stand-in here to exercise caps and kills quickly.
    argv_for: Callable[[Row, "BatchOptions", Path], list[str]] | None = None
    #: How one candidate is graded: a child process here (``grade_one``), or a Job on a
    #: cluster (``cluster_runner.ClusterGrader``); same arguments, same record in the state.
    grade_fn: Callable[[Row, "BatchOptions", BatchState, Progress, threading.Event], None] | None = None


def grading_argv(row: Row, opts: BatchOptions, out: Path) -> list[str]:
    """The ``takehome grade`` command for one candidate."""
    argv = [*TAKEHOME, "grade", "--repo", row.repo,
            "--runtime", opts.runtime, "--out", str(out)]
    if row.ref:
        argv += ["--ref", row.ref]
    if opts.config:
        argv += ["--config", str(opts.config)]
    if opts.artifacts:
        argv += ["--artifacts", str(opts.artifacts)]
    return argv + opts.extra_args


def _die_with_parent() -> None:
    """In the child: SIGTERM when the batch process dies, even by SIGKILL (Linux prctl), so a
    killed batch leaves no grading running on and its teardown still runs."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start_grading(row: Row, opts: BatchOptions, state: BatchState) -> Path:
    """Claim ``row`` and return its empty ``<name>/.incoming/`` folder (a grading fills it,
    ``record_result`` files it)."""
    incoming = opts.out_dir / row.name / _INCOMING
    shutil.rmtree(incoming, ignore_errors=True)  # what an interrupted attempt left
    incoming.mkdir(parents=True)
    state.claim(row.name)
    return incoming


def grade_one(row: Row, opts: BatchOptions, state: BatchState, progress: Progress,
              stop: threading.Event) -> None:
    """Grade one candidate in a child process and record the result; never raises for the candidate."""
    incoming = start_grading(row, opts, state)
    home = incoming.parent
    env = {**os.environ, "TAKEHOME_CONCURRENT_GRADINGS": str(opts.jobs)}
    started = time.monotonic()
    timed_out = False
    with open(home / "grading.log", "wb") as log:
        argv = (opts.argv_for or grading_argv)(row, opts, incoming)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.PIPE, env=env, start_new_session=True, preexec_fn=_die_with_parent)
        state.started(row.name, proc.pid)
        assert proc.stderr is not None

        def pump() -> None:  # the child's progress lines: to the log, the latest to the live view
            assert proc.stderr is not None
            for raw in proc.stderr:
                log.write(raw)
                log.flush()
                line = raw.decode(errors="replace").strip()
                if line:
                    progress(row.name, line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        deadline = started + opts.cap_s
        while proc.poll() is None:
            if stop.is_set() or time.monotonic() > deadline:
                timed_out = not stop.is_set()
                kill_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(TERM_GRACE_S)
                except subprocess.TimeoutExpired:
                    kill_group(proc.pid, signal.SIGKILL)
                    proc.wait()
                    _cleanup_leftovers()
                break
            time.sleep(0.2)
        reader.join(10)
    wall = time.monotonic() - started
    if stop.is_set() and not timed_out:
        state.release(row.name)  # the batch was interrupted: grade it again on --resume
        shutil.rmtree(incoming, ignore_errors=True)
        return
    record_result(row, opts, state, incoming, wall=wall, exit_code=proc.returncode, timed_out=timed_out,
                  no_report=None if not timed_out else f"hit the {opts.cap_s:g} s wall-clock cap and was stopped")


def record_result(row: Row, opts: BatchOptions, state: BatchState, incoming: Path, *, wall: float,
                  exit_code: int | None, timed_out: bool, no_report: str | None = None,
                  no_report_status: str | None = None) -> None:
    """File what a finished grading left in ``incoming`` under ``<name>/<commit>/`` and record it
    (``no_report``: the message when it left no report; default: it exited without one)."""
    home = incoming.parent
    report = _read_report(incoming)
    if report is None:
        status = no_report_status or ("timed_out" if timed_out else "crashed")
        message = no_report or (f"the grading process exited {exit_code} without a report; "
                                f"see {row.name}/grading.log")
        state.finish(row.name, wall_s=wall, exit_code=exit_code, status=status, score=None, max_score=None,
                     commit_id=None, report_dir=None, message=message)
        shutil.rmtree(incoming, ignore_errors=True)
        return
    commit = (report.get("candidate") or {}).get("commit") or "unknown-commit"
    final = home / str(commit)[:12]
    shutil.rmtree(final, ignore_errors=True)
    os.replace(incoming, final)
    status = "timed_out" if timed_out else str(report.get("status"))
    error = str(report.get("error") or "")
    note: str | None = (f"hit the {opts.cap_s:g} s wall-clock cap; partial results kept" if timed_out
                        else error.splitlines()[0] if error else None)
    state.finish(row.name, wall_s=wall, exit_code=exit_code, status=status, score=report.get("score"),
                 max_score=report.get("max_score"), commit_id=str(commit), report_dir=str(final.relative_to(opts.out_dir)),
                 message=note)


def _read_report(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / "report.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _cleanup_leftovers() -> None:
    """``takehome cleanup`` for a grading that had to be SIGKILLed (its own teardown never ran)."""
    subprocess.run([*TAKEHOME, "cleanup"],
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=300, check=False)


def run_batch(state: BatchState, names: list[str], opts: BatchOptions, progress: Progress,
              on_done: Callable[[str], None], stop: threading.Event,
              on_interrupt: Callable[[], None] | None = None) -> None:
    """Grade every pending candidate of ``names``, ``opts.jobs`` at a time. On an exception in the
    waiting thread, ``stop`` is set (and on Ctrl-C ``on_interrupt`` called) before the running
    gradings are waited for; the exception is then re-raised."""
    todo = state.pending(names)
    grade = opts.grade_fn or grade_one

    def work(row: Row) -> None:
        if stop.is_set():
            return
        try:
            grade(row, opts, state, progress, stop)
        finally:
            on_done(row.name)

    with ThreadPoolExecutor(max_workers=max(1, opts.jobs), thread_name_prefix="grading") as pool:
        futures = [pool.submit(work, row) for row in todo]
        try:
            for future in futures:
                future.result()
        except BaseException as exc:
            # Ctrl-C (or a crash here): tell the running gradings before the pool's exit waits for
            # them (they stop and tear down instead of running to the end), and start no queued one.
            stop.set()
            for future in futures:
                future.cancel()
            if isinstance(exc, KeyboardInterrupt) and on_interrupt is not None:
                on_interrupt()
            raise
