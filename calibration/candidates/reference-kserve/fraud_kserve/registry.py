"""The model registry and the one-command deploy / rollback.

    python -m fraud_kserve.registry deploy v2     # make v2 the served model (v1 becomes "previous")
    python -m fraud_kserve.registry rollback      # serve "previous" again; safe to run twice
    python -m fraud_kserve.registry status        # what the registry says and what the server serves

The registry is ``$TAKEHOME_STATE_DIR/registry.json``: the current and the previous version (each
with the digest of its files), the version a rollback moved away from, and a timestamped history.
It is only ever replaced whole (temp file + fsync + ``os.replace``), under an exclusive lock, and
only after the server has proved it serves the new version; a failed command leaves it untouched.

Rollback follows Argo Rollouts / Flagger: check that the last known good version exists and has
the recorded digest *before* switching; have the server load and smoke-test it while the current
version keeps serving, then swap one reference (no request fails); verify from ``GET /version``;
keep the bad version on disk. A second rollback finds "already rolled back" in the registry and
only re-verifies: it never flips back to the version it just rolled away from. Exit code 0 means
the intended version is being served; anything else is a failure, with the reason on stderr.

This module is stdlib-only on purpose (no torch, no KServe): it starts in ~50 ms, which is most of
the rollback's wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from fraud_kserve import settings
from fraud_kserve.artifacts import ModelError, available_versions, check_version, rel_path, version_digest
from fraud_kserve.control import ControlError, ServerClient

REGISTRY_FILE = "registry.json"
LOCK_FILE = "registry.lock"
FORMAT = 1


class RegistryError(Exception):
    """The command cannot do what was asked; the registry was left as it was."""


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def registry_path(state: Path | None = None) -> Path:
    return (state or settings.state_dir()) / REGISTRY_FILE


def read_registry(state: Path | None = None) -> dict[str, Any] | None:
    path = registry_path(state)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RegistryError(f"registry {path} is unreadable: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("current"), dict):
        raise RegistryError(f"registry {path} is not a format-{FORMAT} registry")
    return data


def write_registry(data: dict[str, Any], state: Path | None = None) -> None:
    """Replace the registry atomically: readers see the old file or the new one, never half of one."""
    path = registry_path(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**data, "format": FORMAT, "updated_at": now()}
    fd, tmp = tempfile.mkstemp(prefix=".registry.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def locked(state: Path | None = None, timeout_s: float = 60.0) -> Iterator[None]:
    """Exclusive lock over the registry: two deploys (or a deploy and the server's bootstrap)
    never interleave."""
    directory = state or settings.state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK_FILE, "a+") as fh:
        end = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > end:
                    raise RegistryError(f"another deploy/rollback holds {directory / LOCK_FILE}") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def entry(version: str, sha256: str) -> dict[str, Any]:
    return {"version": version, "sha256": sha256, "path": rel_path(version), "deployed_at": now()}


def bootstrap(version: str, sha256: str, state: Path | None = None) -> dict[str, Any]:
    """First start without a registry: record what the server chose to serve."""
    data = {"current": entry(version, sha256), "previous": None, "rolled_back_from": None,
            "history": [{"at": now(), "action": "bootstrap", "version": version, "sha256": sha256}]}
    write_registry(data, state)
    return data


def _history(reg: dict[str, Any], **event: Any) -> list[dict[str, Any]]:
    return [*reg.get("history", []), {"at": now(), **event}][-200:]


def _switch(client: ServerClient, version: str, sha256: str, restore: dict[str, Any] | None) -> None:
    """Ask the server to serve (version, sha256) and verify it does; on failure put back what was
    served before (``restore``) and raise."""
    try:
        client.reload(version, sha256)
        client.verify(version, sha256)
    except ControlError as exc:
        if restore and restore.get("version") and restore.get("sha256"):
            with contextlib.suppress(ControlError):
                client.reload(restore["version"], restore["sha256"])
        raise RegistryError(f"the server did not switch to {version}: {exc}") from None


def deploy(version: str, client: ServerClient, log=print) -> dict[str, Any]:  # noqa: ANN001
    check_version(version)
    with locked():
        reg = read_registry()
        served = client.served()
        log(f"server at {client.base_url} serves {served['version']} (sha256 {served['sha256'][:12]})")
        digest = version_digest(version)  # the files exist and are readable, before anything changes
        log(f"{version}: {rel_path(version)} present, digest {digest[:12]}")
        current = reg["current"] if reg else entry(served["version"], served["sha256"])
        if current["version"] == version and current["sha256"] == digest:
            if served["version"] != version or served["sha256"] != digest:
                _switch(client, version, digest, served)
            log(f"{version} is already the current version and is served; nothing to change")
            return reg or bootstrap(version, digest)
        _switch(client, version, digest, served)  # the server loads + smoke-tests it before swapping
        new = {**(reg or {}), "current": entry(version, digest), "previous": current, "rolled_back_from": None,
               "history": _history(reg or {}, action="deploy", version=version, sha256=digest,
                                   from_version=current["version"])}
        try:
            write_registry(new)
        except OSError as exc:
            _switch(client, served["version"], served["sha256"], None)
            raise RegistryError(f"cannot write the registry ({exc}); the server was switched back") from None
        log(f"deployed {version}: served and verified; previous version is {current['version']}")
        return new


def rollback(client: ServerClient, log=print) -> dict[str, Any]:  # noqa: ANN001
    with locked():
        reg = read_registry()
        if reg is None:
            raise RegistryError(f"no registry at {registry_path()}: nothing was deployed, nothing to roll back")
        current, previous = reg["current"], reg.get("previous")
        served = client.served()
        log(f"registry: current {current['version']}, previous {previous['version'] if previous else 'none'}; "
            f"server serves {served['version']}")
        if not previous:
            gone = reg.get("rolled_back_from")
            if not gone:
                raise RegistryError(f"no previous version recorded: {current['version']} is the only version "
                                    "ever deployed, there is nothing to roll back to")
            # Already rolled back: make sure the rolled-back-to version is served; change nothing else.
            if served["version"] != current["version"] or served["sha256"] != current["sha256"]:
                _check_files(current)
                _switch(client, current["version"], current["sha256"], served)
            log(f"already rolled back: {current['version']} is served; {gone['version']} stays on disk at "
                f"{gone.get('path')} for diagnosis (deploy it again explicitly to re-promote it)")
            return reg
        # Last known good first: it must exist and be the same bytes as when it was served.
        _check_files(previous)
        log(f"{previous['version']} (digest {previous['sha256'][:12]}) is on disk, unchanged")
        _switch(client, previous["version"], previous["sha256"], served)
        new = {**reg, "current": {**previous, "deployed_at": now()}, "previous": None, "rolled_back_from": current,
               "history": _history(reg, action="rollback", version=previous["version"],
                                   sha256=previous["sha256"], from_version=current["version"])}
        try:
            write_registry(new)
        except OSError as exc:
            _switch(client, served["version"], served["sha256"], None)
            raise RegistryError(f"cannot write the registry ({exc}); the server was switched back") from None
        log(f"rolled back {current['version']} -> {previous['version']}: served and verified; "
            f"{current['version']} kept at {current.get('path')} for diagnosis")
        return new


def _check_files(item: dict[str, Any]) -> None:
    try:
        digest = version_digest(item["version"])
    except ModelError as exc:
        raise RegistryError(f"previous version is not servable, not switching: {exc}") from None
    if digest != item["sha256"]:
        raise RegistryError(f"previous version {item['version']} changed on disk (digest {digest[:12]}, "
                            f"registered {item['sha256'][:12]}): not switching to unknown bytes")


def status(client: ServerClient, log=print) -> dict[str, Any]:  # noqa: ANN001
    reg = read_registry()
    try:
        served: Any = client.served()
    except ControlError as exc:
        served = {"error": str(exc)}
    out = {"registry": reg, "served": served, "registry_path": str(registry_path()),
           "versions_on_disk": available_versions()}
    log(json.dumps(out, indent=2))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraud_kserve.registry", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    dep = sub.add_parser("deploy", help="serve a model version (v1, v2, ...)")
    dep.add_argument("version", nargs="?", default=os.environ.get("TAKEHOME_MODEL_VERSION"))
    sub.add_parser("rollback", help="serve the previous version again (idempotent)")
    sub.add_parser("status", help="show the registry and the served version")
    args = parser.parse_args(argv)
    client = ServerClient(settings.endpoint())
    started = time.monotonic()
    try:
        if args.command == "deploy":
            if not args.version:
                parser.error("deploy needs a version (or $TAKEHOME_MODEL_VERSION)")
            deploy(args.version, client)
        elif args.command == "rollback":
            rollback(client)
        else:
            status(client)
    except (RegistryError, ModelError, ControlError) as exc:
        print(f"error: {args.command} failed: {exc}", file=sys.stderr)
        return 1
    print(f"{args.command} ok in {time.monotonic() - started:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
