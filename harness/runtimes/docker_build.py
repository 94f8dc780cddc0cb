"""Building a candidate's image: measuring the context, the build with a deadline and its log,
and the labelled child image that teardown removes.

A candidate's build may hang or flood on purpose: the wait is bounded by a deadline after which
the streaming connection is cut (the engine then cancels the build), and the log is kept for
the report. ``docker.errors`` are translated by the caller, which knows the command line.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.utils import kwargs_from_env
from docker.utils.build import exclude_paths


# --- build context --------------------------------------------------------------------------------

def dockerignore_patterns(context: Path) -> list[str]:
    """The patterns of ``<context>/.dockerignore``, parsed the way the docker SDK's build does."""
    path = context / ".dockerignore"
    if not path.is_file():
        return []
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def measure_context(context: Path, dockerfile: str, cap_bytes: int) -> tuple[int, int, bool]:
    """Bytes and files the build would send (honouring .dockerignore), and whether it passed ``cap_bytes``.

    Stops counting at the cap: a 50 GB data directory must not be walked to the end first.
    Symlinks count as links (the SDK's tar stores them as links, never their targets).
    """
    total = files = 0
    for rel in exclude_paths(str(context), dockerignore_patterns(context), dockerfile=dockerfile):
        try:
            st = os.lstat(context / rel)
        except OSError:
            continue
        if not os.path.isdir(context / rel) or os.path.islink(context / rel):
            total += st.st_size
            files += 1
            if total > cap_bytes:
                return total, files, True
    return total, files, False


# --- build with a deadline ------------------------------------------------------------------------

class _CancellableAPI(docker.APIClient):
    """An APIClient that remembers the streaming response, so that another thread can cut it."""

    response: Any = None

    def _stream_helper(self, response: Any, decode: bool = False) -> Any:
        self.response = response
        return super()._stream_helper(response, decode=decode)

    def cut(self) -> None:
        """Shut the streaming connection: the engine cancels a build whose client went away."""
        try:
            if self.response is not None:
                sock = self._get_raw_response_socket(self.response)
                getattr(sock, "_sock", sock).shutdown(socket.SHUT_RDWR)
        except Exception:  # noqa: BLE001 - best effort; the caller stops waiting either way
            pass
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


@dataclass
class BuildOutcome:
    """What a build produced: the image id (None on failure), its log, and why it failed."""

    image_id: str | None
    log: list[str] = field(default_factory=list)
    error: str | None = None
    timed_out: bool = False
    cache_hits: int = 0
    steps: int = 0

    def text(self) -> str:
        return "".join(self.log)


def build_image(api_version: str, *, context: Path, dockerfile: Path, timeout_s: float,
                on_line: Callable[[str], None] = lambda _l: None, memory_mb: int = 4096) -> BuildOutcome:
    """Build with the engine's classic builder, streaming the log, cancelled at ``timeout_s``.

    The result is untagged and unlabelled on purpose (see :func:`label_image`). ``pull=False``:
    nothing is pulled (no registry may be reachable); ``rm``/``forcerm`` remove intermediate
    containers even when a step fails. Every RUN step's container gets a memory cap of
    ``memory_mb`` (0 = none), with no swap beyond it: a Dockerfile is candidate code too. Raises
    docker errors only for engine faults; a failing Dockerfile is a BuildOutcome with ``error`` set.
    """
    outcome = BuildOutcome(image_id=None)
    # A dedicated client: cutting its connection on timeout must not break the runtime's own.
    api = _CancellableAPI(version=api_version, timeout=max(timeout_s, 60) + 30, **kwargs_from_env())
    failure: list[BaseException] = []

    def consume() -> None:
        try:
            limits = {"memory": memory_mb * 2**20, "memswap": memory_mb * 2**20} if memory_mb > 0 else None
            stream = api.build(path=str(context), dockerfile=str(dockerfile), rm=True, forcerm=True,
                               pull=False, decode=True, container_limits=limits)
            for chunk in stream:
                _take_chunk(outcome, chunk, on_line)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            failure.append(exc)

    worker = threading.Thread(target=consume, name=f"docker-build:{context.name}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        outcome.timed_out = True
        outcome.error = f"the build did not finish within {timeout_s:.0f}s (timeouts.build)"
        api.cut()
        worker.join(10)
        return outcome
    api.close()
    if failure and outcome.error is None:
        exc = failure[0]
        if isinstance(exc, docker.errors.BuildError | docker.errors.APIError) and _is_candidate_fault(str(exc)):
            outcome.error = str(exc)
        else:
            raise exc
    if outcome.error is None and outcome.image_id is None:
        outcome.error = "the engine reported no image id at the end of the build"
    return outcome


def label_image(client: docker.DockerClient, image_id: str, tag: str, labels: dict[str, str]) -> str:
    """A child of ``image_id`` that adds ``labels`` in one metadata-only step, tagged ``tag``.

    Build-time labels would be applied by the classic builder one step per label, in random
    order, leaving half-labelled intermediates behind; and they would end up in the candidate's
    cached layers. A separate child image keeps the candidate's layers as the build cache of the
    next grading, while teardown removes exactly this one image (``noprune``).
    """
    import io
    import json

    pairs = " ".join(f"{json.dumps(k)}={json.dumps(v)}" for k, v in labels.items())
    dockerfile = f"FROM {image_id}\nLABEL {pairs}\n".encode()
    image_ref: str | None = None
    for chunk in client.api.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True, forcerm=True, pull=False,
                                  decode=True):
        if "error" in chunk:
            raise docker.errors.BuildError(str(chunk["error"]), [])
        if isinstance(chunk.get("aux"), dict) and "ID" in chunk["aux"]:
            image_ref = str(chunk["aux"]["ID"])
    if image_ref is None:
        raise docker.errors.BuildError(f"labelling {image_id} produced no image", [])
    return image_ref


def _take_chunk(outcome: BuildOutcome, chunk: dict[str, Any], on_line: Callable[[str], None]) -> None:
    if "stream" in chunk:
        line = str(chunk["stream"])
        outcome.log.append(line)
        if line.startswith("Step "):
            outcome.steps += 1
        elif "Using cache" in line:
            outcome.cache_hits += 1
        on_line(line)
    elif "error" in chunk:
        outcome.error = str(chunk.get("error") or chunk.get("errorDetail"))
        outcome.log.append(f"ERROR: {outcome.error}\n")
    elif "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
        outcome.image_id = str(chunk["aux"]["ID"])
    elif "status" in chunk:  # e.g. a pull attempt's progress
        outcome.log.append(f"{chunk['status']} {chunk.get('progress', '')}\n")


def _is_candidate_fault(message: str) -> bool:
    """An engine answer that is about the Dockerfile (bad syntax, missing file), not about the engine."""
    lowered = message.lower()
    return any(s in lowered for s in ("dockerfile", "unknown instruction", "copy failed", "no such file",
                                      "pull access denied", "not found", "invalid reference", "syntax"))
