"""Replay logged prediction requests against a running server and compare the answers.

    python -m fraud_kserve.replay logs/requests.jsonl --request-id tk-1234-correctness-7
    python -m fraud_kserve.replay logs/requests.jsonl --last 50 --url http://127.0.0.1:8080

Each ``predict`` line of the request log holds the validated rows (in the ``columns`` order of the
``startup`` line) and the predictions that were returned, with the model version and digest. The
replay re-sends the rows and reports, per request, the largest difference from what was logged:
0 when the same version is live, the v1/v2 disagreement when it is not. Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from typing import Any, Iterator

from fraud_kserve import settings


def records(path: str) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line.startswith("{"):
                try:
                    yield json.loads(line)
                except ValueError:
                    continue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraud_kserve.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("log", help="request log (JSON lines), e.g. logs/requests.jsonl or a saved pod log")
    parser.add_argument("--request-id", action="append", default=[], help="replay this request (repeatable)")
    parser.add_argument("--last", type=int, default=0, help="replay the last N successful predictions")
    parser.add_argument("--url", default=settings.endpoint())
    args = parser.parse_args(argv)
    columns: list[str] | None = None
    chosen: list[dict[str, Any]] = []
    for rec in records(args.log):
        if rec.get("event") == "startup":
            columns = rec.get("columns")
        elif rec.get("event") == "predict" and rec.get("status") == 200 and rec.get("rows"):
            if not args.request_id or rec.get("request_id") in args.request_id:
                chosen.append({**rec, "columns": columns})
    if args.last:
        chosen = chosen[-args.last:]
    if not chosen:
        print("no matching successful prediction in the log", file=sys.stderr)
        return 1
    worst = 0.0
    for rec in chosen:
        cols = rec["columns"]
        if not cols:
            print(f"{rec['request_id']}: no startup line with the column order before it", file=sys.stderr)
            return 1
        body = json.dumps({"instances": [dict(zip(cols, row)) for row in rec["rows"]]}).encode()
        req = urllib.request.Request(f"{args.url}{settings.PREDICT_PATHS[0]}", data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "X-Request-ID": f"replay-{rec['request_id']}"[:200]})
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - operator-supplied URL
            out = json.loads(resp.read())
        diff = max(abs(a - b) for a, b in zip(out["predictions"], rec["predictions"]))
        worst = max(worst, diff)
        print(f"{rec['request_id']}: {len(rec['rows'])} rows, logged {rec.get('model_version')}, "
              f"now {out.get('model_version')}, max |diff| {diff:.2e}")
    print(f"replayed {len(chosen)} request(s); largest difference {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
