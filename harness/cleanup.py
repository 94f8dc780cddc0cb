"""An undo stack: register the undo when a resource is created; run them all, in reverse, always.

Each undo gets its own timeout and errors never stop the rest (Chainsaw's cleaner, kind's
delete-on-failure). Running the stack twice is harmless: an undo runs at most once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class UndoRecord:
    """What happened when one undo ran."""

    description: str
    ok: bool
    duration_s: float
    error: str | None = None


@dataclass
class _Undo:
    description: str
    fn: Callable[[], None]
    timeout_s: float


@dataclass
class CleanupStack:
    """Reverse-order, timeout-bounded, error-tolerant cleanup."""

    default_timeout_s: float = 30.0
    _stack: list[_Undo] = field(default_factory=list)
    records: list[UndoRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def push(self, description: str, fn: Callable[[], None], timeout_s: float | None = None) -> None:
        """Register ``fn`` to undo something just created."""
        with self._lock:
            self._stack.append(_Undo(description, fn, timeout_s or self.default_timeout_s))

    def run_all(self) -> list[UndoRecord]:
        """Run every pending undo, newest first. Returns the records of this call."""
        done: list[UndoRecord] = []
        while True:
            with self._lock:
                if not self._stack:
                    break
                undo = self._stack.pop()
            done.append(self._run_one(undo))
        self.records.extend(done)
        return done

    @staticmethod
    def _run_one(undo: _Undo) -> UndoRecord:
        errors: list[str] = []

        def target() -> None:
            try:
                undo.fn()
            except Exception as exc:  # noqa: BLE001 - cleanup must go on past any error
                errors.append(f"{type(exc).__name__}: {exc}")

        start = time.monotonic()
        # A daemon thread so that an undo that hangs cannot keep the grader alive.
        worker = threading.Thread(target=target, name=f"cleanup:{undo.description}", daemon=True)
        worker.start()
        worker.join(undo.timeout_s)
        duration = time.monotonic() - start
        if worker.is_alive():
            return UndoRecord(undo.description, False, duration, f"timed out after {undo.timeout_s:.0f}s")
        if errors:
            return UndoRecord(undo.description, False, duration, errors[0])
        return UndoRecord(undo.description, True, duration)

    def __len__(self) -> int:
        return len(self._stack)
