"""In-distribution traffic: rows drawn from the training distribution, made JSON-ready.

``to_records`` is the one place where a feature frame becomes request rows, so every phase
(probes, drift replay, load, the public sample) sends values the same way: NaN becomes null,
numpy scalars become Python numbers, and floats keep full precision (``json`` writes the
shortest repr that round-trips), so the candidate's predictions can be compared to the
reference model's on exactly the same inputs.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from reference_model.data import generate_features
from reference_model.schema import CATEGORICAL_FEATURES, INTEGER_FEATURES


def _convert(column: str, value: Any) -> Any:
    """One cell as a JSON value."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        # An integer feature that went through float arithmetic is still an integer on the wire.
        if column in INTEGER_FEATURES and value.is_integer():
            return int(value)
        return value
    if isinstance(value, bool):  # before int: bool is an int subclass
        return value
    if isinstance(value, int):
        return value
    if column in CATEGORICAL_FEATURES:
        return str(value)
    return value


def to_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of ``df`` as JSON-ready dicts, keys in the frame's column order.

    ``Series.tolist()`` already yields Python ints/floats/strs (exact doubles, no rounding);
    the per-cell pass only maps missing values to None and keeps integer features integral.
    """
    columns = [str(c) for c in df.columns]
    values = [[_convert(name, v) for v in df[name].tolist()] for name in columns]
    return [dict(zip(columns, row)) for row in zip(*values)] if columns else [{} for _ in range(len(df))]


def baseline_records(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` rows from the training distribution (``generate_features(n, seed)``), JSON-ready."""
    return to_records(generate_features(n, seed))
