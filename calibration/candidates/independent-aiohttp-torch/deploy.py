"""python deploy.py v1|v2 (serve that version) | rollback (serve the previous one) | history

Every change is a line appended to $TAKEHOME_STATE_DIR/deploys.jsonl, after the server proved it
serves the new version: the last line is what is served, and "previous" is the version served
before the last deploy that changed it. A rollback appends a "rollback" line; a second rollback
finds it and only checks that the version is still served, so it never flips back. Model files
are never deleted. Exit 0: the intended version is served; else a message and exit 1.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent
STATE = Path(os.environ.get("TAKEHOME_STATE_DIR", ROOT / "state"))
HISTORY = STATE / "deploys.jsonl"
ENDPOINT = os.environ.get("TAKEHOME_ENDPOINT", f"http://127.0.0.1:{os.environ.get('PORT', '8080')}")


def http(method: str, path: str) -> dict:
    req = urllib.request.Request(ENDPOINT + path, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def history() -> list[dict]:
    if not HISTORY.exists():
        return []
    return [json.loads(line) for line in HISTORY.read_text().splitlines() if line.strip()]


def record(entry: dict) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    with HISTORY.open("a") as fh:
        fh.write(json.dumps({**entry, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    (STATE / "registry.json").write_text(json.dumps({"serving": entry["version"]}))  # what a restart boots on


def switch(version: str) -> None:
    if not (ROOT / "models" / version / "model.pt2").is_file():
        raise SystemExit(f"error: models/{version}/model.pt2 is missing; nothing was changed")
    http("POST", f"/admin/switch/{version}")
    served = http("GET", "/version")["version"]
    if served != version:
        raise SystemExit(f"error: switched to {version} but {served} is served")


def main(args: list[str]) -> int:
    past = history()
    serving = past[-1]["version"] if past else http("GET", "/version")["version"]
    if args == ["history"]:
        print("\n".join(json.dumps(e) for e in past) or "no deploys yet")
    elif args == ["rollback"]:
        if past and past[-1]["action"] == "rollback":
            switch(serving)
            print(f"already on {serving} (rolled back from {past[-1]['from']}); verified")
            return 0
        previous = past[-1].get("from") if past else None
        if not previous:
            raise SystemExit("error: no previous version recorded; nothing was changed")
        switch(previous)
        record({"action": "rollback", "version": previous, "from": serving})
        print(f"rolled back {serving} -> {previous}: served and verified ({serving} kept for replay)")
    elif len(args) == 1 and args[0].startswith("v"):
        switch(args[0])
        if args[0] != serving:  # deploying what is served changes nothing, "previous" included
            record({"action": "deploy", "version": args[0], "from": serving})
        previous = serving if args[0] != serving else (past[-1].get("from") if past else None)
        print(f"deployed {args[0]}: served and verified (previous: {previous or 'none'})")
    else:
        raise SystemExit(__doc__)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except OSError as exc:
        raise SystemExit(f"error: the server at {ENDPOINT} did not answer: {exc}") from None
