"""Aggregate limits for one sandbox: a cgroup with a memory and a process-count cap.

rlimits are per process (a memory hog forks ten 4 GB children under a "4 GB" RLIMIT_AS); a
cgroup caps the sum and counts what hit the cap, which the report then names. Both cgroup v1
(separate ``memory`` and ``pids`` hierarchies) and v2 (one unified tree) are handled. Creating a
cgroup needs root or a delegated subtree; without either the sandbox still runs, with rlimits
only, and says so.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
#: Every grading's cgroups live under this name, so cleanup can find the ones a killed grader left.
PARENT = "takehome"


def _write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
        return True
    except OSError:
        return False


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _read_keyed(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if value.strip().lstrip("-").isdigit():
                out[key] = int(value)
    except OSError:
        pass
    return out


def is_v2() -> bool:
    """Whether this machine mounts the unified (v2) hierarchy."""
    return (ROOT / "cgroup.controllers").is_file()


@dataclass
class CgroupLimits:
    """One sandbox's cgroup(s). ``dirs`` is empty when none could be made."""

    name: str
    memory_bytes: int
    max_pids: int
    dirs: list[Path] = field(default_factory=list)
    why_not: str | None = None

    @classmethod
    def create(cls, name: str, memory_bytes: int, max_pids: int) -> "CgroupLimits":
        """Make the cgroup(s) and set the caps; on failure return one with ``why_not`` set."""
        limits = cls(name, memory_bytes, max_pids)
        try:
            if is_v2():
                parent = ROOT / PARENT
                parent.mkdir(exist_ok=True)
                # Controllers must be enabled down the tree before a child can use them.
                _write(ROOT / "cgroup.subtree_control", "+memory +pids")
                _write(parent / "cgroup.subtree_control", "+memory +pids")
                cg = parent / name
                cg.mkdir(exist_ok=True)
                limits.dirs = [cg]
                ok = _write(cg / "memory.max", str(memory_bytes)) and _write(cg / "pids.max", str(max_pids))
                _write(cg / "memory.swap.max", "0")
            else:
                mem, pids = ROOT / "memory" / PARENT / name, ROOT / "pids" / PARENT / name
                for d in (mem, pids):
                    d.mkdir(parents=True, exist_ok=True)
                limits.dirs = [mem, pids]
                ok = _write(mem / "memory.limit_in_bytes", str(memory_bytes)) and \
                    _write(pids / "pids.max", str(max_pids))
                _write(mem / "memory.memsw.limit_in_bytes", str(memory_bytes))  # absent without swap accounting
            if not ok:
                raise OSError("the limit files are not writable")
        except OSError as exc:
            limits.remove()
            limits.dirs = []
            limits.why_not = (f"no cgroup could be made under {ROOT} ({exc.strerror or exc}); aggregate memory "
                              "and process limits need root or a delegated cgroup subtree; rlimits still apply")
        return limits

    @property
    def active(self) -> bool:
        return bool(self.dirs)

    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a new process must write its pid into (one per hierarchy)."""
        return [str(d / "cgroup.procs") for d in self.dirs]

    def pids(self) -> set[int]:
        """Every process in the cgroup(s) right now."""
        found: set[int] = set()
        for d in self.dirs:
            try:
                found |= {int(x) for x in (d / "cgroup.procs").read_text().split()}
            except (OSError, ValueError):
                continue
        return found

    def usage(self) -> dict[str, object]:
        """Peak memory and processes, and how often each cap was hit (for the report)."""
        if not self.dirs:
            return {"cgroup": None, "why_not": self.why_not}
        out: dict[str, object] = {"cgroup": [str(d) for d in self.dirs],
                                  "memory_limit_mb": round(self.memory_bytes / 2**20), "max_pids": self.max_pids}
        if len(self.dirs) == 1:  # v2
            cg = self.dirs[0]
            events = _read_keyed(cg / "memory.events")
            out["memory_peak_mb"] = _mb(_read_int(cg / "memory.peak"))
            out["memory_limit_hits"] = events.get("max", 0)
            out["oom_kills"] = events.get("oom_kill", 0)
            out["pids_peak"] = _read_int(cg / "pids.peak")
            out["pids_limit_hits"] = _read_keyed(cg / "pids.events").get("max", 0)
        else:
            mem, pids = self.dirs
            out["memory_peak_mb"] = _mb(_read_int(mem / "memory.max_usage_in_bytes"))
            out["memory_limit_hits"] = _read_int(mem / "memory.failcnt") or 0
            out["oom_kills"] = _read_keyed(mem / "memory.oom_control").get("oom_kill", 0)
            out["pids_peak"] = _read_int(pids / "pids.peak")
            out["pids_limit_hits"] = _read_keyed(pids / "pids.events").get("max", 0)
        return out

    def kill_all(self, rounds: int = 20) -> int:
        """SIGKILL every process in the cgroup until it is empty; the number signalled."""
        killed = 0
        for _ in range(rounds):
            members = self.pids()
            if not members:
                break
            for pid in members:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except OSError:
                    pass
            time.sleep(0.05)
        return killed

    def remove(self) -> None:
        """Remove the (empty) cgroup directories; never raises."""
        for d in self.dirs:
            for _ in range(20):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)  # the last killed process may take a moment to leave


def _mb(value: int | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)


def stale(known: set[str] | None = None) -> list[Path]:
    """cgroup directories under the ``takehome`` parent (left by a grader that was killed)."""
    roots = [ROOT / PARENT] if is_v2() else [ROOT / "memory" / PARENT, ROOT / "pids" / PARENT]
    found: list[Path] = []
    for root in roots:
        try:
            found += [p for p in root.iterdir() if p.is_dir() and (known is None or p.name in known)]
        except OSError:
            continue
    return found


def join_preexec(procs_files: list[str]) -> None:
    """Move the calling process into the cgroups: for ``preexec_fn`` (low-level calls only)."""
    pid = str(os.getpid()).encode()
    for path in procs_files:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, pid)
        finally:
            os.close(fd)
