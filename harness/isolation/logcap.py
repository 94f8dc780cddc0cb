"""Output of candidate processes, written to a file up to a cap and counted past it.

A process handed a file descriptor of a regular file can fill the disk with log lines; handed a
pipe that the grader drains into a file, it cannot: past the cap the bytes are read and dropped
(the writer never blocks, so a chatty service is not slowed down), and the count of dropped bytes
goes into the report.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


class CappedSink:
    """A pipe whose read end a thread copies into ``path``, at most ``cap_bytes`` of it."""

    def __init__(self, path: Path, cap_bytes: int, append: bool = True) -> None:
        self.path = path
        self.cap_bytes = cap_bytes
        self.written = 0
        self.dropped = 0
        read_fd, self.fd = os.pipe()
        self._read_fd = read_fd
        self._file = open(path, "ab" if append else "wb")  # closed by the pump thread
        self._thread = threading.Thread(target=self._pump, name=f"sink-{path.name}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            while True:
                try:
                    chunk = os.read(self._read_fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                room = self.cap_bytes - self.written
                if room > 0:
                    self._file.write(chunk[:room])
                    self._file.flush()
                    self.written += min(room, len(chunk))
                if len(chunk) > room:
                    if self.dropped == 0:
                        self._file.write(f"\n[grader] output cap of {self.cap_bytes // 2**20} MB reached; "
                                         "the rest is dropped\n".encode())
                        self._file.flush()
                    self.dropped += len(chunk) - max(room, 0)
        finally:
            try:
                self._file.close()
            finally:
                os.close(self._read_fd)

    def child_started(self) -> None:
        """Close the grader's copy of the write end (the child holds its own)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def wait(self, timeout_s: float = 1.0) -> None:
        """Wait for EOF (every writer gone); a daemon still holding the pipe only delays by ``timeout_s``."""
        self.child_started()
        self._thread.join(timeout_s)
