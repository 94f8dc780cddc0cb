"""Bad input must get a 4xx (never a 5xx), and the service must stay healthy afterwards."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from grader.checks.spec import CheckSpec, items
from grader.evidence import RobustnessEvidence
from grader.results import Outcome
from grader.session import Deadline, GradingSession
from harness.protocol import Protocol, encode_request
from harness.traffic.baseline import baseline_records
from reference_model.schema import CATEGORICAL_FEATURES, INTEGER_FEATURES, NULLABLE_FEATURES, NUMERIC_FEATURES

#: Credit for stays_healthy when the service is still up but some bad input got a 5xx.
SURVIVED_WITH_SERVER_ERRORS = 0.5

ITEMS = items("robustness", rejects_bad_input="Malformed requests get a 4xx",
              stays_healthy="No server error on bad input; service stays healthy")
REJECTS_BAD_INPUT, STAYS_HEALTHY = ITEMS


#: Stands in for a literal that json.dumps refuses to write, swapped in after encoding.
_LITERAL = "__takehome_literal__"


def _mutated(row: dict, fn: Callable[[dict], None]) -> dict:
    copy = dict(row)
    fn(copy)
    return copy


def _with_literal(row: dict, feature: str, literal: bytes, protocol: Protocol) -> bytes:
    """A request whose ``feature`` is the bare token ``literal`` (NaN, Infinity): not JSON, yet
    Python's json.loads and many other parsers accept it, so a naive service passes it to the model."""
    body = encode_request([_mutated(row, lambda r: r.__setitem__(feature, _LITERAL))], protocol)
    return body.replace(f'"{_LITERAL}"'.encode(), literal)


def bad_inputs(row: dict, protocol: Protocol, oversized_mb: float) -> list[tuple[str, bytes]]:
    """(name, body) pairs that a correct service must reject with a 4xx."""
    numeric = NUMERIC_FEATURES[0]
    non_nullable = next(f for f in NUMERIC_FEATURES if f not in NULLABLE_FEATURES)
    integer = sorted(INTEGER_FEATURES)[0]
    category = next(iter(CATEGORICAL_FEATURES))
    cases: list[tuple[str, bytes]] = [
        ("malformed JSON", b'{"instances": [{"amount": 12.5,'),
        ("not a JSON object", b"[1, 2, 3]"),
        ("empty instances", b'{"instances": []}' if protocol == "v1" else b'{"inputs": []}'),
        ("wrong type (string for a number)", encode_request([_mutated(row, lambda r: r.__setitem__(
            numeric, "twelve"))], protocol)),
        ("missing feature", encode_request([_mutated(row, lambda r: r.pop(numeric))], protocol)),
        ("extra feature", encode_request([_mutated(row, lambda r: r.__setitem__("favourite_colour", 3))],
                                         protocol)),
        ("null in a non-nullable feature", encode_request([_mutated(row, lambda r: r.__setitem__(
            non_nullable, None))], protocol)),
        ("out-of-range value (negative amount)", encode_request([_mutated(row, lambda r: r.__setitem__(
            "amount", -50.0))], protocol)),
        # What the contract rejects and lenient parsing or coercion lets through to the model:
        ("NaN for a number", _with_literal(row, numeric, b"NaN", protocol)),
        ("Infinity for a number", _with_literal(row, numeric, b"Infinity", protocol)),
        ("boolean for a number", encode_request([_mutated(row, lambda r: r.__setitem__(numeric, True))],
                                                protocol)),
        ("number for a category", encode_request([_mutated(row, lambda r: r.__setitem__(category, 3))],
                                                 protocol)),
        (f"fraction for an integer feature ({integer})", encode_request([_mutated(
            row, lambda r: r.__setitem__(integer, 3.5))], protocol)),
    ]
    # Many rows of valid JSON: a server that reads unbounded bodies has no defence against this.
    big_rows = int(oversized_mb * 1024 * 1024 / max(1, len(json.dumps(row))))
    cases.append((f"oversized body (~{oversized_mb:g} MB)", encode_request([row] * big_rows, protocol)))
    return cases


def run(s: GradingSession, deadline: Deadline) -> list[Outcome]:
    """Send each bad input, then check the service still answers a valid request."""
    row = baseline_records(1, s.seed + 606)[0]
    path = s.contract.serving.predict_path
    header = s.contract.serving.request_id_header
    results: list[dict[str, Any]] = []
    for name, body in bad_inputs(row, s.contract.serving.protocol, s.config.thresholds.oversized_body_mb):
        deadline.check()
        rid = s.request_id("robustness")
        out = s.client.request("POST", path, content=body, timeout_s=15.0,
                               headers={"Content-Type": "application/json", header: rid})
        accepted = out.status is not None and 400 <= out.status < 500
        results.append({"case": name, "status": out.status, "rejected_with_4xx": accepted,
                        **({"error": out.error} if out.error else {}),
                        **({"response_excerpt": out.body_excerpt[:200]} if not accepted else {})})
    passed = [r for r in results if r["rejected_with_4xx"]]
    failed = [r for r in results if not r["rejected_with_4xx"]]
    if failed:
        msg = (f"{len(passed)} of {len(results)} bad inputs got a 4xx; not: "
               + "; ".join(f"{r['case']} -> {r['status'] if r['status'] is not None else r.get('error')}"
                           for r in failed))
    else:
        msg = f"all {len(results)} bad inputs got a 4xx"
    rejects = Outcome.partial(REJECTS_BAD_INPUT, len(passed) / len(results), msg, cases=results)

    ready = s.client.ready()
    rid = s.request_id("robustness-after")
    valid = s.client.predict([row], request_id=rid)
    s.remember_request_id(rid)
    alive = s.runtime.alive()
    # A 5xx or a dropped connection means the bad input reached an unhandled exception path: the
    # service survived this time, but it did not fail safe. (A 2xx is a different bug: garbage
    # accepted; that costs only rejects_bad_input.)
    server_errors: list[str] = [r["case"] for r in results if r["status"] is None or int(r["status"]) >= 500]
    ev = {"ready_after": ready.evidence(), "valid_request_after": valid.evidence(), "process_alive": alive,
          "server_errors_on_bad_input": server_errors}
    if ready.ok and valid.ok and server_errors:
        healthy = Outcome.partial(STAYS_HEALTHY, SURVIVED_WITH_SERVER_ERRORS,
                                  f"still answering after the bad inputs, but {len(server_errors)} of them "
                                  f"caused a server error or a dropped connection: {', '.join(server_errors)}",
                                  **ev)
    elif ready.ok and valid.ok:
        healthy = Outcome.passed(STAYS_HEALTHY, "no bad input caused a server error, and the service is ready "
                                 "and answering valid requests afterwards", **ev)
    else:
        healthy = Outcome.failed(STAYS_HEALTHY, "the service is not healthy after the bad inputs "
                                 f"(ready: {ready.status or ready.error}, valid request: "
                                 f"{valid.status or valid.error})", **ev)
    return [rejects, healthy]


SPEC = CheckSpec(section="robustness", title="Robustness to bad input", items=ITEMS, run=run, evidence=RobustnessEvidence,
                 timeout_s=lambda c: c.timeouts.robustness)
