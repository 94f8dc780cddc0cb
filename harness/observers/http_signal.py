"""HTTP drift signal: the grader GETs ``drift.http_path`` and reads a JSON object.

``drift_field`` (truthy: firing) and ``features_field`` (the blamed feature names) may be dotted
paths into nested objects, e.g. ``drift.detected`` reads ``{"drift": {"detected": true}}``. A key
that itself contains a dot is tried first, so ``{"drift.detected": true}`` works too.
"""

from __future__ import annotations

import json
from typing import Any

from harness.limits import DRIFT_READ_DEADLINE_S
from harness.observers.base import DriftReading, HttpPollingObserver, as_flag, excerpt

_MISSING = object()


def lookup(obj: Any, path: str) -> Any:
    """Value at dotted ``path`` in nested dicts (a literal key with dots wins), or ``_MISSING``."""
    if isinstance(obj, dict) and path in obj:
        return obj[path]
    head, dot, rest = path.partition(".")
    if not dot or not isinstance(obj, dict) or head not in obj:
        return _MISSING
    return lookup(obj[head], rest)


def feature_names(value: Any, drift_field: str = "drift") -> frozenset[str]:
    """Feature names from a features field.

    The contract asks for a list of names; a mapping ``{feature: flag-or-object}`` is also read
    (keys whose flag, or whose object's ``drift_field``, is truthy), because per-feature reports
    are a common and unambiguous shape.
    """
    if value is _MISSING or value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset({value}) if value else frozenset()
    if isinstance(value, list):
        names = set()
        for item in value:
            if isinstance(item, str):
                names.add(item)
            elif isinstance(item, dict):  # [{"feature": "amount", ...}] or [{"name": "amount"}]
                name = item.get("feature", item.get("name"))
                if isinstance(name, str):
                    names.add(name)
        return frozenset(names)
    if isinstance(value, dict):
        names = set()
        for key, flag in value.items():
            if isinstance(flag, dict):
                flag = lookup(flag, drift_field)
                flag = False if flag is _MISSING else flag
            if as_flag(flag):
                names.add(str(key))
        return frozenset(names)
    return frozenset()


class HttpDriftObserver(HttpPollingObserver):
    """GET ``base_url + http_path``; firing when ``drift_field`` is truthy."""

    def __init__(self, base_url: str, http_path: str, drift_field: str = "drift",
                 features_field: str = "features", timeout_s: float = DRIFT_READ_DEADLINE_S) -> None:
        super().__init__(base_url.rstrip("/") + http_path, timeout_s)
        self.drift_field = drift_field
        self.features_field = features_field

    def describe(self) -> str:
        return f"http GET {self.url} (flag: {self.drift_field!r}, features: {self.features_field!r})"

    def poll(self) -> DriftReading:
        resp, failed = self.fetch({"Accept": "application/json"})
        if failed is not None:
            return failed
        assert resp is not None  # fetch() returns one of the two
        body = resp.text
        raw: dict[str, Any] = {"status": resp.status, "body": excerpt(body)}
        if resp.status != 200:
            return DriftReading.failed(f"GET {self.url} answered HTTP {resp.status}", raw)
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
            return DriftReading.failed(f"GET {self.url} did not return JSON", raw)
        if not isinstance(payload, dict):
            return DriftReading.failed(f"GET {self.url} returned JSON {type(payload).__name__}, expected an object",
                                       raw)
        flag = lookup(payload, self.drift_field)
        if flag is _MISSING:
            return DriftReading.failed(f"field {self.drift_field!r} not in the JSON from {self.url}", raw)
        firing = as_flag(flag)
        features = feature_names(lookup(payload, self.features_field), self.drift_field)
        return DriftReading(firing=firing, features=features, ok=True, raw=raw)
