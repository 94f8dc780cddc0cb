"""``python -m app.restart_rollback``: roll back by restarting the server on the previous version.

The server serves the registry's current version when it starts, so a rollback is: point the
registry at the previous version, stop the server (its pid is in ``$TAKEHOME_STATE_DIR/server.pid``),
start a new one in the background with nohup (same environment), and wait until it is ready and
reports the rolled-back-to version. Nothing in the server has to support hot swaps.
A second run finds "already rolled back" in the registry and changes nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from app import settings
from app.control import ControlError, ServerClient
from app.models import ModelError, artifact_sha256
from app.registry import RegistryError, _history, locked, now, read_registry, write_registry

PID_FILE = "server.pid"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie is gone; only its parent has not reaped it yet


def stop_server(timeout_s: float = 20.0) -> None:
    path = settings.state_dir() / PID_FILE
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        print(f"no server pid in {path}; assuming the server is not running")
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    print(f"stopping the server (pid {pid})")
    end = time.monotonic() + timeout_s
    while _running(pid) and time.monotonic() < end:
        time.sleep(0.1)
    if _running(pid):
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)


def start_server() -> None:
    logs = settings.ROOT / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "server.log", "ab") as out:
        proc = subprocess.Popen(["nohup", sys.executable, "-m", "app"], cwd=settings.ROOT, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    print(f"started a new server (pid {proc.pid}), output in {logs / 'server.log'}")


def wait_ready(client: ServerClient, version: str, sha256: str, timeout_s: float = 90.0) -> None:
    end = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < end:
        try:
            client.verify(version, sha256)
            return
        except ControlError as exc:
            last = str(exc)
            time.sleep(0.5)
    raise RegistryError(f"the restarted server did not serve {version} within {timeout_s:g}s: {last}")


def main() -> int:
    client = ServerClient(settings.endpoint(), connect_retries_s=1.0)
    try:
        with locked():
            reg = read_registry()
            if reg is None:
                raise RegistryError("no registry: nothing was deployed, nothing to roll back")
            current, previous = reg["current"], reg.get("previous")
            if not previous:
                if reg.get("rolled_back_from"):
                    print(f"already rolled back: {current['version']} is current; nothing to do")
                    return 0
                raise RegistryError(f"no previous version: {current['version']} is the only one ever deployed")
            artifact_sha256(previous["version"], previous["sha256"])
            write_registry({**reg, "current": {**previous, "deployed_at": now()}, "previous": None,
                            "rolled_back_from": current,
                            "history": _history(reg, action="rollback", version=previous["version"],
                                                sha256=previous["sha256"], from_version=current["version"])})
            print(f"registry: {current['version']} -> {previous['version']}; restarting the server")
        stop_server()
        start_server()
        wait_ready(client, previous["version"], previous["sha256"])
    except (RegistryError, ModelError) as exc:
        print(f"error: rollback failed: {exc}", file=sys.stderr)
        return 1
    print(f"rolled back to {previous['version']}: the restarted server serves it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
