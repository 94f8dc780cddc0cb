"""The request schema (a pydantic model BentoML validates every request against), the feature spec
read from ``reference_data/schema.json``, and the row -> DataFrame conversion the pipelines expect.

Validation rules, in short: every feature present (no extras), numbers are JSON numbers (never
strings or booleans), finite and inside the schema range, integer features are whole numbers,
null only where the schema says nullable, categoricals are strings. An unknown category is
*valid* input: the model one-hot encodes it as all zeros and the drift monitor counts it.

``Transaction`` is written out by hand so that a reader (and BentoML's OpenAPI page) sees the
contract; ``check_against_schema()`` proves at start-up that it agrees with ``schema.json``.
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
from pydantic import AfterValidator, BaseModel, ConfigDict, StrictFloat, StrictInt, StrictStr, StringConstraints

from fraud import settings


# --- the request model ----------------------------------------------------------------------------

def _range(name: str, lo: float, hi: float, integer: bool):  # noqa: ANN202 - returns a validator
    def check(value: Union[int, float]) -> Union[int, float]:
        try:
            as_float = float(value)
        except OverflowError:
            raise ValueError(f"{name} is out of range") from None
        if not math.isfinite(as_float):
            raise ValueError(f"{name} must be a finite number")
        if not lo <= as_float <= hi:
            raise ValueError(f"{name} must be between {lo:g} and {hi:g}")
        if integer and not as_float.is_integer():
            raise ValueError(f"{name} must be a whole number")
        return value
    check.bounds = (lo, hi, integer)  # type: ignore[attr-defined] - read by check_against_schema()
    return check


def _number(name: str, lo: float, hi: float, integer: bool = False) -> Any:
    # Strict: a JSON string ("12"), a boolean or null is a type error, never coerced.
    return Annotated[Union[StrictInt, StrictFloat], AfterValidator(_range(name, lo, hi, integer))]


Category = Annotated[StrictStr, StringConstraints(min_length=1, max_length=settings.MAX_CATEGORY_LENGTH)]


class Transaction(BaseModel):
    """One card transaction, in the order the model expects its features."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: _number("amount", 0, 1_000_000)
    account_age_days: _number("account_age_days", 0, 36_500)
    distance_from_home_km: Optional[_number("distance_from_home_km", 0, 20_000)]  # required, may be null
    transactions_last_24h: _number("transactions_last_24h", 0, 1_000, integer=True)
    hour_of_day: _number("hour_of_day", 0, 23, integer=True)
    merchant_category: Category  # any string: an unseen category is drift, not an error
    channel: Category
    card_type: Category


FEATURES: tuple[str, ...] = tuple(Transaction.model_fields)


# --- the feature spec (schema.json), shared with the drift worker -----------------------------------

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


def check_against_schema(fs: FeatureSpec | None = None) -> None:
    """Raise if ``Transaction`` and ``schema.json`` disagree (order, ranges, integer-ness, nullability)."""
    fs = fs or spec()
    problems = []
    if FEATURES != fs.order:
        problems.append(f"feature order {FEATURES} != schema.json {fs.order}")
    for feat in fs.numeric:
        field = Transaction.model_fields.get(feat.name)
        if field is None:
            continue
        metadata = [*field.metadata, *_walk_metadata(field.annotation)]  # pydantic lifts the outer Annotated
        checks = [m.func for m in metadata if isinstance(m, AfterValidator)]
        bounds = [getattr(c, "bounds", None) for c in checks]
        if (feat.lo, feat.hi, feat.integer) not in [b for b in bounds if b]:
            problems.append(f"{feat.name}: schema.json says [{feat.lo:g}, {feat.hi:g}] integer={feat.integer}, "
                            f"the request model says {bounds}")
        if feat.nullable != _accepts_none(field.annotation):
            problems.append(f"{feat.name}: nullable={feat.nullable} in schema.json, not in the request model")
    for cat in fs.categorical:
        field = Transaction.model_fields.get(cat.name)
        if field is not None and cat.nullable != _accepts_none(field.annotation):
            problems.append(f"{cat.name}: nullable={cat.nullable} in schema.json, not in the request model")
    if problems:
        raise ValueError("the request model disagrees with schema.json: " + "; ".join(problems))


def _walk_metadata(annotation: Any) -> list[Any]:
    out: list[Any] = []
    for arg in getattr(annotation, "__args__", ()) or ():
        out += _walk_metadata(arg)
    out += list(getattr(annotation, "__metadata__", ()) or ())
    return out


def _accepts_none(annotation: Any) -> bool:
    return type(None) in (getattr(annotation, "__args__", ()) or ())


# --- rows -> the DataFrame the pipelines were trained on --------------------------------------------

def rows_to_frame(rows: list[tuple[Any, ...]], fs: FeatureSpec | None = None) -> pd.DataFrame:
    """Rows (tuples in ``fs.order``) -> numerics float64 (null -> NaN), categoricals object (str),
    columns in model order."""
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


def transactions_to_rows(instances: list[Transaction]) -> list[tuple[Any, ...]]:
    return [tuple(getattr(inst, name) for name in FEATURES) for inst in instances]
