"""Request log: one JSON line per request and per event, to stdout and ``logs/requests.jsonl``.

A prediction line has what is needed to replay it (``python -m fraud_kserve.replay``): the request
id, the model version and digest that answered, the validated rows (compact: one array per row, in
the feature order logged once by the ``startup`` event), the predictions, the status and the
latency; rejected requests keep the error and the start of the body. Lines are queued and written by one background thread, so a slow
disk or a full pipe never sits on the request path.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

_STOP = object()


def utc_iso(ts: float | None = None) -> str:
    ts = time.time() if ts is None else ts
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


class RequestLog:
    def __init__(self, path: Path | None, stdout: TextIO | None = sys.stdout, max_queue: int = 100_000) -> None:
        self.path = path
        self.stdout = stdout
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    def write(self, record: dict[str, Any]) -> None:
        """Queue one record (never blocks: if the writer is hopelessly behind, count the drop)."""
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def event(self, record: dict[str, Any]) -> None:
        self.write({"ts": utc_iso(), **record})

    def close(self, timeout_s: float = 5.0) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        fh = None
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fh = self.path.open("a", encoding="utf-8")
            except OSError as exc:  # read-only image, no volume: stdout still has every line
                self.stdout and self.stdout.write(json.dumps({"ts": utc_iso(), "event": "request_log_file_disabled",
                                                              "path": str(self.path), "error": str(exc)}) + "\n")
        try:
            while True:
                batch = [self._queue.get()]
                while len(batch) < 512:  # drain what is waiting, then flush once
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = any(i is _STOP for i in batch)
                lines = "".join(json.dumps(r, separators=(",", ":"), default=str) + "\n"
                                for r in batch if r is not _STOP)
                if lines:
                    if fh is not None:
                        try:
                            fh.write(lines)
                            fh.flush()
                        except OSError:
                            self.dropped += len(batch)
                    if self.stdout is not None:
                        try:
                            self.stdout.write(lines)
                            self.stdout.flush()
                        except (OSError, ValueError):
                            pass
                if stop:
                    return
        finally:
            if fh is not None:
                fh.close()
