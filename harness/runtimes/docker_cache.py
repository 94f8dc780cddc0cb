"""The candidates' build cache on the docker runtime: kept between gradings, pruned on request.

Teardown removes the labelled child image of each run but keeps the candidate's own untagged
build result, so that grading the same repo again reuses its layers (a cold build can take
minutes). Those images are invisible to ``cleanup_stale`` (they carry no run label) and would
pile up on a machine that grades many candidates, so every build result is recorded here with
the time it was last used, and ``takehome cleanup --build-cache`` removes them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from harness.locks import exclusive_lock

RECORD_NAME = "docker-build-cache.json"


def _record_path(cache_dir: Path) -> Path:
    return cache_dir / "images" / RECORD_NAME


def _locked(path: Path) -> Any:
    """The record's lock: two gradings finishing builds at once must not lose an entry."""
    return exclusive_lock(path.with_suffix(".lock"), 30, "updating the build cache record")


def _read(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, dict[str, Any]]) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)


def record_build(cache_dir: Path, image_id: str, source: str) -> None:
    """Remember that ``image_id`` is a candidate's build result, used now (``source``: which
    grading built it, so that a pruned image can be traced to its report)."""
    path = _record_path(cache_dir)
    with _locked(path):
        data = _read(path)
        data[image_id] = {"source": source, "last_used": time.time()}
        _write(path, data)


def recorded_builds(cache_dir: Path) -> dict[str, dict[str, Any]]:
    """image id -> {source, last_used} of every recorded build result."""
    return _read(_record_path(cache_dir))


def prune_build_cache(client: Any, cache_dir: Path, older_than_s: float = 0) -> dict[str, list[str]]:
    """Remove the recorded build results not used for ``older_than_s`` seconds.

    An image still in use (a running grading's container, or a child image) is kept and reported
    under ``kept``; one already gone is forgotten. Layers shared with other images stay (the
    engine only deletes layers nothing else needs).
    """
    import docker.errors

    path = _record_path(cache_dir)
    out: dict[str, list[str]] = {"images": [], "kept": [], "errors": []}
    if not path.is_file():
        return out
    with _locked(path):
        data = _read(path)
        now = time.time()
        for image_id, info in sorted(data.items()):
            if now - float(info.get("last_used", 0)) < older_than_s:
                continue
            try:
                client.images.remove(image_id, force=False, noprune=False)
                out["images"].append(f"{image_id[:19]} ({info.get('source', '?')})")
                del data[image_id]
            except docker.errors.ImageNotFound:
                del data[image_id]
            except docker.errors.APIError as exc:
                if exc.status_code == 409:  # in use by a container or a child image
                    out["kept"].append(f"{image_id[:19]}: in use")
                else:
                    out["errors"].append(f"{image_id[:19]}: {exc.explanation or exc}")
        _write(path, data)
    return out
