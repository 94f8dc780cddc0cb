"""The drift computation, run in a separate process (see ``app.drift``): Evidently's DataDriftPreset.

The last ``DRIFT_WINDOW`` rows are compared with ``reference_data/reference_sample.csv`` by
Evidently's data drift preset: it picks a suitable test per column (by type and sample size)
with its default thresholds, and calls the dataset drifted when at least half of the columns
drifted (its default ``drift_share``). A small window reacts quickly.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

_S: dict[str, Any] = {}


def _die_with_parent() -> None:
    """Linux: get SIGTERM when the server process dies, so no orphan keeps running."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort, not on every platform
        pass


def init(spec_dict: dict[str, Any], reference_csv: str, alpha: float, warm_rows: int = 50) -> None:
    """Process initializer: import Evidently once and load the reference."""
    _die_with_parent()
    try:
        os.nice(10)
    except OSError:
        pass
    warnings.filterwarnings("ignore")
    import pandas as pd
    from evidently import DataDefinition, Dataset

    from app.features import FeatureSpec

    spec = FeatureSpec.from_dict(spec_dict)
    ref = pd.read_csv(reference_csv)[list(spec.order)]
    definition = DataDefinition(numerical_columns=spec.numeric_names, categorical_columns=spec.categorical_names)
    _S.update(spec=spec, definition=definition, ref=Dataset.from_pandas(ref, data_definition=definition))
    warm = ref.sample(n=min(warm_rows, len(ref)), random_state=0)
    evaluate([tuple(r) for r in warm.itertuples(index=False, name=None)], 0)


def evaluate(rows: list[tuple[Any, ...]], rows_seen: int) -> dict[str, Any]:
    """Compare ``rows`` (tuples in feature order) to the reference. Returns a JSON-ready verdict."""
    from evidently import Dataset, Report
    from evidently.presets import DataDriftPreset

    from app.features import rows_to_frame

    started = time.perf_counter()
    spec = _S["spec"]
    window = rows_to_frame(rows, spec)
    snapshot = Report([DataDriftPreset()]).run(Dataset.from_pandas(window, data_definition=_S["definition"]),
                                               _S["ref"])
    share, details = 0.0, {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif config.get("column") in spec.order:
            value, threshold, method = float(metric["value"]), float(config["threshold"]), str(config["method"])
            # Evidently's rule: p-value tests drift below the threshold, distances at or above it.
            drifted = value < threshold if "p_value" in method else value >= threshold
            details[config["column"]] = {"drift": drifted, "min_p_value": None, "method": method,
                                         "value": value, "threshold": threshold}
    dataset_drift = share >= 0.5
    features = sorted(name for name, d in details.items() if d["drift"]) if dataset_drift else []
    return {
        "drift": dataset_drift,
        "features": features,
        "drift_share": share,
        "evaluated_rows_seen": rows_seen,
        "window_rows": len(window),
        "alpha": None,
        "alpha_per_test": None,
        "details": details,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        "engine": "evidently DataDriftPreset (defaults)",
    }
