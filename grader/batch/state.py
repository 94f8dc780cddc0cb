"""The batch's memory: one SQLite file in the output folder, one row per candidate.

Every change is committed at once, so a batch that is interrupted or SIGKILLed loses at most the
gradings that were running; ``--resume`` finds them still marked running, with a dead batch
process, and grades them again, while every finished row (and its reports) stays as it was.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from grader.batch.roster import RosterEntry
from harness.processes import kill_group

STATE_FILE = "batch.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS gradings (
    name TEXT PRIMARY KEY,
    repo TEXT NOT NULL,
    ref TEXT,
    state TEXT NOT NULL DEFAULT 'pending',   -- pending, running, done
    attempts INTEGER NOT NULL DEFAULT 0,
    batch_pid INTEGER,                       -- the batch process that claimed it
    child_pid INTEGER,                       -- its grading process (a session leader)
    started_at REAL,
    finished_at REAL,
    wall_s REAL,
    exit_code INTEGER,
    status TEXT,                             -- the report's status, or timed_out / crashed
    score REAL,
    max_score REAL,
    commit_id TEXT,
    report_dir TEXT,                         -- relative to the output folder
    message TEXT
);
"""


@dataclass
class Row:
    """One candidate's line in the state file."""

    name: str
    repo: str
    ref: str | None
    state: str
    attempts: int
    wall_s: float | None
    exit_code: int | None
    status: str | None
    score: float | None
    max_score: float | None
    commit_id: str | None
    report_dir: str | None
    message: str | None


class StateError(RuntimeError):
    """The output folder already holds a batch and the caller did not ask to resume it."""


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_orphan(pid: int | None, grace_s: float = 90.0) -> None:
    """A grading whose batch died gets SIGTERM from the kernel (PR_SET_PDEATHSIG); wait for its
    teardown, and end it here if it is somehow still running."""
    if not _alive(pid):
        return
    assert pid is not None
    if not kill_group(pid, signal.SIGTERM):
        return
    end = time.monotonic() + grace_s
    while _alive(pid) and time.monotonic() < end:
        time.sleep(0.2)
    if _alive(pid):
        kill_group(pid, signal.SIGKILL)


class BatchState:
    """Open (or create) ``<out>/batch.sqlite``; safe to use from several threads of one process."""

    def __init__(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / STATE_FILE
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def rows(self) -> list[Row]:
        """Every candidate, in roster order (insertion order)."""
        cur = self._db.execute("SELECT name, repo, ref, state, attempts, wall_s, exit_code, status, score, "
                               "max_score, commit_id, report_dir, message FROM gradings ORDER BY rowid")
        return [Row(*r) for r in cur.fetchall()]

    def row(self, name: str) -> Row:
        return next(r for r in self.rows() if r.name == name)

    def sync(self, entries: list[RosterEntry], resume: bool) -> dict[str, int]:
        """Bring the state in line with the roster; what was kept, added, reset.

        Without ``resume`` the state must be empty (a second batch into the same folder would mix
        two cohorts). With it: finished rows stay, rows left running by a batch that is gone go
        back to pending, new roster entries are added, and an entry whose repo or ref changed is
        graded again (it is a different submission).
        """
        existing = {r.name: r for r in self.rows()}
        if existing and not resume:
            raise StateError(f"{self.path} already records a batch ({len(existing)} candidates); pass --resume "
                             "to continue it, or choose another --out")
        counts = {"kept": 0, "added": 0, "reset": 0, "resumed": 0}
        with self._db:
            for entry in entries:
                old = existing.get(entry.name)
                if old is None:
                    self._db.execute("INSERT INTO gradings (name, repo, ref) VALUES (?, ?, ?)",
                                     (entry.name, entry.repo, entry.ref))
                    counts["added"] += 1
                elif (old.repo, old.ref) != (entry.repo, entry.ref):
                    self._db.execute("UPDATE gradings SET repo=?, ref=?, state='pending' WHERE name=?",
                                     (entry.repo, entry.ref, entry.name))
                    counts["reset"] += 1
                elif old.state == "done":
                    counts["kept"] += 1
                else:
                    counts["resumed"] += 1
            # Running rows whose batch process died (killed, machine rebooted) are pending again.
            running = self._db.execute("SELECT name, batch_pid, child_pid FROM gradings WHERE state='running'")
            for name, pid, child in running.fetchall():
                if _alive(pid) and pid != os.getpid():
                    raise StateError(f"another batch (pid {pid}) is still grading into {self.path.parent}")
                _stop_orphan(child)
                self._db.execute("UPDATE gradings SET state='pending' WHERE name=?", (name,))
        return counts

    def pending(self, names: list[str]) -> list[Row]:
        """Rows of ``names`` still to grade, in that order."""
        by = {r.name: r for r in self.rows()}
        return [by[n] for n in names if by[n].state == "pending"]

    def claim(self, name: str) -> None:
        self._db.execute("UPDATE gradings SET state='running', attempts=attempts+1, batch_pid=?, started_at=?, "
                         "child_pid=NULL WHERE name=?", (os.getpid(), time.time(), name))

    def started(self, name: str, child_pid: int) -> None:
        self._db.execute("UPDATE gradings SET child_pid=? WHERE name=?", (child_pid, name))

    def finish(self, name: str, *, wall_s: float, exit_code: int | None, status: str, score: float | None,
               max_score: float | None, commit_id: str | None, report_dir: str | None, message: str | None) -> None:
        self._db.execute("UPDATE gradings SET state='done', finished_at=?, wall_s=?, exit_code=?, status=?, score=?, "
                         "max_score=?, commit_id=?, report_dir=?, message=? WHERE name=?",
                         (time.time(), round(wall_s, 2), exit_code, status, score, max_score, commit_id,
                          report_dir, message, name))

    def release(self, name: str) -> None:
        """Back to pending (the batch itself was interrupted while this one ran)."""
        self._db.execute("UPDATE gradings SET state='pending' WHERE name=?", (name,))
