"""The feature schema (``reference_data/schema.json``) and strict validation of request rows.

Rules: every feature present and no other key; numbers are JSON numbers (never strings or
booleans), finite and inside the schema range; integer features are whole numbers; null only
where the schema says nullable; categoricals are strings. An unknown category is *valid* input:
the model one-hot encodes it as all zeros and the drift monitor counts it.

Validation produces columns (numpy arrays), which is what preprocessing and the drift window use.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from fraud_kserve import settings


class InvalidRequest(ValueError):
    """The request is not acceptable input (-> 4xx). ``detail`` lists the first problems found."""

    def __init__(self, message: str, detail: list[str] | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or []
        self.status = status

    def __str__(self) -> str:
        return self.message + (": " + "; ".join(self.detail) if self.detail else "")


@dataclass(frozen=True)
class NumericFeature:
    name: str
    lo: float
    hi: float
    integer: bool
    nullable: bool


@dataclass(frozen=True)
class CategoricalFeature:
    name: str
    categories: tuple[str, ...]
    nullable: bool


@dataclass(frozen=True)
class FeatureSpec:
    order: tuple[str, ...]  # model input order
    numeric: tuple[NumericFeature, ...]
    categorical: tuple[CategoricalFeature, ...]

    @property
    def numeric_names(self) -> list[str]:
        return [f.name for f in self.numeric]

    @property
    def categorical_names(self) -> list[str]:
        return [f.name for f in self.categorical]


def load_spec(path: Path = settings.SCHEMA_PATH) -> FeatureSpec:
    """Parse ``schema.json`` (``{"features": [...], "feature_order": [...]}``)."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    numeric, categorical = [], []
    for f in raw["features"]:
        if f["type"] == "categorical":
            categorical.append(CategoricalFeature(f["name"], tuple(f["categories"]), bool(f.get("nullable"))))
        elif f["type"] in ("number", "integer"):
            numeric.append(NumericFeature(f["name"], float(f["min"]), float(f["max"]), f["type"] == "integer",
                                          bool(f.get("nullable"))))
        else:
            raise ValueError(f"schema.json: unsupported feature type {f['type']!r} for {f['name']!r}")
    order = tuple(raw.get("feature_order") or [f["name"] for f in raw["features"]])
    if set(order) != {f.name for f in numeric} | {f.name for f in categorical}:
        raise ValueError("schema.json: feature_order does not list exactly the declared features")
    return FeatureSpec(order, tuple(numeric), tuple(categorical))


@lru_cache(maxsize=1)
def spec() -> FeatureSpec:
    return load_spec()


@dataclass(frozen=True)
class Batch:
    """Validated rows as columns: numerics float64 (null -> NaN), categoricals object arrays of str."""

    n: int
    columns: dict[str, np.ndarray]

    def rows(self, order: tuple[str, ...]) -> list[list[Any]]:
        """Row-major, JSON-ready (NaN -> None, whole numbers of integer features as int): for the log."""
        cols = []
        for name in order:
            col = self.columns[name]
            if col.dtype == object:
                cols.append(col.tolist())
            else:
                cols.append([None if v != v else (int(v) if v.is_integer() and abs(v) < 2**53 else v)
                             for v in col.tolist()])
        return [list(r) for r in zip(*cols)]


_MAX_ERRORS = 10


def validate_instances(instances: Any, fs: FeatureSpec | None = None) -> Batch:
    """KServe V1 ``instances`` -> a :class:`Batch`, or :class:`InvalidRequest` naming what is wrong."""
    fs = fs or spec()
    if not isinstance(instances, list):
        raise InvalidRequest('"instances" must be a list of objects, one per transaction')
    n = len(instances)
    if n == 0:
        raise InvalidRequest('"instances" is empty: send at least one transaction')
    if n > settings.MAX_INSTANCES:
        raise InvalidRequest(f'"instances" has {n} rows; at most {settings.MAX_INSTANCES} per request', status=413)
    errors: list[str] = []
    known = set(fs.order)
    num_cols = {f.name: np.empty(n, dtype=np.float64) for f in fs.numeric}
    cat_cols = {c.name: np.empty(n, dtype=object) for c in fs.categorical}
    for i, inst in enumerate(instances):
        if len(errors) >= _MAX_ERRORS:
            break
        if not isinstance(inst, dict):
            errors.append(f"instances[{i}] must be an object of feature: value, got {type(inst).__name__}")
            continue
        if len(inst) != len(known) or not known.issuperset(inst):
            missing = [f for f in fs.order if f not in inst]
            extra = [k for k in inst if k not in known]
            if missing:
                errors.append(f"instances[{i}] is missing feature(s) {missing}")
            if extra:
                errors.append(f"instances[{i}] has unknown key(s) {[str(k)[:40] for k in extra[:5]]}")
            continue
        for f in fs.numeric:
            v = inst[f.name]
            if v is None:
                if f.nullable:
                    num_cols[f.name][i] = np.nan
                else:
                    errors.append(f"instances[{i}].{f.name} is null; it is not nullable")
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                errors.append(f"instances[{i}].{f.name} must be a number, got {type(v).__name__}")
                continue
            try:
                x = float(v)
            except OverflowError:
                errors.append(f"instances[{i}].{f.name} is out of range")
                continue
            if not math.isfinite(x):
                errors.append(f"instances[{i}].{f.name} must be finite")
            elif not f.lo <= x <= f.hi:
                errors.append(f"instances[{i}].{f.name} = {x:g} is outside [{f.lo:g}, {f.hi:g}]")
            elif f.integer and not x.is_integer():
                errors.append(f"instances[{i}].{f.name} = {x:g} must be a whole number")
            else:
                num_cols[f.name][i] = x
        for c in fs.categorical:
            v = inst[c.name]
            if v is None and c.nullable:
                cat_cols[c.name][i] = None
            elif not isinstance(v, str):
                errors.append(f"instances[{i}].{c.name} must be a string, got "
                              f"{'null' if v is None else type(v).__name__}")
            elif len(v) > settings.MAX_CATEGORY_LENGTH:
                errors.append(f"instances[{i}].{c.name} is longer than {settings.MAX_CATEGORY_LENGTH} characters")
            else:
                cat_cols[c.name][i] = v
    if errors:
        raise InvalidRequest("invalid instances", errors[:_MAX_ERRORS], status=422)
    return Batch(n, {**num_cols, **cat_cols})


#: Open Inference Protocol datatypes accepted per feature kind.
_V2_NUMERIC_TYPES = {"FP64", "FP32", "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8"}


def validate_v2_inputs(inputs: list[tuple[str, str, list[int], list[Any]]], fs: FeatureSpec | None = None) -> Batch:
    """Open Inference Protocol tensors ``(name, datatype, shape, data)`` -> a :class:`Batch`.

    One tensor per feature, each of shape ``[n]``; the values then go through the same row rules
    as V1 (so a string in an FP64 tensor or a null in a non-nullable one is still a 4xx).
    """
    fs = fs or spec()
    if not inputs:
        raise InvalidRequest('"inputs" is empty: send one tensor per feature')
    by_name: dict[str, list[Any]] = {}
    errors: list[str] = []
    numeric = set(fs.numeric_names)
    for name, datatype, shape, data in inputs:
        if name in by_name:
            errors.append(f"tensor {name!r} appears twice")
        elif name not in fs.order:
            errors.append(f"tensor {str(name)[:40]!r} is not a feature")
        elif name in numeric and datatype not in _V2_NUMERIC_TYPES:
            errors.append(f"tensor {name!r} must be numeric (FP64/INT64), got {datatype}")
        elif name not in numeric and datatype != "BYTES":
            errors.append(f"tensor {name!r} must be BYTES, got {datatype}")
        elif not isinstance(data, list) or len(shape) != 1 or shape[0] != len(data):
            errors.append(f"tensor {name!r} must have shape [n] matching its data")
        else:
            by_name[name] = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in data]
    missing = [f for f in fs.order if f not in by_name]
    if missing and not errors:
        errors.append(f"missing tensor(s) {missing}")
    if errors:
        raise InvalidRequest("invalid inputs", errors[:_MAX_ERRORS], status=422)
    lengths = {len(v) for v in by_name.values()}
    if len(lengths) != 1:
        raise InvalidRequest("invalid inputs", ["all tensors must have the same length"], status=422)
    n = lengths.pop()
    return validate_instances([{f: by_name[f][i] for f in fs.order} for i in range(n)], fs)
