"""Feature preprocessing shared by training and serving, in plain numpy (no torch, no sklearn).

The torch flavour ships this recipe as ``preprocessing.json`` so a candidate can reimplement
it in any language; the sklearn flavour embeds the same steps in its ``Pipeline``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reference_model import schema

#: Right-skewed numeric features that go through log1p after imputation (hour_of_day does not).
LOG1P_FEATURES: list[str] = ["amount", "account_age_days", "distance_from_home_km", "transactions_last_24h"]

PREPROCESSING_FORMAT_VERSION = 1

_STEPS = [
    "Read the features in the order of 'numeric' then 'categorical'.",
    "Numeric feature x: if x is null (JSON null / NaN), replace it with 'impute_median'.",
    "Then, if 'log1p' is true, x = ln(1 + x).",
    "Then x = (x - mean) / std.",
    "Categorical feature: one-hot over 'categories' in the listed order; an unknown value "
    "gives all zeros for that feature.",
    "Concatenate in the order of 'input_vector' (numeric features first, then each one-hot block), "
    "cast to float32, shape [batch, n_inputs].",
    "The exported program returns P(is_fraud = 1), shape [batch].",
]


def coerce_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Return a copy with exactly ``schema.FEATURES``: numerics as float64 (null -> NaN), categoricals as str.

    Raises ``KeyError`` naming the first missing feature, because an absent key is invalid
    input while a null in a nullable feature is not.
    """
    missing = [name for name in schema.FEATURES if name not in frame.columns]
    if missing:
        raise KeyError(f"missing features: {missing}")
    out = pd.DataFrame(index=frame.index)
    for name in schema.NUMERIC_FEATURES:
        # to_numeric turns None into NaN and keeps an all-null column numeric.
        out[name] = pd.to_numeric(frame[name], errors="raise").astype(np.float64)
    for name in schema.CATEGORICAL_FEATURES:
        out[name] = frame[name].astype(str).astype(object)
    return out


def records_to_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Turn JSON-style records (a KServe V1 ``instances`` list) into a coerced feature frame."""
    for i, rec in enumerate(records):
        missing = [name for name in schema.FEATURES if name not in rec]
        if missing:
            raise KeyError(f"record {i} is missing features: {missing}")
    frame = pd.DataFrame.from_records(list(records), columns=schema.FEATURES)
    return coerce_features(frame)


def fit_preprocessing(train: pd.DataFrame) -> dict[str, Any]:
    """Fit imputation medians, log1p flags, means/stds and category lists on the training frame."""
    frame = coerce_features(train)
    numeric: list[dict[str, Any]] = []
    for name in schema.NUMERIC_FEATURES:
        raw = frame[name].to_numpy(np.float64)
        median = float(np.nanmedian(raw))
        x = np.where(np.isnan(raw), median, raw)
        use_log = name in LOG1P_FEATURES
        if use_log:
            x = np.log1p(x)
        std = float(x.std())  # population std (ddof=0), like sklearn's StandardScaler
        numeric.append(
            {
                "name": name,
                "impute_median": median,
                "log1p": use_log,
                "mean": float(x.mean()),
                "std": std if std > 0 else 1.0,  # a constant column must not divide by zero
            }
        )
    categorical = [
        {"name": name, "categories": list(cats), "unknown": "all_zeros"}
        for name, cats in schema.CATEGORICAL_FEATURES.items()
    ]
    input_vector = [n["name"] for n in numeric] + [
        f"{c['name']}={cat}" for c in categorical for cat in c["categories"]
    ]
    return {
        "format_version": PREPROCESSING_FORMAT_VERSION,
        "steps": list(_STEPS),
        "input_features": list(schema.FEATURES),
        "numeric": numeric,
        "categorical": categorical,
        "input_vector": input_vector,
        "n_inputs": len(input_vector),
        "dtype": "float32",
        "output": "probability of is_fraud = 1, float32, shape [batch]",
    }


def transform(spec: dict[str, Any], frame: pd.DataFrame) -> np.ndarray:
    """Apply a ``preprocessing.json`` spec to a feature frame; returns float32 ``[n, n_inputs]``."""
    frame = coerce_features(frame)
    cols: list[np.ndarray] = []
    for feat in spec["numeric"]:
        raw = frame[feat["name"]].to_numpy(np.float64)
        x = np.where(np.isnan(raw), feat["impute_median"], raw)
        if feat["log1p"]:
            x = np.log1p(x)
        cols.append(((x - feat["mean"]) / feat["std"])[:, None])
    for feat in spec["categorical"]:
        values = frame[feat["name"]].to_numpy(object)
        cols.append(np.stack([(values == cat) for cat in feat["categories"]], axis=1).astype(np.float64))
    return np.ascontiguousarray(np.concatenate(cols, axis=1), dtype=np.float32)
