"""One exclusive file lock with a deadline, for work two gradings on one machine must not do twice."""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from pathlib import Path

from harness.errors import GraderFault


@contextlib.contextmanager
def exclusive_lock(path: Path, timeout_s: float, holder: str, poll_s: float = 0.2) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``; wait at most ``timeout_s`` for another process.

    ``holder`` says what the other process is presumably doing, for the timeout message
    (e.g. "building the same env"). The lock dies with its process, so a crashed grading never
    leaves a stale lock behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with open(path, "a+") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise GraderFault(f"timed out after {timeout_s:g}s waiting for {path}: another grading is "
                                      f"{holder}") from None
                time.sleep(poll_s)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
