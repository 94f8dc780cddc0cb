"""Replay logged requests against a running server and compare the predictions.

    python -m app.replay logs/requests.jsonl --request-id tk-1234-drift-40
    python -m app.replay logs/requests.jsonl --status 500 --endpoint http://127.0.0.1:8080
    python -m app.replay logs/requests.jsonl --since 2026-01-01T10:00 --limit 100

Successful requests are re-sent with their logged instances and the new predictions are compared
with the logged ones (exact when the same model version answers; a version change is reported).
Rejected or failed requests are re-sent with their logged body excerpt, to reproduce the error.
Exit code: 0 when every replayed prediction matches, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

from app import settings


def records(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("event") == "predict":
                yield rec


def send(endpoint: str, body: bytes, request_id: str) -> tuple[int, dict[str, Any] | str, str | None]:
    req = urllib.request.Request(endpoint + settings.PREDICT_PATH, data=body, method="POST",
                                 headers={"Content-Type": "application/json",
                                          settings.REQUEST_ID_HEADER: request_id})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - our own server
            return resp.status, json.loads(resp.read()), resp.headers.get("X-Model-Version")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()[:500].decode("utf-8", "replace"), None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("log", type=Path, nargs="?", default=settings.request_log_path())
    parser.add_argument("--request-id", action="append", default=[], help="replay this id (repeatable)")
    parser.add_argument("--status", type=int, help="replay requests that got this status")
    parser.add_argument("--since", help="replay requests logged at or after this ISO timestamp")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--endpoint", default=settings.endpoint())
    args = parser.parse_args(argv)

    chosen = []
    for rec in records(args.log):
        if args.request_id and rec.get("request_id") not in args.request_id:
            continue
        if args.status is not None and rec.get("status") != args.status:
            continue
        if args.since and str(rec.get("ts", "")) < args.since:
            continue
        chosen.append(rec)
        if len(chosen) >= args.limit:
            break
    if not chosen:
        print("no matching requests in", args.log)
        return 1
    differ = 0
    for rec in chosen:
        rid = f"replay-{rec.get('request_id')}"
        if rec.get("status") == 200:
            status, body, version = send(args.endpoint, json.dumps({"instances": rec["instances"]}).encode(), rid)
            same = status == 200 and isinstance(body, dict) and body.get("predictions") == rec["predictions"]
            note = "" if version in (None, rec.get("model_version")) else \
                f" (logged under {rec.get('model_version')}, now served by {version})"
            print(f"{rec['request_id']}: HTTP {status}, predictions {'identical' if same else 'DIFFER'}{note}")
            differ += 0 if same else 1
        else:
            excerpt = rec.get("body_excerpt") or ""
            status, body, _ = send(args.endpoint, excerpt.encode(), rid)
            print(f"{rec['request_id']}: logged HTTP {rec.get('status')} ({rec.get('error')}), replay HTTP {status}: "
                  f"{json.dumps(body)[:300]}")
            differ += 0 if status == rec.get("status") else 1
    print(f"{len(chosen)} replayed, {differ} differ")
    return 0 if differ == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
