"""The feature schema (read from ``reference_data/schema.json``) and strict request validation.

Validation rules, in short: every feature present (no extras), numbers are JSON numbers (never
strings or booleans), finite and inside the schema range, integer features are whole numbers,
null only where the schema says nullable, categoricals are strings. An unknown category is
*valid* input: the model one-hot encodes it as all zeros and the drift monitor counts it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Optional, Union

import numpy as np
import pandas as pd
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr,
                      StringConstraints, create_model)

from app import settings


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

    def as_dict(self) -> dict[str, Any]:
        return {"order": list(self.order),
                "numeric": [vars(f) for f in self.numeric],
                "categorical": [{**vars(f), "categories": list(f.categories)} for f in self.categorical]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureSpec":
        return cls(tuple(data["order"]), tuple(NumericFeature(**f) for f in data["numeric"]),
                   tuple(CategoricalFeature(**{**f, "categories": tuple(f["categories"])})
                         for f in data["categorical"]))


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
    known = {f.name for f in numeric} | {f.name for f in categorical}
    if set(order) != known:
        raise ValueError("schema.json: feature_order does not list exactly the declared features")
    return FeatureSpec(order, tuple(numeric), tuple(categorical))


@lru_cache(maxsize=1)
def spec() -> FeatureSpec:
    return load_spec()


def _numeric_check(feat: NumericFeature):  # noqa: ANN202 - returns a validator
    def check(value: Union[int, float]) -> Union[int, float]:
        try:
            as_float = float(value)
        except OverflowError:
            raise ValueError(f"{feat.name} is out of range") from None
        if not math.isfinite(as_float):
            raise ValueError(f"{feat.name} must be a finite number")
        if not feat.lo <= as_float <= feat.hi:
            raise ValueError(f"{feat.name} must be between {feat.lo:g} and {feat.hi:g}")
        if feat.integer and not as_float.is_integer():
            raise ValueError(f"{feat.name} must be a whole number")
        return value
    return check


def _instance_model(fs: FeatureSpec) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for feat in fs.numeric:
        number = Annotated[Union[StrictInt, StrictFloat], AfterValidator(_numeric_check(feat))]
        fields[feat.name] = (Optional[number] if feat.nullable else number, ...)  # required, even if nullable
    for cat in fs.categorical:
        text = Annotated[StrictStr, StringConstraints(min_length=1, max_length=settings.MAX_CATEGORY_LENGTH)]
        fields[cat.name] = (Optional[text] if cat.nullable else text, ...)
    return create_model("Instance", __config__=ConfigDict(extra="forbid", frozen=True), **fields)


@lru_cache(maxsize=1)
def request_model() -> type[BaseModel]:
    """``{"instances": [Instance, ...]}`` with 1..MAX_INSTANCES rows, nothing else."""
    instance = _instance_model(spec())
    rows = Annotated[list[instance], Field(min_length=1, max_length=settings.MAX_INSTANCES)]  # type: ignore[valid-type]
    return create_model("PredictRequest", __config__=ConfigDict(extra="forbid"), instances=(rows, ...))


def rows_to_frame(rows: list[tuple[Any, ...]], fs: FeatureSpec | None = None) -> pd.DataFrame:
    """Rows (tuples in ``fs.order``) -> the DataFrame the pipelines were trained on:
    numerics float64 (null -> NaN), categoricals object (str), columns in model order."""
    fs = fs or spec()
    numeric = set(fs.numeric_names)
    columns = list(zip(*rows)) if rows else [() for _ in fs.order]
    data = {}
    for name, values in zip(fs.order, columns):
        if name in numeric:
            data[name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        else:
            data[name] = np.array(values, dtype=object)
    return pd.DataFrame(data, columns=list(fs.order))
