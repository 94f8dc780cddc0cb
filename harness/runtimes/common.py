"""What every runtime repeats, written once: each runtime keeps only what differs.

* :class:`CommonRuntime`: the contract section it grades, the one undo it registers on the
  cleanup stack, a ``down()`` that is lock-protected and bounded, and the teardown record.
* :class:`SandboxedCommands`: for runtimes whose candidate commands run on this host in the
  bubblewrap sandbox (local, kind): the isolation record, the scrubbed environment and how one
  command runs (sandbox-wrapped or under rlimits, output capped, never raising).
* Helpers: reading the tail of a log file, running a candidate command that never raises,
  asking whether a Docker engine answers.
"""

from __future__ import annotations

import itertools
import threading
import time
from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from harness.contract import ContractError
from harness.errors import SubmissionError
from harness.isolation import bwrap, policy
from harness.isolation.logcap import CappedSink
from harness.runtimes.base import (CommandResult, Runtime, RuntimeContext, append_command_log,
                                   append_command_text)
from harness.sandbox import limits_preexec, scrubbed_env

#: Per log file, only the tail is read: a runaway logger must not flood the report.
LOG_FILE_CAP = 4 * 2**20
#: Output kept from each of a sandboxed command's streams (head and tail).
COMMAND_OUTPUT_CAP = 20_000
#: Signalled processes get this long between SIGTERM and SIGKILL at teardown.
TERM_GRACE_S = 5.0


def read_clipped(path: Path, limit: int) -> str:
    """Head and tail of a file, at most ``limit`` bytes read; '' if it does not exist."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(0)
            if size <= limit:
                data = fh.read()
            else:
                head = fh.read(limit // 2)
                fh.seek(size - limit // 2)
                data = head + f"\n... [{size - limit} bytes cut] ...\n".encode() + fh.read()
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace")


def read_tail(path: Path, limit: int) -> str:
    """The last ``limit`` bytes of a file; '' if it does not exist."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def guarded_command(name: str, shown: str, logs_dir: Path,
                    run: Callable[[], tuple[int | None, str, str, bool]],
                    detail: Callable[[Exception], str] = str) -> CommandResult:
    """Run one candidate command through ``run`` and log it to ``commands.log``; never raises.

    ``run`` returns (exit code, stdout, stderr, timed out); any exception it raises becomes the
    result's ``error`` (worded by ``detail``), because a command's failure is evidence, not a crash.
    """
    started = time.monotonic()
    try:
        code, stdout, stderr, timed_out = run()
        result = CommandResult(name, shown, code, stdout, stderr, time.monotonic() - started, timed_out)
    except Exception as exc:  # noqa: BLE001 - run_command reports failures, it never raises
        result = CommandResult(name, shown, None, "", "", time.monotonic() - started,
                               error=f"{type(exc).__name__}: {detail(exc)}")
    append_command_log(logs_dir, result)
    return result


def docker_engine(version: bool = False) -> str | None:
    """Whether a Docker engine answers: its version ("?" if unsaid) with ``version``, else "";
    None when none is reachable."""
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
        found = str(client.version().get("Version", "?")) if version else ""
        client.close()
    except Exception:  # noqa: BLE001 - any failure means: no usable engine
        return None
    return found


class CommonRuntime(Runtime):
    """A runtime with one undo on the cleanup stack and a bounded, lock-protected ``down()``.

    Subclasses implement ``_down_locked()`` (the teardown itself, run by one caller at a time)
    and ``_undo_description()``; they call ``_register_undo()`` before creating the first thing
    ``down()`` must remove, so a crash between the two cannot leak it.
    """

    #: Seconds the undo gets beyond ``timeouts.teardown`` (kind: waiting for the namespace, then the cluster).
    undo_extra_s: ClassVar[float] = 0.0

    def __init__(self, ctx: RuntimeContext) -> None:
        super().__init__(ctx)
        self.repo_dir = ctx.repo_dir.resolve()
        self.logs_dir = ctx.work_dir / "logs"
        self.build_info: dict[str, object] = {}
        #: What teardown did, for debugging: ``calls`` counts ``down()`` runs; each runtime adds its own keys.
        self.teardown_info: dict[str, object] = {"calls": 0}
        self._undo_registered = False
        self._lock = threading.Lock()

    def _section(self) -> Any:
        """This runtime's section of the candidate's takehome.yaml; its absence is the submission's fault."""
        try:
            return self.ctx.contract.runtime(self.section_name())
        except ContractError as exc:
            raise SubmissionError(str(exc)) from None

    @abstractmethod
    def _undo_description(self) -> str:
        """How the cleanup stack names this runtime's undo (``down()``)."""

    def _register_undo(self) -> None:
        """Push ``down()`` on the cleanup stack, once, however often it is called."""
        if not self._undo_registered:
            self.ctx.cleanup.push(self._undo_description(), self.down,
                                  timeout_s=self.ctx.config.timeouts.teardown + self.undo_extra_s)
            self._undo_registered = True

    def down(self) -> None:
        """Stop and remove everything this runtime started. Idempotent; safe after a partial ``up``."""
        # Bounded: if an earlier down() hung (and the cleanup stack gave up on it), do not hang too.
        if not self._lock.acquire(timeout=self.ctx.config.timeouts.teardown):
            return
        try:
            self._down_locked()
        finally:
            self._lock.release()

    @abstractmethod
    def _down_locked(self) -> None:
        """The teardown itself; ``down()`` runs it under the lock."""

    def _count_teardown(self) -> dict[str, object]:
        """Count one more teardown call; returns ``teardown_info`` for the caller to add to."""
        info = self.teardown_info
        info["calls"] = int(info["calls"]) + 1  # type: ignore[call-overload]
        return info

    def _log_command_text(self, text: str) -> None:
        """A grader note in ``commands.log``, between the candidate's commands."""
        append_command_text(self.logs_dir, text)


class SandboxedCommands(policy.SandboxedOutput, CommonRuntime):
    """A runtime whose candidate commands run on this host, in the bubblewrap sandbox unless
    ``local.sandbox`` is off (``--unsafe-local``).

    Subclasses implement ``_ensure_sandbox()`` (start it on first use; None when unsandboxed) and
    ``command_env()`` (the complete environment of a candidate command). ``self.state_dir`` must
    be set.
    """

    state_dir: Path

    def __init__(self, ctx: RuntimeContext, **isolation: object) -> None:
        super().__init__(ctx)
        self._seq = itertools.count(1)  # numbers each command's output files
        self._sandbox: bwrap.Sandbox | None = None
        self._sinks: list[CappedSink] = []
        #: The report's isolation record (``isolation_info()``); ``isolation`` adds runtime-specific keys.
        self.isolation: dict[str, Any] = {"sandbox": "bubblewrap" if ctx.config.local.sandbox else "none",
                                             **isolation}

    @property
    def sandboxed(self) -> bool:
        """Whether candidate code runs in the bubblewrap sandbox (``local.sandbox``)."""
        return self.ctx.config.local.sandbox

    def _sandbox_limits(self) -> bwrap.SandboxLimits:
        """The sandbox's limits: the grader config's ``local:`` section, on every runtime."""
        return policy.limits_from(self.ctx.config.local)

    def _require_sandbox(self, what: str = "candidate code") -> None:
        """Refuse to run candidate code unsandboxed unless the hiring team said so."""
        policy.require(self.sandboxed, self.isolation, self.ctx.progress, what)

    @abstractmethod
    def _ensure_sandbox(self) -> bwrap.Sandbox | None:
        """The sandbox candidate commands run in, started on first use (None when unsandboxed)."""

    @abstractmethod
    def command_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The complete environment of a candidate command."""

    def _scratch_dirs(self) -> tuple[Path, Path]:
        """The candidate's home and tmp under the work dir (made, with the logs and state dirs)."""
        home, tmp = self.ctx.work_dir / "home", self.ctx.work_dir / "tmp"
        for path in (home, tmp, self.logs_dir, self.state_dir):
            path.mkdir(parents=True, exist_ok=True)
        return home, tmp

    def _scrubbed_env(self, values: dict[str, str], path_prefix: list[str]) -> dict[str, str]:
        """``values`` on the scrubbed base environment; inside the sandbox, its own /tmp and user."""
        home, tmp = self._scratch_dirs()
        env = scrubbed_env(values, path_prefix, home, tmp)
        if self.sandboxed:
            env.update({"TMPDIR": "/tmp", "USER": "candidate", "LOGNAME": "candidate"})
        return env

    def _confined(self, argv: list[str]) -> tuple[list[str], Callable[[], None]]:
        """``argv`` as it runs confined (inside the sandbox, or as is), and its ``preexec_fn``
        (the sandbox's cgroup and rlimits, or the per-process rlimits when unsandboxed)."""
        box = self._ensure_sandbox()
        if box is not None:
            return box.wrap(argv, self.repo_dir), box.preexec()
        cfg = self.ctx.config.local
        return argv, limits_preexec(cfg.memory_limit_mb, cfg.cpu_seconds, cfg.max_open_files)

    def _run_confined(self, argv: list[str], name: str, timeout_s: float, env: dict[str, str] | None = None,
                      shown: str | None = None) -> CommandResult:
        """Run ``argv`` as the candidate (``command_env``, confined, output capped). Never raises."""

        def run() -> tuple[int | None, str, str, bool]:
            proc_env = self.command_env(env)
            run_argv, preexec = self._confined(argv)
            code, timed_out, out_path, err_path = self._spawn_captured(run_argv, name, self.repo_dir, proc_env,
                                                                       timeout_s, preexec)
            return (code, read_clipped(out_path, COMMAND_OUTPUT_CAP), read_clipped(err_path, COMMAND_OUTPUT_CAP),
                    timed_out)

        return guarded_command(name, shown or " ".join(argv), self.logs_dir, run)

    def run_command(self, name: str, command: str, timeout_s: float,
                    env: dict[str, str] | None = None) -> CommandResult:
        """Run a candidate command with bash, confined; never raises."""
        return self._run_confined(["bash", "-c", command], name, timeout_s, env, shown=command)

    def _stop_sandbox(self, grace_s: float = TERM_GRACE_S, earlier_hits: list[str] | None = None) -> dict[str, object]:
        """Stop the sandbox (every process in it) and record what it used and hit; returns ``stop()``'s result."""
        assert self._sandbox is not None
        result = self._sandbox.stop(grace_s)
        policy.record_stop(self._sandbox, result, self.isolation, earlier_hits)
        return result
