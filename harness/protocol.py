"""Wire formats of the prediction route: KServe V1 JSON and the Open Inference Protocol (V2).

The grader encodes every request and decodes every response through this module, so the
correctness probes, the drift replay and the load generator agree on what a valid exchange is.

* v1 request: ``{"instances": [row, ...]}`` where a row is ``{feature: value}``; response:
  ``{"predictions": [p0, p1, ...]}`` with one positive-class probability per instance.
* v2 request: ``{"inputs": [{"name": f, "shape": [n], "datatype": "FP64"|"INT64"|"BYTES",
  "data": [...]}, ...]}`` with one tensor per feature in schema order (nulls kept as JSON null);
  response: ``{"outputs": [{"data": [p0, p1, ...], ...}, ...]}`` where ``outputs[0]`` holds the
  probabilities.

Decoding is strict on purpose: the contract says "one positive-class probability per instance",
so two-class rows, nested lists, strings or a wrong count are contract violations that must be
reported (with a message a candidate can act on), not guessed around.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from reference_model.schema import CATEGORICAL_FEATURES, FEATURES, INTEGER_FEATURES

Protocol = Literal["v1", "v2"]
PROTOCOLS: tuple[str, ...] = ("v1", "v2")
CONTENT_TYPE = "application/json"

#: Open Inference Protocol datatype of each feature tensor.
V2_DATATYPES: dict[str, str] = {
    name: ("BYTES" if name in CATEGORICAL_FEATURES else "INT64" if name in INTEGER_FEATURES else "FP64")
    for name in FEATURES
}

_EXCERPT = 200  # characters of an offending body quoted in an error message


class ProtocolError(ValueError):
    """A request cannot be encoded or a response breaks the wire contract. ``message`` says how."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ProtocolError(f"unknown protocol {protocol!r} (expected one of {', '.join(PROTOCOLS)})")


def _dumps(payload: Any) -> bytes:
    try:
        # allow_nan=False: NaN/Infinity are not JSON; a NaN here means a missing value was not
        # converted to None (see harness.traffic.baseline.to_records).
        return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"request is not JSON-serialisable: {exc}") from None


def _infer_datatype(values: list[Any]) -> str:
    """Datatype of a tensor for a key outside the schema (the robustness probes send such keys)."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "BOOL"
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "INT64"
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "FP64"
    return "BYTES"


def encode_request(rows: list[dict[str, Any]], protocol: Protocol) -> bytes:
    """Encode ``rows`` (JSON-ready dicts, see ``to_records``) as a request body for ``protocol``.

    v1 passes the rows through unchanged. v2 sends one tensor per key: schema features first, in
    schema order, with the schema's datatype; other keys after them, datatype inferred. Values are
    not checked, because the robustness phase sends wrong types, nulls and out-of-range values on
    purpose. A key that *all* rows lack gets no tensor (a "missing feature" request); a key that only
    some rows have cannot be expressed as a tensor and raises ``ProtocolError``.
    """
    _check_protocol(protocol)
    if protocol == "v1":
        return _dumps({"instances": list(rows)})
    n = len(rows)
    extra: list[str] = []
    for row in rows:
        extra.extend(k for k in row if k not in V2_DATATYPES and k not in extra)
    inputs: list[dict[str, Any]] = []
    for name in list(FEATURES) + extra:
        have = [name in row for row in rows]
        if n and not any(have):
            continue  # absent from every row: send no tensor for it
        if not all(have):
            missing_at = have.index(False)
            raise ProtocolError(f"v2 request: row {missing_at} has no '{name}' but other rows do; a tensor "
                                f"needs a value or null for every row")
        data = [row[name] for row in rows]
        datatype = V2_DATATYPES.get(name) or _infer_datatype(data)
        inputs.append({"name": name, "shape": [n], "datatype": datatype, "data": data})
    return _dumps({"inputs": inputs})


def _excerpt(body: bytes | str) -> str:
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "..."


def _as_probabilities(values: Any, where: str, n_expected: int, body: bytes) -> list[float]:
    if not isinstance(values, list):
        raise ProtocolError(f"{where} must be a list of numbers, got {type(values).__name__}: {_excerpt(body)}")
    if len(values) != n_expected:
        raise ProtocolError(f"{where} has {len(values)} value(s) for {n_expected} instance(s); expected one "
                            f"positive-class probability per instance: {_excerpt(body)}")
    out: list[float] = []
    for i, v in enumerate(values):
        # bool is an int subclass in Python; true/false is not a probability.
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ProtocolError(f"{where}[{i}] is {json.dumps(v)[:60]}, expected a number (the positive-class "
                                f"probability; not a [p0, p1] pair, a label or a string)")
        p = float(v)
        if not math.isfinite(p) or p < 0.0 or p > 1.0:
            raise ProtocolError(f"{where}[{i}] = {p!r} is not a probability in [0, 1]")
        out.append(p)
    return out


def decode_predictions(body: bytes, protocol: Protocol, n_expected: int) -> list[float]:
    """Decode a prediction response into one float per instance, or raise ``ProtocolError``."""
    _check_protocol(protocol)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[..." from a hostile server
        raise ProtocolError(f"response is not JSON: {_excerpt(body)!r}") from None
    if not isinstance(payload, dict):
        raise ProtocolError(f"response must be a JSON object, got {type(payload).__name__}: {_excerpt(body)}")
    if protocol == "v1":
        if "predictions" not in payload:
            raise ProtocolError(f"v1 response has no 'predictions' field (keys: {sorted(payload)[:10]})")
        return _as_probabilities(payload["predictions"], "predictions", n_expected, body)
    outputs = payload.get("outputs")
    if not isinstance(outputs, list) or not outputs:
        raise ProtocolError(f"v2 response needs a non-empty 'outputs' list: {_excerpt(body)}")
    first = outputs[0]
    if not isinstance(first, dict) or "data" not in first:
        raise ProtocolError(f"v2 response: outputs[0] must be an object with 'data': {_excerpt(body)}")
    return _as_probabilities(first["data"], "outputs[0].data", n_expected, body)


def encode_predictions(probabilities: list[float], protocol: Protocol, model_name: str = "fraud") -> bytes:
    """Encode a response body (used by test servers and the reference candidate's fixtures)."""
    _check_protocol(protocol)
    probs = [float(p) for p in probabilities]
    if protocol == "v1":
        return _dumps({"predictions": probs})
    return _dumps({"model_name": model_name, "outputs": [
        {"name": "probability", "shape": [len(probs)], "datatype": "FP64", "data": probs}]})


def decode_request(body: bytes, protocol: Protocol) -> list[dict[str, Any]]:
    """Decode a request body back into rows (used by test servers); the inverse of ``encode_request``."""
    _check_protocol(protocol)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError(f"request is not JSON: {_excerpt(body)!r}") from None
    if not isinstance(payload, dict):
        raise ProtocolError("request must be a JSON object")
    if protocol == "v1":
        rows = payload.get("instances")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ProtocolError("v1 request needs 'instances': a list of objects")
        return rows
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(t, dict) for t in inputs):
        raise ProtocolError("v2 request needs 'inputs': a list of tensors")
    columns = {t.get("name"): t.get("data") for t in inputs}
    missing = [f for f in FEATURES if f not in columns]
    if missing:
        raise ProtocolError(f"v2 request lacks tensor(s) {missing}")
    lengths = {len(columns[f]) if isinstance(columns[f], list) else -1 for f in FEATURES}
    if len(lengths) != 1 or -1 in lengths:
        raise ProtocolError("v2 request tensors must be lists of equal length")
    n = lengths.pop()
    return [{f: columns[f][i] for f in FEATURES} for i in range(n)]
