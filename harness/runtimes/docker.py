"""The docker runtime: the candidate's Dockerfile, built and run as one locked-down container.

The image is built from the candidate's Dockerfile (Docker's layer cache makes a regrade of an
unchanged repo fast) and runs on a bridge network of its own, with every capability dropped,
no new privileges, memory/CPU/pid limits, no host mounts and no docker socket. It sees only the
``TAKEHOME_*`` variables, ``PORT`` and what the grader passes on purpose: never the grader's
environment. Its port is published on 127.0.0.1 only.

Candidate commands (setup, deploy, rollback) run *inside* the service container (``docker
exec``), so they can act on their own service and on nothing else. Everything created carries
``takehome.managed=true`` and ``takehome.run_id=<run id>`` labels, which is how ``down()`` and
:func:`cleanup_stale` find it; deletion never relies on memory.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import docker
import docker.errors

from harness.contract import DockerRuntime as DockerSection
from harness.errors import GraderFault, SubmissionError
from harness.processes import RUN_ID_ENV
from harness.runtimes import docker_build, docker_ops as ops
from harness.runtimes.base import CommandResult, RuntimeContext, StaleCleanup, clip, run_setup
from harness.runtimes.common import LOG_FILE_CAP, CommonRuntime, docker_engine, guarded_command, read_tail
from harness.runtimes.docker_cache import prune_build_cache, record_build
from harness.runtimes.docker_images import ALIASES, ensure_base_image
from harness.runtimes.docker_ops import cleanup_stale  # noqa: F401 - public API of this module
from harness.sandbox import FORBIDDEN

#: A build context above this is refused before anything is sent to the engine.
CONTEXT_CAP_BYTES = 200 * 2**20
#: The container must survive this long for ``up()`` to trust it.
START_GRACE_S = 1.0
STOP_TIMEOUT_S = 10
_FROM = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)", re.IGNORECASE | re.MULTILINE)


def _explain(exc: BaseException) -> str:
    """A docker SDK error's explanation from the engine (its text otherwise)."""
    return getattr(exc, "explanation", None) or str(exc)


def _engine_fault(what: str, exc: BaseException, command: str | None = None) -> GraderFault:
    """A docker SDK error as our own, with the engine's explanation kept."""
    return GraderFault(f"docker: {what} failed: {_explain(exc)}", command=command)


class DockerRuntime(CommonRuntime):
    """Builds the candidate's Dockerfile and runs it as one container on a network of its own."""

    name: ClassVar[str] = "docker"

    def __init__(self, ctx: RuntimeContext) -> None:
        super().__init__(ctx)
        self.teardown_info["removed"] = []
        self.image_tag = f"takehome-candidate:{ctx.run_id}"
        self.container_name = f"takehome-{ctx.run_id}"
        self._client: docker.DockerClient | None = None
        self._network: Any = None
        self._container: Any = None
        self._host_port: int | None = None
        self._tools: tuple[str, bool] | None = None

    # --- engine -------------------------------------------------------------------------------

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        version = docker_engine(version=True)
        if version is None:
            return False, "no Docker engine: run .ci/install-docker.sh or start dockerd"
        return True, f"Docker engine {version}"

    @classmethod
    def cleanup_stale(cls, options: StaleCleanup) -> Iterator[str]:
        """Remove every labelled container, network and image of gradings that are gone (and,
        with ``options.build_cache_dir``, the candidates' cached builds)."""
        ok, why = cls.is_available()
        if not ok:
            yield f"docker: nothing to clean ({why})"
            return
        client = docker.from_env()
        yield f"docker: removed {ops.cleanup_stale(client)}"
        if options.build_cache_dir is not None:
            pruned = prune_build_cache(client, options.build_cache_dir, older_than_s=options.older_than_s)
            yield (f"build cache: removed {len(pruned['images'])} image(s), kept {len(pruned['kept'])} in use"
                   + (f", errors: {pruned['errors']}" if pruned["errors"] else ""))

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = docker.from_env(timeout=120)
                self._client.ping()
            except docker.errors.DockerException as exc:
                raise _engine_fault("connecting to the engine", exc) from None
        return self._client

    def _labels(self, kind: str) -> dict[str, str]:
        return ops.run_labels(self.ctx.run_id, kind)

    def _undo_description(self) -> str:
        return f"docker: remove the container, network and image of run {self.ctx.run_id}"

    def _inside_repo(self, rel: str, what: str, want_dir: bool) -> Path:
        path = (self.repo_dir / rel).resolve()
        if Path(rel).is_absolute() or not path.is_relative_to(self.repo_dir):
            raise SubmissionError(f"runtimes.docker.{what} ({rel!r}) points outside the repository; "
                                  "name a path inside it")
        if not (path.is_dir() if want_dir else path.is_file()):
            raise SubmissionError(f"takehome.yaml names {rel!r} as runtimes.docker.{what}, but the repository "
                                  f"has no such {'directory' if want_dir else 'file'}")
        return path

    # --- build --------------------------------------------------------------------------------

    def build(self) -> None:
        started = time.monotonic()
        section: DockerSection = self._section()
        dockerfile = self._inside_repo(section.dockerfile, "dockerfile", want_dir=False)
        context = self._inside_repo(section.context, "context", want_dir=True)
        rel_df = dockerfile.relative_to(context).as_posix() if dockerfile.is_relative_to(context) else "Dockerfile"
        size, files, too_big = docker_build.measure_context(context, rel_df, CONTEXT_CAP_BYTES)
        if too_big:
            raise SubmissionError(f"the docker build context ({section.context}) is over "
                                  f"{CONTEXT_CAP_BYTES // 2**20} MB after .dockerignore ({files} files counted "
                                  "so far); leave data and virtualenvs out with a .dockerignore")
        base = self._base_image(dockerfile)
        self._register_undo()
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.logs_dir / "build.log"
        self.ctx.progress(f"docker build {section.context} -f {section.dockerfile} -t {self.image_tag} ...")
        command = f"docker build --pull=false -f {section.dockerfile} -t {self.image_tag} {section.context}"
        with open(log_path, "a", encoding="utf-8") as log:
            def on_line(line: str) -> None:
                log.write(line)
                log.flush()

            try:
                outcome = docker_build.build_image(self.client.api.api_version, context=context, dockerfile=dockerfile,
                                          timeout_s=self.ctx.config.timeouts.build, on_line=on_line,
                                          memory_mb=self.ctx.config.local.memory_limit_mb)
                if outcome.error is None and outcome.image_id:
                    self.build_info["candidate_layers_id"] = outcome.image_id  # kept as cache at teardown
                    try:
                        record_build(self.ctx.config.local.resolved_cache_dir(), outcome.image_id,
                                     f"run {self.ctx.run_id}, {section.dockerfile}")
                    except (OSError, GraderFault) as exc:  # bookkeeping for `cleanup --build-cache` only
                        self.ctx.progress(f"note: build cache record not updated: {exc}")
                    outcome.image_id = docker_build.label_image(self.client, outcome.image_id, self.image_tag,
                                                       self._labels("candidate-image"))
            except docker.errors.DockerException as exc:
                raise _engine_fault("build", exc, command) from None
        text = outcome.text()
        if outcome.error:
            hint = ""
            last_step = next((line for line in reversed(outcome.log) if line.startswith("Step ")), "")
            if " : FROM " in last_step.upper() or "pull access denied" in outcome.error:
                hint = (f"\n(the base image could not be found locally and is never pulled: use one present on "
                        f"the grading machine, e.g. {' or '.join(ALIASES)})")
            raise SubmissionError(f"docker build failed: {outcome.error}{hint}", command=command,
                                  details="build log (tail):\n" + clip(text, 8000)[-8000:])
        self.build_info = {**self.build_info, "image": self.image_tag, "image_id": outcome.image_id, "base_image": base,
                           "context_bytes": size, "context_files": files, "steps": outcome.steps,
                           "cache_hits": outcome.cache_hits, "seconds": round(time.monotonic() - started, 2),
                           "log": clip(text, 8000)}

    def _base_image(self, dockerfile: Path) -> dict[str, object]:
        """Ensure python:3.11-slim exists (building the stand-in if needed) when the Dockerfile uses it."""
        froms = _FROM.findall(dockerfile.read_text(errors="replace"))
        try:
            return ensure_base_image(self.client, self.ctx.config.local.resolved_cache_dir(), self.ctx.progress)
        except GraderFault as exc:
            if any(ref in ALIASES for ref in froms):
                raise
            # The candidate does not start FROM it: let the build say whether its own base exists.
            self.ctx.progress(f"note: the python:3.11-slim stand-in is unavailable ({exc}); building anyway")
            return {"source": "unavailable", "error": str(exc)}
        except docker.errors.DockerException as exc:
            raise _engine_fault("preparing the base image", exc) from None

    # --- service ------------------------------------------------------------------------------

    def container_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """What the container and its commands see besides the image's own ENV: nothing of the grader's."""
        port = self.ctx.contract.serving.port
        values = {"PORT": str(port), "TAKEHOME_RUNTIME": "docker", "TAKEHOME_STATE_DIR": ops.STATE_DIR,
                  "TAKEHOME_ENDPOINT": f"http://127.0.0.1:{port}",
                  # As on the local runtime: log lines reach the container log at once.
                  "PYTHONUNBUFFERED": "1"}
        values.update(self.ctx.candidate_env)
        values.update(extra or {})
        values = {k: v for k, v in values.items() if k not in FORBIDDEN}
        values[RUN_ID_ENV] = self.ctx.run_id  # last: cannot be overridden
        return values

    def _ensure_network(self) -> Any:
        if self._network is None:
            self._register_undo()
            name = f"takehome-{self.ctx.run_id}"
            try:
                self._network = self.client.networks.create(name, driver="bridge", labels=self._labels("network"),
                                                            check_duplicate=True)
                self._network.reload()
            except docker.errors.DockerException as exc:
                raise _engine_fault("creating the network", exc, f"docker network create {name}") from None
        return self._network

    def up(self) -> None:
        if self._container is not None and self.alive():
            return
        network = self._ensure_network()
        port = self.ctx.contract.serving.port
        # Until a docker-specific key exists, the local runtime's memory cap applies (0 = none).
        options = ops.hardened_options(image=self.image_tag, name=self.container_name, labels=self._labels("service"),
                                       env=self.container_env(), network=network.name, port=port,
                                       memory_mb=self.ctx.config.local.memory_limit_mb)
        self._register_undo()
        command = (f"docker run -d --name {self.container_name} --network {network.name} "
                   f"-p 127.0.0.1::{port} {self.image_tag}")
        try:
            self._container = self.client.containers.create(**options)
        except docker.errors.ImageNotFound:
            raise GraderFault(f"image {self.image_tag} does not exist: build() must run before up()") from None
        except docker.errors.DockerException as exc:
            raise _engine_fault("creating the container", exc, command) from None
        try:
            self._container.start()
        except docker.errors.APIError as exc:
            detail = exc.explanation or str(exc)
            if "port is already allocated" in detail or "address already in use" in detail:
                raise _engine_fault("starting the container", exc, command) from None
            raise SubmissionError(f"the container could not start: {detail}", command=command,
                                  details="check the image's CMD/ENTRYPOINT and USER") from None
        self._await_start(command)
        self.ctx.progress(f"started container {self.container_name} ({self._container.short_id}), "
                          f"port {port} published on {self.endpoint()}")
        run_setup(self, self._section().setup, self.build_info)

    def _await_start(self, command: str) -> None:
        """Fail fast when the container exits at once; learn the published host port."""
        deadline = time.monotonic() + START_GRACE_S
        state: dict[str, Any] = {}
        while True:
            self._container.reload()
            state = self._container.attrs.get("State", {})
            if state.get("Status") != "running" or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        if state.get("Status") != "running":
            tail = self._container_logs(4000) or "(the container wrote nothing)"
            oom = " (killed: out of memory)" if state.get("OOMKilled") else ""
            raise SubmissionError(f"the container exited with code {state.get('ExitCode')}{oom} right away "
                                  "instead of serving; its CMD must run the server in the foreground",
                                  command=command, details="container log (tail):\n" + tail)
        port = self.ctx.contract.serving.port
        bindings = (self._container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{port}/tcp") or []
        if not bindings:
            raise GraderFault(f"the engine published no host port for {port}/tcp", command=command)
        self._host_port = int(bindings[0]["HostPort"])

    def endpoint(self) -> str:
        if self._host_port is None:
            raise GraderFault("the docker runtime has no endpoint before up()")
        return f"http://127.0.0.1:{self._host_port}"

    def grader_host(self) -> str:
        # The host's address on the run's bridge network: the container reaches the grader's
        # servers there (the lifecycle binds them on 0.0.0.0 for non-local runtimes).
        network = self._ensure_network()
        for pool in (network.attrs.get("IPAM") or {}).get("Config") or []:
            if pool.get("Gateway"):
                return str(pool["Gateway"])
        return "host.docker.internal"  # resolves through the extra_hosts entry of the container

    def alive(self) -> bool:
        if self._container is None:
            return False
        try:
            self._container.reload()
        except docker.errors.DockerException:
            return False
        return self._container.status == "running"

    # --- commands -----------------------------------------------------------------------------

    def run_command(self, name: str, command: str, timeout_s: float,
                    env: dict[str, str] | None = None) -> CommandResult:
        return guarded_command(name, command, self.logs_dir, lambda: self._exec(command, timeout_s, env), _explain)

    def _exec(self, command: str, timeout_s: float, env: dict[str, str] | None) -> tuple[int | None, str, str, bool]:
        """Run ``command`` inside the service container: (exit code, stdout, stderr, timed out)."""
        if not self.alive():
            raise RuntimeError("the service container is not running, so the command cannot run inside it")
        if self._tools is None:
            self._tools = ops.probe_tools(self.client, self._container.id)
        shell, has_timeout = self._tools
        argv = [shell, "-c", command]
        if has_timeout:
            argv = ops.timeout_wrapped(argv, timeout_s)
        out = ops.exec_bounded(self.client, self._container.id, argv, self.container_env(env),
                               watchdog_s=timeout_s + ops.KILL_AFTER_S + 5)
        # coreutils timeout exits 124 (TERM worked) or 137 (needed KILL) once the time is up.
        timed_out = out.timed_out or (out.exit_code in (124, 137) and out.duration_s >= timeout_s - 0.5)
        return None if timed_out else out.exit_code, clip(out.stdout), clip(out.stderr), timed_out

    # --- logs and diagnostics -----------------------------------------------------------------

    def _container_logs(self, limit: int = LOG_FILE_CAP, lines: int | str = "all") -> str:
        if self._container is None:
            return ""
        try:
            data = self._container.logs(stdout=True, stderr=True, tail=lines)
        except docker.errors.DockerException as exc:
            return f"(container logs unavailable: {exc})"
        return data[-limit:].decode("utf-8", errors="replace")

    def logs(self) -> str:
        service = self._container_logs() or read_tail(self.logs_dir / "service.log", LOG_FILE_CAP)
        parts = [f"==> container {self.container_name} (stdout+stderr) <==\n{service}",
                 f"==> commands.log <==\n{read_tail(self.logs_dir / 'commands.log', LOG_FILE_CAP)}"]
        patterns = self.ctx.contract.logs.paths
        if patterns and self._container is not None:
            try:
                workdir = self._container.attrs.get("Config", {}).get("WorkingDir") or "/"
                parts.append(ops.read_container_files(self.client, self._container.id, patterns, workdir,
                                                      LOG_FILE_CAP, running=self.alive()))
            except docker.errors.DockerException as exc:
                parts.append(f"==> [grader] declared log files unreadable: {exc}")
        return "\n".join(parts)

    def isolation_info(self) -> dict[str, object]:
        """The container's lock-down and limits, for the report."""
        mem = self.ctx.config.local.memory_limit_mb
        return {"sandbox": "docker",
                "detail": (f"container: all capabilities dropped, no-new-privileges, {ops.PIDS_LIMIT} processes, "
                           f"{ops.NANO_CPUS / 1e9:g} CPUs, " + (f"{mem} MB memory" if mem else "no memory cap")
                           + ", no host mounts or docker socket, own network")}

    def diagnostics(self) -> dict[str, str]:
        if self._container is None:
            return {"container": "not created", "build": str({k: v for k, v in self.build_info.items() if k != "log"})}
        port = f"{self.ctx.contract.serving.port}/tcp -> 127.0.0.1:{self._host_port}"
        return ops.describe_container(self._container, port, self._container_logs(8000, lines=200))

    # --- teardown -----------------------------------------------------------------------------

    def _down_locked(self) -> None:
        started = time.monotonic()
        info = self._count_teardown()
        if self._client is None and not self._undo_registered:
            return  # nothing was ever created
        if self._container is not None:
            try:  # keep the service log for --keep and post-mortems: the container is about to go
                self.logs_dir.mkdir(parents=True, exist_ok=True)
                (self.logs_dir / "service.log").write_text(self._container_logs(), encoding="utf-8")
                self._container.stop(timeout=STOP_TIMEOUT_S)
            except (docker.errors.DockerException, OSError):
                pass  # removal below forces it
        removed = ops.remove_labelled(self.client, {"label": f"{ops.RUN_LABEL}={self.ctx.run_id}"})
        self._container = None
        self._network = None
        info["removed"] = [*info["removed"], *(f"{k[:-1]} {n}" for k in ("containers", "networks", "images")  # type: ignore[misc]
                                               for n in removed[k])]
        info["seconds"] = round(time.monotonic() - started, 2)
        if removed["errors"]:
            info["errors"] = removed["errors"]
            raise GraderFault("docker: teardown left resources behind", details="\n".join(removed["errors"]))
