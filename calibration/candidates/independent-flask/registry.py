"""Deploy and roll back: python registry.py deploy v2 | rollback | status

The registry (``$TAKEHOME_STATE_DIR/registry.json``) holds the current version and the previous
one (served before the last deploy that changed anything). Deploy asks the running service to
load and swap the version, checks ``/version``, then records it. Rollback serves ``previous``
again the same way and keeps every model file; run twice, it sees it is already there and only
checks. Exit 0 means the intended version is served; anything else prints why and exits 1.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent
STATE = Path(os.environ.get("TAKEHOME_STATE_DIR", ROOT / "state"))
ENDPOINT = os.environ.get("TAKEHOME_ENDPOINT", f"http://127.0.0.1:{os.environ.get('PORT', '8080')}")


def call(method: str, path: str) -> dict:
    req = urllib.request.Request(ENDPOINT + path, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def read() -> dict:
    try:
        return json.loads((STATE / "registry.json").read_text())
    except (OSError, ValueError):
        served = call("GET", "/version")["version"]  # first deploy: what the service booted on
        return {"current": served, "previous": None, "rolled_back_from": None}


def write(reg: dict) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    tmp = STATE / "registry.json.tmp"
    tmp.write_text(json.dumps(reg, indent=2))
    os.replace(tmp, STATE / "registry.json")  # readers see the old file or the new one


def serve(version: str) -> None:
    if not (ROOT / "models" / version / "model.joblib").is_file():
        raise SystemExit(f"error: models/{version}/model.joblib does not exist; nothing was changed")
    call("POST", f"/admin/deploy/{version}")
    served = call("GET", "/version")["version"]
    if served != version:
        raise SystemExit(f"error: asked for {version}, the service still serves {served}")


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "status"
    reg = read()
    if cmd == "deploy" and len(argv) == 2:
        version = argv[1]
        serve(version)
        if version != reg["current"]:
            reg = {"current": version, "previous": reg["current"], "rolled_back_from": None}
        write(reg)
        print(f"deployed {version}: served and verified; previous version is {reg['previous']}")
    elif cmd == "rollback":
        target = reg.get("previous")
        if reg.get("rolled_back_from") and reg["current"] == target:
            serve(target)  # re-verify only: never flip back to the version we rolled away from
            print(f"already on {target} (rolled back from {reg['rolled_back_from']}); verified")
            return 0
        if not target:
            raise SystemExit("error: no previous version to roll back to; nothing was changed")
        serve(target)
        write({"current": target, "previous": target, "rolled_back_from": reg["current"]})
        print(f"rolled back from {reg['current']} to {target}: served and verified; {reg['current']} kept on disk")
    elif cmd == "status":
        print(json.dumps({"registry": reg, "served": call("GET", "/version")}, indent=2))
    else:
        raise SystemExit("usage: registry.py deploy <version> | rollback | status")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except OSError as exc:
        raise SystemExit(f"error: cannot reach the service at {ENDPOINT}: {exc}") from None
