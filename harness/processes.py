"""Finding and ending a candidate's processes, including the ones that tried to get away.

Every candidate process is started with ``TAKEHOME_RUN_ID=<run id>`` in its environment and the
variable is inherited by everything it spawns. A daemon that double-forks and calls ``setsid``
leaves the process group and the session, but not its environment, so scanning environments
finds it (kind labels every container with the cluster name for the same reason: deletion must
never rely on remembering what was started).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import psutil

RUN_ID_ENV = "TAKEHOME_RUN_ID"


def _gone(proc: psutil.Process) -> bool:
    """Dead or a zombie. Orphans are reparented to PID 1, which in some containers never reaps,
    so a killed daemon can linger as a zombie: it holds no resources and counts as gone."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return True
    except psutil.AccessDenied:
        return False


def find_tagged(run_id: str) -> list[psutil.Process]:
    """Live processes whose environment carries ``TAKEHOME_RUN_ID=run_id`` (never this process)."""
    found: list[psutil.Process] = []
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if proc.environ().get(RUN_ID_ENV) == run_id and not _gone(proc):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied, OSError):
            continue  # exited meanwhile, or not ours to read
    return found


def describe(proc: psutil.Process) -> dict[str, object]:
    """pid, ppid, cmdline, status and RSS of one process, for reports. Never raises."""
    info: dict[str, object] = {"pid": proc.pid}
    try:
        with proc.oneshot():
            info["ppid"] = proc.ppid()
            info["cmdline"] = " ".join(proc.cmdline())[:500]
            info["status"] = proc.status()
            info["rss_mb"] = round(proc.memory_info().rss / 2**20, 1)
    except (psutil.Error, OSError):
        info.setdefault("status", "gone")
    return info


def _signal(proc: psutil.Process, sig: int) -> bool:
    try:
        # psutil checks the process's create time first, so a recycled pid is never signalled.
        proc.send_signal(sig)
        return True
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return False


def _wait_gone(procs: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait until every process is gone; return those still alive at the deadline."""
    deadline = time.monotonic() + timeout_s
    alive = [p for p in procs if not _gone(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if not _gone(p)]
    return alive


def terminate(procs: list[psutil.Process], grace_s: float = 5.0) -> list[dict[str, object]]:
    """SIGTERM every process, SIGKILL those still alive after ``grace_s``.

    Returns one record per process that was signalled: pid, cmdline and how it ended
    (``SIGTERM``, ``SIGKILL`` or ``survived`` if even SIGKILL did not end it in time).
    """
    procs = [p for p in procs if p.pid != os.getpid() and not _gone(p)]
    records: dict[int, dict[str, object]] = {}
    for proc in procs:
        info = describe(proc)
        if _signal(proc, signal.SIGTERM):
            records[proc.pid] = {"pid": proc.pid, "cmdline": info.get("cmdline", ""), "ended_by": "SIGTERM"}
    stubborn = _wait_gone([p for p in procs if p.pid in records], grace_s)
    for proc in stubborn:
        _signal(proc, signal.SIGKILL)
        records[proc.pid]["ended_by"] = "SIGKILL"
    for proc in _wait_gone(stubborn, 5.0):
        records[proc.pid]["ended_by"] = "survived"
    return list(records.values())


def group_members(pgid: int) -> list[psutil.Process]:
    """Live processes in process group ``pgid``."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and not _gone(proc):
                members.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Send ``sig`` to process group ``pgid``. False if the group no longer exists.

    Refuses the grader's own group: a bug that passed it would otherwise kill the grader.
    """
    if pgid <= 1 or pgid == os.getpgrp():
        return False
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def descendants(pid: int) -> list[psutil.Process]:
    """The process ``pid`` and its living descendants (empty if it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _kill_tree(pid: int) -> None:
    leftovers = descendants(pid)  # collected first: killing the group may orphan some of them
    kill_group(pid)
    for proc in leftovers:
        _signal(proc, signal.SIGKILL)


def spawn_bounded(argv: list[str], *, cwd: Path, env: dict[str, str], timeout_s: float,
                  stdout: int | IO[bytes] | None, stderr: int | IO[bytes] | None,
                  preexec: Callable[[], None] | None = None,
                  watch: Callable[[], str | None] | None = None, poll_s: float = 1.0) -> tuple[int | None, str | None]:
    """Run ``argv`` in its own session, bounded in time (and by ``watch``, polled every ``poll_s``).

    Returns (exit code, stop reason). The reason is None when it exited by itself, "timeout", or
    what ``watch`` returned when it asked to stop it; then the code is None and its process group
    and descendants are killed. Waits on the process only, never on its output pipes, so a daemon
    that inherited stdout cannot make a finished command look hung.
    """
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=stderr, start_new_session=True, preexec_fn=preexec)
    deadline = time.monotonic() + max(timeout_s, 0.01)
    reason: str | None = None
    while True:
        step = deadline - time.monotonic()
        if watch is not None:
            step = min(step, poll_s)
        try:
            return proc.wait(timeout=max(step, 0.01)), None
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() >= deadline:
            reason = "timeout"
        elif watch is not None:
            reason = watch()
        if reason:
            _kill_tree(proc.pid)
            proc.wait()
            return None, reason
