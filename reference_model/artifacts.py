"""Candidate-facing artifacts besides the models: the training profile, the probe set, samples."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reference_model import schema
from reference_model.data import derive_seed, generate_features

REFERENCE_SAMPLE_ROWS = 5_000
PROBE_ROWS = 200
#: Probe rows whose distance is forced to null, so every probe run exercises imputation.
PROBE_NULL_EVERY = 50
PROBE_NULL_OFFSET = 7
#: Probe rows used as the sample request (row 7 has a null distance).
SAMPLE_REQUEST_ROWS = (0, 1, 7)
QUANTILES = (0.01, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.99)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write a frame as the canonical CSV: no index, ``\\n`` line ends, nulls as empty fields."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n")


def write_json(obj: Any, path: Path) -> None:
    """Write pretty, key-ordered-as-given JSON with a trailing newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def summarize(frame: pd.DataFrame) -> dict[str, Any]:
    """Per numeric feature: count, null rate, mean, std, min, max, quantiles; per categorical: frequencies."""
    numeric: dict[str, Any] = {}
    for name in schema.NUMERIC_FEATURES:
        col = frame[name].astype(np.float64)
        present = col.dropna()
        numeric[name] = {
            "count": int(len(col)),
            "null_rate": float(col.isna().mean()),
            "mean": float(present.mean()),
            "std": float(present.std(ddof=1)),
            "min": float(present.min()),
            "max": float(present.max()),
            "quantiles": {f"{q:g}": float(present.quantile(q)) for q in QUANTILES},
        }
    categorical: dict[str, Any] = {}
    for name, cats in schema.CATEGORICAL_FEATURES.items():
        counts = frame[name].value_counts()
        categorical[name] = {
            "count": int(len(frame)),
            # Every known category is listed, even at 0, so a monitor sees the full support.
            "frequencies": {c: float(counts.get(c, 0) / len(frame)) for c in cats},
        }
    return {"n_rows": int(len(frame)), "numeric": numeric, "categorical": categorical}


def write_profile(out_dir: Path, train: pd.DataFrame, seed: int) -> None:
    """Write ``profile/reference_sample.csv``, ``profile/schema.json`` and ``profile/summary.json``."""
    rng = np.random.default_rng(derive_seed(seed, "reference-sample"))
    n = min(REFERENCE_SAMPLE_ROWS, len(train))
    rows = np.sort(rng.choice(len(train), size=n, replace=False))
    sample = train.iloc[rows][schema.FEATURES].reset_index(drop=True)
    write_csv(sample, out_dir / "profile" / "reference_sample.csv")
    write_json(schema.feature_schema(), out_dir / "profile" / "schema.json")
    summary = {"source": f"training split ({len(train)} rows)", **summarize(train)}
    write_json(summary, out_dir / "profile" / "summary.json")


def make_probe_set(seed: int, rows: int = PROBE_ROWS) -> pd.DataFrame:
    """The fixed probe rows: ``generate_features(rows, derive_seed(seed, "probe"))`` plus forced nulls."""
    probe = generate_features(rows, derive_seed(seed, "probe"))
    null_rows = np.arange(PROBE_NULL_OFFSET, rows, PROBE_NULL_EVERY)
    probe.loc[null_rows, "distance_from_home_km"] = np.nan
    return probe


def frame_to_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready records: integer features as ints, nulls as ``None``, categoricals as str."""
    records: list[dict[str, Any]] = []
    for row in frame[schema.FEATURES].itertuples(index=False):
        rec: dict[str, Any] = {}
        for name, value in zip(schema.FEATURES, row):
            if name in schema.CATEGORICAL_FEATURES:
                rec[name] = str(value)
            elif value is None or (isinstance(value, float) and math.isnan(value)):
                rec[name] = None
            elif name in schema.INTEGER_FEATURES:
                rec[name] = int(value)
            else:
                rec[name] = float(value)
        records.append(rec)
    return records


def write_probe(out_dir: Path, probe: pd.DataFrame, predictions: dict[str, dict[str, list[float]]]) -> None:
    """Write ``probe/probe_set.csv`` and ``probe/expected_predictions.json`` ({flavor: {version: [p]}})."""
    write_csv(probe, out_dir / "probe" / "probe_set.csv")
    write_json(predictions, out_dir / "probe" / "expected_predictions.json")


def write_samples(out_dir: Path, probe: pd.DataFrame, predictions: dict[str, dict[str, list[float]]]) -> None:
    """Write ``samples/request.json`` (KServe V1) and ``samples/response_v2_<flavor>.json``."""
    rows = [i for i in SAMPLE_REQUEST_ROWS if i < len(probe)]
    write_json({"instances": frame_to_records(probe.iloc[rows])}, out_dir / "samples" / "request.json")
    for flavor, versions in predictions.items():
        if "v2" in versions:
            preds = [versions["v2"][i] for i in rows]
            write_json({"predictions": preds}, out_dir / "samples" / f"response_v2_{flavor}.json")
