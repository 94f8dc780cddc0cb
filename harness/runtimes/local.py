"""The local runtime: the candidate's service as plain processes on this machine.

Dependencies go into an isolated virtualenv built from the candidate's requirements file and
cached by content, so a regrade starts in seconds. Every process runs with a scrubbed
environment, resource limits, its own session, and the run id in its environment, which is how
``down()`` finds daemons that escaped the process group.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from harness import processes
from harness.contract import LocalRuntime as LocalSection
from harness.errors import GraderFault, HarnessError, SubmissionError
from harness.isolation import bwrap
from harness.isolation.relay import Relays
from harness.processes import spawn_bounded
from harness.runtimes.base import RuntimeContext, StaleCleanup, clip, run_setup
from harness.runtimes.common import LOG_FILE_CAP, TERM_GRACE_S, SandboxedCommands, read_tail
from harness.runtimes.installer import pip_plan, plan_install
from harness.sandbox import EnvCache, build_env, requirements_key, without_credentials

#: How long a start command must survive before ``up()`` trusts it to be long-running.
START_GRACE_S = 0.5


def _free_port() -> int:
    # Port 0 lets the kernel pick a free port; the tiny window before the service binds it is accepted.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalRuntime(SandboxedCommands):
    """Runs the candidate's ``start``, ``deploy`` and ``rollback`` commands as local processes."""

    name: ClassVar[str] = "local"
    service_sandboxed: ClassVar[bool] = True

    def __init__(self, ctx: RuntimeContext) -> None:
        super().__init__(ctx)
        self.state_dir = ctx.work_dir / "state"
        self.teardown_info["killed"] = []
        self._venv: Path | None = None
        self._installer: dict[str, str] = {}  # which installer built the env, and why pip when pip
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # --- helpers ------------------------------------------------------------------------------

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        try:
            import ensurepip  # noqa: F401 - split out of python3 by some distributions (python3-venv)
            import venv  # noqa: F401
        except ImportError:
            return False, "this Python cannot create virtualenvs (install python3-venv)"
        if shutil.which("bash") is None:
            return False, "bash is not installed"
        return True, f"runs the service as local processes with {sys.executable}"

    @classmethod
    def bind_host(cls) -> str:
        """Loopback only: the service runs on this host and reaches the grader there."""
        return "127.0.0.1"

    @classmethod
    def cleanup_stale(cls, options: StaleCleanup) -> Iterator[str]:
        """End the recorded sandboxes (the kind runtime's command sandboxes too) of gradings that are gone."""
        from harness.isolation.records import recover

        recovered = recover()
        for item in recovered:
            yield f"local: {item['name']}: ended {', '.join(item['ended']) or 'nothing (already gone)'}"  # type: ignore[arg-type]
        if not recovered:
            yield "local: nothing left behind"

    def _undo_description(self) -> str:
        return f"local: stop the service of run {self.ctx.run_id}"

    def _ensure_port(self) -> int:
        if self._port is None:
            self._port = _free_port()
        return self._port

    def command_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The complete environment of a candidate process (service or command)."""
        port = self._ensure_port()
        values = {"PORT": str(port), "TAKEHOME_RUNTIME": "local", "TAKEHOME_STATE_DIR": str(self.state_dir),
                  "TAKEHOME_ENDPOINT": f"http://127.0.0.1:{port}"}
        if self._venv is not None:
            values["VIRTUAL_ENV"] = str(self._venv)
        values.update(self.ctx.candidate_env)
        values.update(extra or {})
        values[processes.RUN_ID_ENV] = self.ctx.run_id  # last: the tag teardown relies on cannot be overridden
        prefix = [str(self._venv / "bin")] if self._venv is not None else []
        return self._scrubbed_env(values, prefix)

    def _outbound_ports(self) -> tuple[int, ...]:
        """Grader ports the candidate must reach (the webhook receiver), from the URLs it is given."""
        ports = set()
        for value in self.ctx.candidate_env.values():
            for match in re.finditer(r"https?://(?:127\.0\.0\.1|localhost):(\d+)", value):
                ports.add(int(match.group(1)))
        return tuple(sorted(ports))

    def _ensure_sandbox(self) -> bwrap.Sandbox | None:
        """The grading's sandbox, started on first use (None when unsandboxed)."""
        if not self.sandboxed:
            return None
        if self._sandbox is None:
            home, _tmp = self._scratch_dirs()
            readonly = [*bwrap.grader_python_dirs(), *([self._venv] if self._venv is not None else [])]
            self._sandbox = bwrap.Sandbox(
                name=f"run-{self.ctx.run_id}", writable=[self.repo_dir, home, self.state_dir], readonly=readonly,
                relays=Relays(inbound=(self._ensure_port(),), outbound=self._outbound_ports()),
                limits=self._sandbox_limits(), chdir=self.repo_dir,
                progress=self.ctx.progress)
            self._register_undo()
            self._sandbox.start()
            relays = self._sandbox.relays
            self.ctx.progress(f"sandbox up (uid {self._sandbox.uid}; network: loopback, ports "
                              f"{', '.join(str(p) for p in (*relays.inbound, *relays.outbound))} relayed)")
        return self._sandbox

    # --- build --------------------------------------------------------------------------------

    def _requirements_path(self, section: LocalSection) -> Path:
        rel = section.requirements
        path = (self.repo_dir / rel).resolve()
        if Path(rel).is_absolute() or not path.is_relative_to(self.repo_dir):
            raise SubmissionError(f"runtimes.local.requirements ({rel!r}) points outside the repository; "
                                  "name a file inside it, e.g. requirements.txt")
        if not path.is_file():
            raise SubmissionError(f"takehome.yaml names {rel!r} as runtimes.local.requirements, but the "
                                  "repository has no such file. Add it (it may hold only comments) or fix the path.")
        return path

    def build(self) -> None:
        started = time.monotonic()
        self._require_sandbox()
        section: LocalSection = self._section()
        requirements = self._requirements_path(section)
        key = requirements_key(self.repo_dir, requirements)
        cache_root = self.ctx.config.local.resolved_cache_dir()
        cache = EnvCache(cache_root / "envs", key, fallback=self.ctx.work_dir / "venv")
        home, tmp = self._scratch_dirs()
        # Sandboxed, pip gets a private cache: a shared one would let one candidate's setup.py
        # plant wheels that another candidate's install then trusts.
        pip_cache = tmp / "pip-cache" if self.sandboxed else cache_root / "pip"
        env = build_env({"PIP_CACHE_DIR": str(pip_cache)}, [], home, tmp)
        if self.sandboxed:
            env, stripped = without_credentials(env)
            if stripped:
                self.isolation["credentials_withheld"] = stripped
                self.ctx.progress(f"note: credentials removed from {', '.join(stripped)} for the dependency "
                                  "install (candidate code runs in it)")
        log_path = self.logs_dir / "build.log"
        deadline = started + self.ctx.config.timeouts.build

        def install(venv: Path) -> None:
            self._install(venv, requirements, env, log_path, deadline)

        self._venv, info = cache.get_or_build(install, self.ctx.progress, deadline)
        self.build_info = {**info, **(self._installer if info.get("pip_ran") else {}),
                           "requirements": section.requirements,
                           "seconds": round(time.monotonic() - started, 2)}
        run_setup(self, section.setup, self.build_info)
        self.build_info["seconds"] = round(time.monotonic() - started, 2)

    def _install(self, venv: Path, requirements: Path, env: dict[str, str], log_path: Path,
                 deadline: float) -> None:
        """Create ``venv`` and install the requirements into it (cwd = the repo, for relative paths):
        with uv where it mirrors pip exactly (see harness/runtimes/installer.py), else with pip."""
        # A venv made by the grader's own interpreter cannot fail because of the candidate: GraderFault.
        make_venv = [sys.executable, "-m", "venv", "--clear", str(venv)]
        self._run_step("create a virtualenv (python -m venv)", GraderFault, make_venv, env, log_path, deadline, venv)
        rel = requirements.relative_to(self.repo_dir)
        plan = plan_install(venv, requirements, env, self.ctx.config.local.installer)
        if plan.installer == "uv":
            try:
                self._run_step(f"install {rel} (uv pip install)", SubmissionError, plan.argv, {**env, **plan.env},
                               log_path, deadline, venv, plan.readonly)
                self._installer = {"installer": "uv"}
                return
            except SubmissionError as exc:
                if time.monotonic() >= deadline:
                    raise
                # pip has the last word on whether the requirements install: start again with it.
                why = str(exc).partition(": ")[2].partition(";")[0] or str(exc)
                plan.reason = f"uv failed ({why}); pip ran instead"
                self.ctx.progress(f"note: {plan.reason}")
                self._run_step("create a virtualenv (python -m venv)", GraderFault, make_venv, env, log_path,
                               deadline, venv)
        pip = pip_plan(venv, requirements, plan.reason)
        self._run_step(f"install {rel} (pip install)", SubmissionError, pip.argv, env, log_path, deadline, venv)
        self._installer = {"installer": "pip", **({"installer_note": pip.reason} if pip.reason else {})}

    def _run_step(self, what: str, blame: type[HarnessError], argv: list[str], env: dict[str, str],
                  log_path: Path, deadline: float, venv: Path, readonly: list[Path] | None = None) -> None:
        """Run one build step, logged; candidate-blamed steps run in the build sandbox (``venv`` writable)."""
        with open(log_path, "ab") as log:
            log.write(f"$ {' '.join(argv)}\n".encode())
        box = None
        if blame is SubmissionError and self.sandboxed:
            box = self._build_sandbox(venv, env, readonly or [])
            argv = box.wrap(argv, self.repo_dir)
        sink = self._sink(log_path)
        try:
            code, stop = spawn_bounded(argv, cwd=self.repo_dir, env=env, stdout=sink.fd, stderr=sink.fd,
                                       timeout_s=deadline - time.monotonic(),
                                       preexec=box.preexec() if box is not None else None)
        except OSError as exc:
            raise GraderFault(f"could not {what}: {exc}", command=" ".join(argv)) from None
        finally:
            sink.wait()
            if box is not None:
                self._stop_build_sandbox(box, venv)
        if code != 0:
            why = "it timed out (timeouts.build)" if stop else f"it exited with code {code}"
            raise blame(f"could not {what}: {why}; the end of its log follows",
                        details=clip(read_tail(log_path, 64_000), 8000), command=" ".join(argv))

    def _build_sandbox(self, venv: Path, env: dict[str, str], extra_readonly: list[Path]) -> bwrap.Sandbox:
        """A sandbox for the dependency install: the package index is reachable (host network),
        the venv, the checkout and the scratch dirs are writable, nothing else of the machine is."""
        home, tmp = self._scratch_dirs()
        env["TMPDIR"] = str(tmp)  # pip unpacks large wheels: the work dir, not the small tmpfs
        readonly = [*bwrap.grader_python_dirs(), *extra_readonly]
        for name in ("PIP_CONFIG_FILE", "PIP_CONSTRAINT", "PIP_CERT", "PIP_FIND_LINKS", "SSL_CERT_FILE",
                     "REQUESTS_CA_BUNDLE", "SSL_CERT_DIR"):
            for part in env.get(name, "").split():
                if part.startswith("/") and Path(part).exists():
                    readonly.append(Path(part))
        box = bwrap.Sandbox(name=f"build-{self.ctx.run_id}", writable=[venv, self.repo_dir, home, tmp],
                            readonly=readonly, network=True, limits=self._sandbox_limits(), chdir=self.repo_dir,
                            progress=self.ctx.progress)
        box.start()
        return box

    def _stop_build_sandbox(self, box: bwrap.Sandbox, venv: Path) -> None:
        teardown = box.stop()
        hits = box.limits_hit(teardown.get("usage", {}))  # type: ignore[arg-type]
        if hits:
            self.isolation["build_limits_hit"] = hits
        if box.as_root:
            bwrap.chown_tree(venv, 0, 0)  # the env is the grader's again: read-only to every sandbox

    # --- service ------------------------------------------------------------------------------

    def up(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        section = self._section()
        env = self.command_env()
        service_log = self.logs_dir / "service.log"
        self._register_undo()
        argv, preexec = self._confined(["bash", "-c", section.start])
        sink = self._sink(service_log)
        try:
            self._proc = subprocess.Popen(argv, cwd=self.repo_dir, env=env, stdin=subprocess.DEVNULL,
                                          stdout=sink.fd, stderr=sink.fd, start_new_session=True,
                                          preexec_fn=preexec)
        except OSError as exc:
            raise GraderFault(f"could not start bash: {exc}", command=section.start) from None
        finally:
            sink.child_started()
        self.ctx.progress(f"started the service (pid {self._proc.pid}) on port {self._port}")
        deadline = time.monotonic() + START_GRACE_S
        while time.monotonic() < deadline and self._proc.poll() is None:
            time.sleep(0.05)
        code = self._proc.poll()
        if code is None:
            return
        if code == 0 and self._candidate_processes():
            self.ctx.progress("the start command returned; the server it started keeps running")
            return
        tail = read_tail(service_log, 4000) or "(the service wrote nothing)"
        raise SubmissionError(f"the start command exited with code {code} right away instead of serving on "
                              "$PORT; it must run in the foreground until stopped",
                              details="service.log (tail):\n" + tail, command=section.start)

    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._ensure_port()}"

    def grader_host(self) -> str:
        return "127.0.0.1"

    def _candidate_processes(self) -> list:
        """The candidate's live processes: the sandbox's members, or (unsandboxed) those tagged with the run id."""
        if self._sandbox is not None:
            return self._sandbox.members()
        return processes.find_tagged(self.ctx.run_id)

    def alive(self) -> bool:
        if self._proc is not None and self._proc.poll() is None:
            return True
        return bool(self._candidate_processes())  # the candidate may have restarted its server

    # --- logs and diagnostics -----------------------------------------------------------------

    def declared_log_files(self) -> tuple[list[Path], list[str]]:
        """Files matching ``logs.paths`` inside the repo, and a note for each refused pattern."""
        files: list[Path] = []
        refused: list[str] = []
        for pattern in self.ctx.contract.logs.paths:
            if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
                refused.append(f"log path {pattern!r} refused: it must be relative and stay inside the repository")
                continue
            try:
                matches = sorted(self.repo_dir.glob(pattern))[:50]
            except (ValueError, OSError) as exc:
                refused.append(f"log path {pattern!r} refused: {exc}")
                continue
            for match in matches:
                real = match.resolve()
                if not real.is_relative_to(self.repo_dir):  # a symlink out of the repo
                    refused.append(f"log path {match} refused: it resolves outside the repository")
                elif real.is_file() and real not in files:
                    files.append(real)
        return files, refused

    def logs(self) -> str:
        parts = []
        for label, path in (("service.log", self.logs_dir / "service.log"),
                            ("commands.log", self.logs_dir / "commands.log")):
            parts.append(f"==> {label} <==\n{read_tail(path, LOG_FILE_CAP)}")
        files, refused = self.declared_log_files()
        per_file = max(LOG_FILE_CAP // max(len(files), 1), 256 * 1024)  # many files share one budget
        for path in files:
            parts.append(f"==> {path.relative_to(self.repo_dir)} <==\n{read_tail(path, per_file)}")
        parts.extend(f"==> [grader] {note}" for note in refused)
        return "\n".join(parts)

    def diagnostics(self) -> dict[str, str]:
        rows = [processes.describe(p) for p in self._candidate_processes()]
        table = "\n".join(f"{r['pid']:>7} {r.get('ppid', '?'):>7} {r.get('status', '?'):<9} "
                          f"{r.get('rss_mb', '?'):>8} MB  {r.get('cmdline', '')}" for r in rows)
        port = self._port
        listening = "no port chosen yet"
        if port is not None:
            with socket.socket() as sock:
                sock.settimeout(0.5)
                listening = "accepting connections" if sock.connect_ex(("127.0.0.1", port)) == 0 else "closed"
        exit_code = None if self._proc is None else self._proc.poll()
        return {
            "processes": "    PID    PPID STATUS         RSS      CMDLINE\n" + (table or "(no tagged process alive)"),
            "service_log_tail": read_tail(self.logs_dir / "service.log", 8000),
            "port": f"127.0.0.1:{port} {listening}",
            "start_process": ("not started" if self._proc is None else
                              f"pid {self._proc.pid}, " + ("running" if exit_code is None else f"exited {exit_code}")),
        }

    # --- teardown -----------------------------------------------------------------------------

    def _down_locked(self) -> None:
        if self._sandbox is not None:
            self._down_sandbox()
            return
        started = time.monotonic()
        killed: list[dict[str, object]] = []
        if self._proc is not None:
            pgid = self._proc.pid  # start_new_session: the start command leads its own group
            members = {p.pid: p for p in processes.group_members(pgid) + processes.descendants(pgid)}
            killed += processes.terminate(list(members.values()), TERM_GRACE_S)
            processes.kill_group(pgid)
            self._reap()
        # Daemons that left the group; a few rounds in case a watchdog respawns what was killed.
        for _ in range(3):
            tagged = processes.find_tagged(self.ctx.run_id)
            if not tagged:
                break
            killed += processes.terminate(tagged, TERM_GRACE_S)
        info = self._count_teardown()
        info["killed"] = [*info["killed"], *killed]  # type: ignore[misc]
        info["survivors"] = [processes.describe(p) for p in processes.find_tagged(self.ctx.run_id)]
        info["seconds"] = round(time.monotonic() - started, 2)

    def _reap(self) -> None:
        """Wait (briefly) for the start command: our child must not stay a zombie."""
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def _down_sandbox(self) -> None:
        """End the sandbox (every process in its PID namespace) and record what it used and hit."""
        started = time.monotonic()
        result = self._stop_sandbox(TERM_GRACE_S, list(self.isolation.get("build_limits_hit", [])))
        self._reap()
        for sink in self._sinks:
            sink.wait(0.5)
        info = self._count_teardown()
        info["killed"] = [*info["killed"], *result["killed"]]  # type: ignore[misc]
        info["survivors"] = result["survivors"]
        info["seconds"] = round(time.monotonic() - started, 2)
