"""How a runtime turns the grader's ``local:`` settings into a sandbox, the same on every runtime.

The local runtime runs everything of the candidate in a sandbox; the kind runtime runs the
candidate's host-side commands (setup, deploy, rollback, its kustomization) in one. Both read the
limits and the on/off switch (``local.sandbox``, ``--unsafe-local``) from the same config section,
and both refuse to run candidate code unsandboxed unless the hiring team said so.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import GraderFault
from harness.isolation import bwrap
from harness.isolation.logcap import CappedSink
from harness.processes import spawn_bounded

#: What the report says when candidate code ran without the sandbox.
UNSANDBOXED_WARNING = ("graded WITHOUT a sandbox (--unsafe-local): candidate code ran as the grader's user "
                       "with a scrubbed environment and per-process rlimits only")


def limits_from(local_cfg: Any) -> bwrap.SandboxLimits:
    """The sandbox limits of the ``local:`` config section (a ``grader.config.LocalConfig``)."""
    return bwrap.SandboxLimits(memory_mb=local_cfg.memory_limit_mb, max_pids=local_cfg.max_processes,
                               cpu_seconds=local_cfg.cpu_seconds, max_open_files=local_cfg.max_open_files,
                               file_size_mb=local_cfg.file_size_mb, tmp_mb=local_cfg.tmp_mb,
                               disk_mb=local_cfg.disk_mb, log_mb=local_cfg.log_mb)


def require(sandboxed: bool, isolation: dict[str, object], progress: Any, what: str = "candidate code") -> None:
    """Check the sandbox can run here (or record the unsafe opt-out); raise a GraderFault saying how to fix it.

    ``isolation`` is the runtime's report dict: it gets ``sandbox_detail`` or ``warning``.
    """
    if not sandboxed:
        isolation["warning"] = UNSANDBOXED_WARNING
        progress("warning: " + UNSANDBOXED_WARNING)
        return
    ok, why = bwrap.probe()
    if not ok:
        raise GraderFault(f"this runtime runs {what} in a bubblewrap sandbox, and it cannot here: {why}. "
                          f"Fix: {bwrap.install_hint()} (or pass --unsafe-local for code you trust).")
    isolation["sandbox_detail"] = why


def record_stop(box: bwrap.Sandbox, result: dict[str, object], isolation: dict[str, object],
                earlier_hits: list[str] | None = None) -> None:
    """Put what a stopped sandbox used and ran into (``box.stop()``'s result) into the report dict.

    Limits hit and notes are added to what the runtime already recorded there (each once: a
    second teardown call records nothing new).
    """
    usage = result.get("usage") or {}
    isolation["usage"] = usage
    isolation["uid"] = box.uid
    isolation["disk_growth_peak_mb"] = box.disk_peak_mb
    for key, found in (("limits_hit", [*(earlier_hits or []), *box.limits_hit(usage)]),  # type: ignore[arg-type]
                       ("notes", list(box.notes))):
        merged = list(dict.fromkeys([*isolation.get(key, []), *found]))  # type: ignore[misc]
        if merged:
            isolation[key] = merged


def with_dropped_output(isolation: dict[str, object], sinks: list[Any], log_mb: int) -> dict[str, object]:
    """The report's isolation dict, with the output the log caps dropped (``CappedSink``s) as a limit hit."""
    dropped = {s.path.name: s.dropped for s in sinks if s.dropped}
    info = dict(isolation)
    if dropped:
        info["output_dropped_bytes"] = dropped
        hits = list(info.get("limits_hit", []))  # type: ignore[call-overload]
        hits.append(f"log limit hit: {sum(dropped.values()) / 2**20:.1f} MB of output past the {log_mb} MB cap "
                    f"per stream was dropped ({', '.join(dropped)})")
        info["limits_hit"] = hits
    return info


class SandboxedOutput:
    """Mixin for runtimes that run candidate commands in the sandbox: capped output files, and
    the report's isolation dict with what those caps dropped. Needs ``self.ctx``, ``self.isolation``,
    ``self._sinks`` (a list) and ``self._seq`` (an ``itertools.count``)."""

    ctx: Any
    isolation: dict[str, object]
    _sinks: list[CappedSink]
    _seq: Any

    def _spawn_captured(self, argv: list[str], name: str, cwd: Path, env: dict[str, str], timeout_s: float,
                        preexec: Callable[[], None]) -> tuple[int | None, bool, Path, Path]:
        """Run ``argv`` with its stdout and stderr in capped, numbered files under ``work_dir/commands``.

        Returns (exit code or None, whether it was stopped by the timeout, stdout file, stderr file).
        """
        safe = "".join(c if c.isalnum() else "_" for c in name)
        stem = self.ctx.work_dir / "commands" / f"{next(self._seq):03d}-{safe}"
        stem.parent.mkdir(parents=True, exist_ok=True)
        out_path, err_path = stem.with_suffix(".out"), stem.with_suffix(".err")
        out, err = self._sink(out_path), self._sink(err_path)
        try:
            code, stop = spawn_bounded(argv, cwd=cwd, env=env, timeout_s=timeout_s, stdout=out.fd, stderr=err.fd,
                                       preexec=preexec)
        finally:
            out.wait()
            err.wait()
        return code, stop is not None, out_path, err_path

    def _sink(self, path: Path) -> CappedSink:
        sink = CappedSink(path, self.ctx.config.local.log_mb * 2**20)
        self._sinks.append(sink)
        return sink

    def isolation_info(self) -> dict[str, object]:
        """How candidate code was isolated, and every limit it ran into (for the report)."""
        return with_dropped_output(self.isolation, self._sinks, self.ctx.config.local.log_mb)
