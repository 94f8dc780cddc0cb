"""Docker engine operations of the docker runtime besides the build: labels, running a command
inside a container with a deadline, reading files out of a container, describing a container for
a failure report, and removing what a run (or a crashed one) left behind.

None of them trusts the candidate: outputs are capped and every wait is bounded, because a
candidate's command may hang or flood on purpose. ``docker.errors`` are left to the runtime to
translate, since it knows the command line the report should show.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections.abc import Callable
from functools import partial
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
from docker.utils.socket import frames_iter

#: Labels on everything the docker runtime creates; deletion never relies on memory.
MANAGED_LABEL = "takehome.managed"
RUN_LABEL = "takehome.run_id"
KIND_LABEL = "takehome.kind"
OWNER_PID_LABEL = "takehome.owner_pid"  # the grader process: cleanup_stale spares live runs
OWNER_HOST_LABEL = "takehome.owner_host"
#: Limits that config does not set (yet): 2 CPUs, 256 tasks (threads count), 64 MB of logs.
NANO_CPUS = 2_000_000_000
PIDS_LIMIT = 256
#: Inside the container: the state dir (a tmpfs that lives as long as the container) and /tmp.
STATE_DIR = "/tmp/takehome-state"
TMPFS = {"/tmp": "rw,exec,nosuid,nodev,mode=1777,size=1g", STATE_DIR: "rw,nosuid,nodev,mode=1777,size=64m"}
#: Captured per stream of a command before clipping (the report keeps 20,000 characters).
EXEC_CAPTURE_CAP = 4 * 2**20
#: Seconds between the timeout's SIGTERM and SIGKILL inside the container.
KILL_AFTER_S = 2


def run_labels(run_id: str, kind: str) -> dict[str, str]:
    """The labels of one resource of one run."""
    return {MANAGED_LABEL: "true", RUN_LABEL: run_id, KIND_LABEL: kind,
            OWNER_PID_LABEL: str(os.getpid()), OWNER_HOST_LABEL: socket.gethostname()}


def hardened_options(*, image: str, name: str, labels: dict[str, str], env: dict[str, str], network: str,
                     port: int, memory_mb: int) -> dict[str, Any]:
    """``containers.create`` arguments of a candidate's service: untrusted code, so every capability
    dropped, no privilege escalation (setuid), memory/CPU/pid limits, no host mounts and no
    docker socket, only ``env`` for environment, and its port published on the host's loopback only.
    An init process reaps what the candidate's commands leave behind (zombies count as pids)."""
    from docker.types import LogConfig

    return dict(
        image=image, name=name, detach=True, labels=labels, environment=env, network=network,
        ports={f"{port}/tcp": ("127.0.0.1",)},  # no host port given: the engine picks a free one
        cap_drop=["ALL"], security_opt=["no-new-privileges"], nano_cpus=NANO_CPUS, pids_limit=PIDS_LIMIT,
        tmpfs=TMPFS, extra_hosts={"host.docker.internal": "host-gateway"}, init=True, stdin_open=False,
        log_config=LogConfig(type="json-file", config={"max-size": "32m", "max-file": "2"}),
        **({"mem_limit": f"{memory_mb}m", "memswap_limit": f"{memory_mb}m"} if memory_mb > 0 else {}))


# --- commands inside a container ------------------------------------------------------------------

@dataclass
class ExecOutcome:
    """The result of one exec: exit code (None when killed by the watchdog), output, timing."""

    exit_code: int | None
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool


def probe_tools(client: docker.DockerClient, container_id: str) -> tuple[str, bool]:
    """The shell to run commands with (bash if present, else sh) and whether ``timeout`` exists."""
    out = exec_bounded(client, container_id, ["sh", "-c", "command -v bash; command -v timeout"], {}, 15)
    found = out.stdout.split()
    shell = "bash" if any(p.endswith("/bash") for p in found) else "sh"
    return shell, any(p.endswith("/timeout") for p in found)


def timeout_wrapped(argv: list[str], timeout_s: float) -> list[str]:
    """``argv`` under coreutils ``timeout``: TERM to its whole process group, KILL 2 s later."""
    return ["timeout", "-k", str(KILL_AFTER_S), str(max(1, math.ceil(timeout_s))), *argv]


def exec_bounded(client: docker.DockerClient, container_id: str, argv: list[str], env: dict[str, str],
                 watchdog_s: float, workdir: str | None = None) -> ExecOutcome:
    """Run ``argv`` in the container; give up after ``watchdog_s`` and kill it from the host side.

    Completion is decided by the exec's state, never by its output stream: a daemon that the
    command left behind keeps the stream open, and must not make a finished command look hung.
    """
    api = client.api
    started = time.monotonic()
    exec_id = api.exec_create(container_id, argv, stdout=True, stderr=True, stdin=False,
                              environment=env, workdir=workdir)["Id"]
    sock = api.exec_start(exec_id, socket=True)
    chunks: dict[int, list[bytes]] = {1: [], 2: []}
    sizes = {1: 0, 2: 0}

    def read() -> None:
        try:
            for stream, data in frames_iter(sock, False):
                if stream in chunks and sizes[stream] < EXEC_CAPTURE_CAP:
                    chunks[stream].append(data)
                    sizes[stream] += len(data)
        except (OSError, ValueError):
            pass  # the socket was shut down below

    reader = threading.Thread(target=read, name=f"docker-exec:{exec_id[:12]}", daemon=True)
    reader.start()
    deadline = started + watchdog_s
    state: dict[str, Any] = {}
    killed = False
    while True:
        state = api.exec_inspect(exec_id)
        if not state.get("Running"):
            break
        if time.monotonic() >= deadline:
            _kill_host_pid(int(state.get("Pid") or 0))
            killed = True
            break
        time.sleep(0.05)
    reader.join(1.0)
    try:
        getattr(sock, "_sock", sock).shutdown(socket.SHUT_RDWR)
        sock.close()
    except OSError:
        pass
    reader.join(1.0)
    text = {k: b"".join(v).decode("utf-8", errors="replace") for k, v in chunks.items()}
    code = None if killed else state.get("ExitCode")
    return ExecOutcome(code, text[1], text[2], time.monotonic() - started, killed)


def _kill_host_pid(pid: int) -> None:
    """Kill an exec's process tree by its host pid (the engine reports host pids). Best effort:
    it needs the grader to be root or the container's uid; ``timeout`` inside normally acts first."""
    if pid <= 1:
        return
    try:
        import psutil

        root = psutil.Process(pid)
        for proc in [*root.children(recursive=True), root]:
            proc.kill()
    except Exception:  # noqa: BLE001 - gone already, or not ours to kill
        pass


# --- files inside a container ---------------------------------------------------------------------

def read_container_files(client: docker.DockerClient, container_id: str, patterns: list[str], workdir: str,
                         cap_bytes: int, running: bool) -> str:
    """Tails of the files matching ``patterns`` (relative to ``workdir``) inside the container.

    A running container globs in its own shell; a stopped one can only be read path by path.
    """
    parts: list[str] = []
    per_file = max(cap_bytes // max(len(patterns), 1), 64 * 1024)
    for pattern in patterns[:20]:
        if running:
            # $2 unquoted on purpose: the container's own shell expands the glob (at most 20 files).
            script = ('cd "$1" 2>/dev/null || cd /; n=0; for f in $2; do [ -f "$f" ] || continue; n=$((n+1)); '
                      '[ $n -le 20 ] || break; printf "==> %s <==\\n" "$f"; tail -c "$3" -- "$f"; echo; done')
            argv = ["sh", "-c", script, "sh", workdir, pattern, str(per_file)]
            out = exec_bounded(client, container_id, argv, {}, 20)
            parts.append(out.stdout[: per_file * 21] or f"==> {pattern} <==\n(no such file)")
        else:
            path = pattern if pattern.startswith("/") else f"{workdir.rstrip('/')}/{pattern}"
            parts.append(f"==> {pattern} <==\n{_archive_tail(client, container_id, path, per_file)}")
    return "\n".join(parts)


def _archive_tail(client: docker.DockerClient, container_id: str, path: str, cap_bytes: int) -> str:
    import io
    import tarfile

    try:
        stream, _stat = client.api.get_archive(container_id, path)
        buf = bytearray()
        for chunk in stream:
            buf += chunk
            if len(buf) > cap_bytes * 4:  # keep memory bounded: a tail of the stream is enough
                del buf[: len(buf) - cap_bytes * 2]
                return "(file too large to read from a stopped container; its tail is lost)"
        with tarfile.open(fileobj=io.BytesIO(bytes(buf))) as tar:
            member = tar.next()
            if member is None or not member.isfile():
                return "(not a regular file)"
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
        return data[-cap_bytes:].decode("utf-8", errors="replace")
    except docker.errors.NotFound:
        return "(no such file)"
    except (docker.errors.APIError, tarfile.TarError) as exc:
        return f"(unreadable: {exc})"


# --- leftovers of crashed runs --------------------------------------------------------------------

def _owner_alive(labels: dict[str, str]) -> bool:
    if labels.get(OWNER_HOST_LABEL) != socket.gethostname():
        return False
    try:
        pid = int(labels.get(OWNER_PID_LABEL, "0"))
    except ValueError:
        return False
    if pid <= 1:
        return False
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, just not ours


def _age_s(created: Any) -> float:
    """Seconds since a resource was created (engine timestamps are RFC 3339 or epoch seconds)."""
    from datetime import UTC, datetime

    if isinstance(created, int | float):
        return time.time() - float(created)
    try:
        text = str(created)
        if "." in text:  # nanoseconds: trim to what fromisoformat accepts
            head, _, tail = text.partition(".")
            digits = "".join(c for c in tail if c.isdigit())[:6]
            zone = tail[len("".join(c for c in tail if c.isdigit())):]
            text = f"{head}.{digits}{zone}"
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return (datetime.now(UTC) - when).total_seconds()
    except ValueError:
        return float("inf")


def remove_labelled(client: docker.DockerClient, selector: dict[str, str],
                    keep: Callable[[dict[str, str], Any], bool] = lambda _labels, _created: False,
                    ) -> dict[str, list[str]]:
    """Remove the containers, networks and images matching ``selector`` (a label filter), except
    those ``keep(labels, created)`` spares. Returns the names removed and the errors, per kind;
    something that vanished meanwhile is not an error."""
    removed: dict[str, list[str]] = {"containers": [], "networks": [], "images": [], "errors": []}
    for container in client.containers.list(all=True, filters=selector):
        if not keep(container.labels, container.attrs.get("Created")):
            _remove(removed, "containers", container.name, partial(container.remove, force=True, v=True))
    for network in client.networks.list(filters=selector):
        if not keep(network.attrs.get("Labels") or {}, network.attrs.get("Created")):
            _remove(removed, "networks", network.name, network.remove)
    for image in client.images.list(all=True, filters=selector):
        if not keep(image.labels, image.attrs.get("Created")):
            # noprune keeps the parent layers: they are the build cache of the next grading.
            _remove(removed, "images", ",".join(image.tags) or image.short_id,
                    partial(client.images.remove, image.id, force=True, noprune=True))
    return removed


def cleanup_stale(client: docker.DockerClient, older_than_s: float = 0, include_live: bool = False,
                  ) -> dict[str, list[str]]:
    """Remove every ``takehome.managed=true`` container, network and candidate image left by runs
    that crashed (their grader process is gone) and are older than ``older_than_s``.

    Resources of a grading still running on this host are spared unless ``include_live``.
    The base image is never touched (it carries no ``takehome.managed`` label). Returns the
    names removed and the errors met, per kind; never raises for a resource that vanished.
    """
    def keep(labels: dict[str, str], created: Any) -> bool:
        return (not include_live and _owner_alive(labels or {})) or _age_s(created) < older_than_s

    return remove_labelled(client, {"label": f"{MANAGED_LABEL}=true"}, keep)


def _remove(record: dict[str, list[str]], kind: str, name: str, fn: Callable[[], Any]) -> None:
    try:
        fn()
        record[kind].append(name)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        record["errors"].append(f"{kind[:-1]} {name}: {exc.explanation or exc}")


# --- failure reports ------------------------------------------------------------------------------

def describe_container(container: Any, port_text: str, log_tail: str) -> dict[str, str]:
    """Collectors for a failure report: state (exit code, OOM kill), limits, processes, log tail."""
    try:
        container.reload()
        attrs = container.attrs
    except docker.errors.DockerException as exc:
        return {"container": f"inspect failed: {exc}"}
    state, host = attrs.get("State", {}), attrs.get("HostConfig", {})
    keys = ("Status", "ExitCode", "OOMKilled", "Error", "StartedAt", "FinishedAt")
    top = "(not running)"
    if state.get("Status") == "running":
        try:
            table = container.top()
            top = "\n".join(" ".join(map(str, row)) for row in [table["Titles"], *table["Processes"]])
        except docker.errors.DockerException as exc:
            top = f"(docker top failed: {exc})"
    return {
        "container": (f"{attrs.get('Name', '').lstrip('/')} {attrs.get('Id', '')[:12]} "
                      f"image {attrs.get('Config', {}).get('Image')}"),
        "state": (", ".join(f"{k}={state.get(k)}" for k in keys) + f", RestartCount={attrs.get('RestartCount')}"
                  + (f", Health={state['Health'].get('Status')}" if state.get("Health") else "")),
        "limits": (f"Memory={host.get('Memory')} NanoCpus={host.get('NanoCpus')} PidsLimit={host.get('PidsLimit')} "
                   f"CapDrop={host.get('CapDrop')} SecurityOpt={host.get('SecurityOpt')}"),
        "port": port_text,
        "processes": top,
        "container_log_tail": log_tail,
    }
