"""Replay logged prediction requests: re-score them offline with any model version, or re-send them.

    python -m fraud.replay --request-id tk-abc-drift-40                 # re-score with the version that answered
    python -m fraud.replay --request-id tk-abc-drift-40 --version v1    # what would v1 have said?
    python -m fraud.replay --last 20 --url http://127.0.0.1:3000        # send them to a running server

Reads ``logs/requests.jsonl`` (or ``--log``), keeps ``event == "predict"`` records with status 200
(rejected requests have no validated instances, only a body excerpt), and prints one JSON line per
request: the logged predictions, the replayed ones and the largest difference. Exit code 1 if an
offline replay with the version that answered differs by more than ``--atol`` (the log or the
model file changed).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any, Iterator

from fraud import settings


def records(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") == "predict" and rec.get("status") == 200 and rec.get("instances"):
                yield rec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraud.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--log", type=Path, default=settings.request_log_path())
    parser.add_argument("--request-id", action="append", default=[], help="replay this id (repeatable)")
    parser.add_argument("--last", type=int, default=0, help="replay the last N successful requests")
    parser.add_argument("--version", help="score with this model version (default: the one that answered)")
    parser.add_argument("--url", help="send to this server instead of scoring offline")
    parser.add_argument("--atol", type=float, default=1e-9)
    args = parser.parse_args(argv)

    chosen = [r for r in records(args.log) if not args.request_id or r.get("request_id") in args.request_id]
    if args.last:
        chosen = chosen[-args.last:]
    if not chosen:
        print(f"no matching successful predict records in {args.log}", file=sys.stderr)
        return 2
    from fraud.features import FEATURES

    models: dict[str, Any] = {}
    worst = 0.0
    for rec in chosen:
        rows = [tuple(inst[f] for f in FEATURES) for inst in rec["instances"]]
        version = args.version or rec["model_version"]
        if args.url:
            body = json.dumps({"instances": rec["instances"]}).encode()
            req = urllib.request.Request(args.url.rstrip("/") + settings.PREDICT_PATH, data=body, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  settings.REQUEST_ID_HEADER: f"replay-{rec['request_id']}"})
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - operator-supplied URL
                got = json.loads(resp.read())["predictions"]
            version = "server"
        else:
            if version not in models:
                from fraud.models import load_model

                models[version] = load_model(version)
            got = [float(p) for p in models[version].predict_rows(rows)]
        diff = max(abs(a - b) for a, b in zip(got, rec["predictions"]))
        if version == rec["model_version"]:  # offline, same version: must be identical
            worst = max(worst, diff)
        print(json.dumps({"request_id": rec["request_id"], "logged_version": rec["model_version"],
                          "replayed_with": version, "logged": rec["predictions"], "replayed": got,
                          "max_abs_diff": diff}))
    return 1 if worst > args.atol else 0


if __name__ == "__main__":
    sys.exit(main())
