"""Read a candidate's request log records: find a request's record by its id, and the inputs in it.

The contract (CONTRACT.md, "Request logging") promises what the grader reads, so that a replay
check can take the inputs a service logged and send them again:

* records are JSON objects, one per line (JSON lines); other lines are skipped, so a log may mix
  records with plain text;
* a request's record is an object holding the request id, verbatim, as one of its string values
  (at any depth: ``{"request_id": ...}``, ``{"http": {"id": ...}}``);
* its inputs are under ``instances``, ``inputs`` or ``rows``, at the top level or inside
  ``request``, ``body`` or ``payload`` (which may also be the request body as a JSON string), as

  - a list of instances keyed by feature name (the v1 wire format),
  - a list of lists, each in the model's feature order (``feature_order`` in schema.json), or
  - the Open Inference Protocol's input tensors (``[{"name": f, "data": [...]}, ...]``).

A record of the same id without inputs (an access log line beside the prediction record) is
skipped in favour of one that has them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from reference_model.schema import FEATURES

#: Keys whose value can hold the inputs, and keys of objects that can hold those keys.
INPUT_KEYS: tuple[str, ...] = ("instances", "inputs", "rows")
CONTAINER_KEYS: tuple[str, ...] = ("request", "body", "payload")
_MAX_LINE = 1 << 20  # a longer line is not a record we can use (and json.loads of it costs)
_MAX_DEPTH = 6


@dataclass
class LoggedRequest:
    """What a log record says about one request: the rows it logged (None: none readable)."""

    request_id: str
    record: dict[str, Any]
    rows: list[dict[str, Any]] | None
    where: str  # e.g. "instances" or "request.inputs (v2 tensors)"; why not, when rows is None

    @property
    def keys(self) -> list[str]:
        """The record's top-level keys (evidence when no inputs were found)."""
        return sorted(self.record)[:20]


def _holds(value: Any, needle: str, depth: int = 0) -> bool:
    if isinstance(value, str):
        return value == needle
    if depth >= _MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return any(_holds(v, needle, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(_holds(v, needle, depth + 1) for v in value[:50])
    return False


def records_for(logs: str, request_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Every JSON-object line of ``logs`` that holds one of ``request_ids`` as a value, by id."""
    wanted = list(dict.fromkeys(request_ids))
    found: dict[str, list[dict[str, Any]]] = {rid: [] for rid in wanted}
    for line in logs.splitlines():
        hits = [rid for rid in wanted if rid in line]  # cheap substring test before parsing
        if not hits or len(line) > _MAX_LINE:
            continue
        start = line.find("{")  # tolerate a prefix such as a timestamp or "INFO:"
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except (ValueError, RecursionError):
            continue
        if not isinstance(record, dict):
            continue
        for rid in hits:
            if _holds(record, rid):
                found[rid].append(record)
    return found


def _rows_from(value: Any) -> tuple[list[dict[str, Any]] | None, str]:
    """Rows from one candidate value, and how they were read (or why not)."""
    if not isinstance(value, list) or not value:
        return None, "not a non-empty list"
    if all(isinstance(v, dict) for v in value):
        if all("name" in v and "data" in v for v in value):  # v2 tensors
            columns = {str(v["name"]): v["data"] for v in value}
            lengths = {len(c) for c in columns.values() if isinstance(c, list)}
            if len(lengths) != 1 or not all(isinstance(c, list) for c in columns.values()):
                return None, "v2 tensors of unequal length"
            n = lengths.pop()
            return [{name: col[i] for name, col in columns.items()} for i in range(n)], "v2 tensors"
        return [dict(v) for v in value], "instances by feature name"
    if all(isinstance(v, list) for v in value):
        if any(len(v) != len(FEATURES) for v in value):
            return None, f"lists that are not {len(FEATURES)} values long (the feature order's length)"
        return [dict(zip(FEATURES, v)) for v in value], "lists in feature order"
    return None, "a list mixing objects and other values"


def _candidates(record: dict[str, Any]) -> Iterable[tuple[str, Any]]:
    for key in INPUT_KEYS:
        if key in record:
            yield key, record[key]
    for outer in CONTAINER_KEYS:
        inner = record.get(outer)
        if isinstance(inner, str) and inner.lstrip().startswith("{"):
            try:
                inner = json.loads(inner)
            except (ValueError, RecursionError):
                continue
        if isinstance(inner, dict):
            for key in INPUT_KEYS:
                if key in inner:
                    yield f"{outer}.{key}", inner[key]


def logged_request(request_id: str, records: list[dict[str, Any]]) -> LoggedRequest | None:
    """The first of ``records`` with readable inputs; else the first record, with why (None: no record)."""
    first: LoggedRequest | None = None
    for record in records:
        reasons = []
        for where, value in _candidates(record):
            rows, how = _rows_from(value)
            if rows is not None:
                return LoggedRequest(request_id, record, rows, f"{where} ({how})")
            reasons.append(f"{where}: {how}")
        if first is None:
            why = "; ".join(reasons) or f"no {', '.join(INPUT_KEYS)} key (top level or in {', '.join(CONTAINER_KEYS)})"
            first = LoggedRequest(request_id, record, None, why)
    return first
