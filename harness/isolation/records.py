"""A file per running sandbox, so ``takehome cleanup`` can end what a killed grader left.

A SIGKILLed grader runs no teardown. bwrap's --die-with-parent ends the namespaces with it, but
the relays, the cgroup and the work dir stay; and a grader stopped by the machine (OOM killer,
power) may leave more. Each sandbox writes its record at start and removes it at ``stop()``; each
grading writes one naming its work dir (the lifecycle owns that dir, not the sandbox).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import psutil
from typing import Any


def records_dir() -> Path:
    """Where the records live (per user, beside the env cache)."""
    base = Path(os.environ.get("TAKEHOME_CACHE_DIR", "~/.cache/takehome")).expanduser()
    return base / "sandboxes"


def write(record: dict[str, object]) -> None:
    """Write (or replace) the record of one sandbox."""
    folder = records_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{record['name']}.tmp"
    tmp.write_text(json.dumps(record))
    os.replace(tmp, folder / f"{record['name']}.json")


def remove(name: str) -> None:
    """Forget a sandbox that was stopped."""
    try:
        (records_dir() / f"{name}.json").unlink()
    except OSError:
        pass


def _alive(pid: int) -> bool:
    if pid <= 0:  # os.kill(0, ...) would address our own process group
        return False
    try:
        os.kill(pid, 0)
        return True
    except PermissionError:
        return True
    except OSError:
        return False


def _grading_records() -> dict[str, dict[str, Any]]:
    folder = records_dir()
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("grading-*.json")) if folder.is_dir() else []:
        try:
            found[path.stem.removeprefix("grading-")] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return found


def known_gradings() -> set[str]:
    """Run ids of every grading with a record on this host (running, or killed before its teardown)."""
    return set(_grading_records())


def live_gradings() -> set[str]:
    """Run ids of the gradings whose grader process is still alive on this host (from their records)."""
    return {run for run, rec in _grading_records().items() if _alive(int(rec.get("grader_pid") or 0))}


def kill_if_same(pid: int | None, ctime: float | None) -> bool:
    """SIGKILL ``pid`` unless it is gone or now belongs to another process (its create time
    differs from ``ctime``; None skips that check). True when a signal was sent."""
    if not pid:
        return False
    try:
        proc = psutil.Process(int(pid))
        if ctime is not None and abs(proc.create_time() - float(ctime)) > 0.01:
            return False  # the pid was reused by another process
        proc.send_signal(signal.SIGKILL)
        return True
    except psutil.Error:
        return False


def recover(include_live_graders: bool = False) -> list[dict[str, object]]:
    """End every recorded sandbox whose grader is gone: its processes, relays, cgroup, work dir.

    Returns one summary per sandbox recovered. A sandbox whose grader still runs is left alone
    unless ``include_live_graders`` (that grading is in progress).
    """
    from harness.isolation.cgroups import CgroupLimits

    done: list[dict[str, object]] = []
    folder = records_dir()
    if not folder.is_dir():
        return done
    for path in sorted(folder.glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if not include_live_graders and _alive(int(rec.get("grader_pid") or 0)):
            continue
        ended = []
        if kill_if_same(rec.get("init_pid"), rec.get("init_ctime")):  # the kernel then ends the whole PID namespace
            ended.append("sandbox processes")
        relays = [pid for pid, ctime in rec.get("relay_pids") or [] if kill_if_same(pid, ctime)]
        if relays:
            ended.append(f"{len(relays)} relay(s)")
        cg = CgroupLimits(str(rec.get("name")), 0, 0, dirs=[Path(d) for d in rec.get("cgroups") or []])
        if cg.dirs:
            n = cg.kill_all()
            if n:
                ended.append(f"{n} process(es) left in its cgroup")
            cg.remove()
        for key in ("relay_dir", "work_dir"):
            value = rec.get(key)
            if value and Path(str(value)).exists():
                shutil.rmtree(str(value), ignore_errors=True)
                ended.append(f"{key.replace('_', ' ')} {value}")
        path.unlink(missing_ok=True)
        done.append({"name": rec.get("name"), "ended": ended})
    return done
