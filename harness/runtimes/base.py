"""The runtime interface: everything the grader needs from a place where a candidate's service runs.

Local, docker and kind implement it side by side; checks only ever see this interface (and an
HTTP endpoint), so every check runs unchanged on each runtime. Each method has a one-line contract.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from harness.cleanup import CleanupStack
from harness.contract import Contract

if TYPE_CHECKING:  # pragma: no cover
    from grader.config import GraderConfig

#: Output kept from each candidate command (head and tail), so reports stay readable.
OUTPUT_LIMIT = 20_000


def clip(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """Keep the head and the tail of long output."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return text[:half] + f"\n... [{len(text) - limit} characters cut] ...\n" + text[-half:]


@dataclass
class CommandResult:
    """The outcome of one candidate command (deploy, rollback, setup)."""

    name: str
    command: str
    exit_code: int | None  # None when it timed out or could not start
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    error: str | None = None  # could not be started at all

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.error is None

    def evidence(self) -> dict[str, object]:
        """A compact dict for report evidence."""
        return {
            "command": self.command,
            "exit_code": self.exit_code,
            "timed_out": self.timed_out,
            "duration_s": round(self.duration_s, 3),
            "stdout_tail": self.stdout[-1500:],
            "stderr_tail": self.stderr[-1500:],
            **({"error": self.error} if self.error else {}),
        }


@dataclass
class RuntimeContext:
    """What a runtime is given: the candidate checkout, its contract, the config, and the cleanup stack."""

    run_id: str
    repo_dir: Path  # the candidate's checkout (a private copy the runtime may write to)
    work_dir: Path  # scratch space for this run (state, logs, kubeconfig...)
    contract: Contract
    config: "GraderConfig"
    cleanup: CleanupStack
    progress: Callable[[str], None] = lambda _msg: None
    #: Variables the candidate's processes get on top of the scrubbed base (e.g. the webhook URL).
    candidate_env: dict[str, str] = field(default_factory=dict)
    #: Keep what the run created (work dir; for kind the namespace and cluster) for debugging.
    keep: bool = False


@dataclass(frozen=True)
class StaleCleanup:
    """What ``takehome cleanup`` was asked for besides every runtime's own leftovers."""

    #: Loads the ``--config`` grader config (None: none given); its ``kubernetes:`` cluster is cleaned too.
    #: A loader, not a config: a bad file is reported only once the runtimes before it have cleaned.
    grader_config: Callable[[], "GraderConfig"] | None = None
    #: Where the candidates' cached builds are recorded (``--build-cache``); None keeps them.
    build_cache_dir: Path | None = None
    #: With ``build_cache_dir``: only builds unused for this long.
    older_than_s: float = 0.0


class Runtime(ABC):
    """A place to build, run, command and tear down one candidate's service."""

    name: ClassVar[str]
    #: The takehome.yaml ``runtimes:`` section this runtime grades (its own name unless it says otherwise).
    contract_section: ClassVar[str | None] = None
    #: The service itself runs in the bubblewrap sandbox, so without one it cannot be graded safely
    #: (``demo`` then grades its own bundled candidate unsandboxed).
    service_sandboxed: ClassVar[bool] = False
    #: ``takehome cleanup`` runs this runtime's ``cleanup_stale()`` before the others' (see the registry).
    cleanup_first: ClassVar[bool] = False

    @classmethod
    def section_name(cls) -> str:
        """The ``runtimes:`` key of takehome.yaml this runtime reads."""
        return cls.contract_section or cls.name

    @classmethod
    def bind_host(cls) -> str:
        """Address the grader's own servers (the webhook receiver) listen on for this runtime's service.

        All interfaces by default: a container or pod reaches the host at a gateway address, not
        at its loopback. A runtime whose service shares the host's loopback narrows it.
        """
        return "0.0.0.0"

    @classmethod
    def cleanup_stale(cls, options: StaleCleanup) -> Iterator[str]:
        """Remove what killed gradings left behind on this runtime; yields one report line each
        (``takehome cleanup`` prints them as they come). Gradings still running are spared."""
        return iter(())

    def __init__(self, ctx: RuntimeContext) -> None:
        self.ctx = ctx

    @classmethod
    @abstractmethod
    def is_available(cls) -> tuple[bool, str]:
        """Whether this runtime can work on this machine, and why not if it cannot."""

    @abstractmethod
    def build(self) -> None:
        """Build the candidate (image or isolated env). Raises SubmissionError with the build log."""

    @abstractmethod
    def up(self) -> None:
        """Start the service. Returns once started (readiness is the lifecycle's job). Registers its undo."""

    @abstractmethod
    def endpoint(self) -> str:
        """Base URL (no trailing slash) at which the grader reaches the service, without port-forwarding."""

    @abstractmethod
    def grader_host(self) -> str:
        """Host name or address at which the candidate's service reaches servers the grader runs (webhooks)."""

    @abstractmethod
    def run_command(self, name: str, command: str, timeout_s: float,
                    env: dict[str, str] | None = None) -> CommandResult:
        """Run a candidate command (deploy, rollback...) with only what it needs. Never raises on failure."""

    @abstractmethod
    def alive(self) -> bool:
        """Whether the service process / container / pods are still running."""

    @abstractmethod
    def logs(self) -> str:
        """Every log line the candidate's service has written so far (stdout, stderr, declared log files)."""

    @abstractmethod
    def diagnostics(self) -> dict[str, str]:
        """Collectors for a failure report: e.g. process table, container inspect, pod events."""

    def isolation_info(self) -> dict[str, object]:
        """How candidate code was isolated and which limits it hit (for the report)."""
        return {"sandbox": self.name}

    @abstractmethod
    def down(self) -> None:
        """Stop and remove everything this runtime started. Idempotent; safe after a partial ``up``."""


def append_command_log(logs_dir: Path, result: CommandResult, shown: str | None = None) -> None:
    """Append one command's outcome to ``logs_dir/commands.log`` (part of ``logs()`` on every runtime)."""
    status = ("timed out" if result.timed_out else result.error) or f"exit {result.exit_code}"
    text = (f"===== {time.strftime('%Y-%m-%dT%H:%M:%S')} {result.name}: {shown or result.command} "
            f"({status}, {result.duration_s:.2f}s)\n{result.stdout}"
            + (f"----- stderr\n{result.stderr}" if result.stderr else "") + "\n")
    append_command_text(logs_dir, text)


def append_command_text(logs_dir: Path, text: str) -> None:
    """Append ``text`` (e.g. a ``[grader]`` note) to ``logs_dir/commands.log``; best effort."""
    try:
        logs_dir.mkdir(parents=True, exist_ok=True)
        with open(logs_dir / "commands.log", "a", encoding="utf-8") as fh:
            fh.write(text)
    except OSError:
        pass  # the result itself still carries the output


def run_setup(runtime: "Runtime", setup: str | None, build_info: dict) -> None:
    """Run the contract's optional setup command; its failure is the submission's."""
    from harness.errors import SubmissionError

    if not setup:
        return
    runtime.ctx.progress("running the setup command ...")
    timeout = runtime.ctx.config.timeouts.setup
    result = runtime.run_command("setup", setup, timeout)
    build_info["setup"] = result.evidence()
    if not result.ok:
        why = (f"timed out after {timeout:.0f}s" if result.timed_out
               else result.error or f"exited with code {result.exit_code}")
        raise SubmissionError(f"the setup command {why}", command=setup,
                              details=clip(result.stdout + "\n" + result.stderr, 8000))


def runtime_class(name: str) -> type[Runtime]:
    """Look up a runtime implementation by name (one of ``registry.NAMES``)."""
    from harness.runtimes import registry

    return registry.get(name)
