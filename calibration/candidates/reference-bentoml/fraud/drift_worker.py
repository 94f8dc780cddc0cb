"""The drift computation, run in a separate process (see ``fraud.drift``): Evidently + two count tests.

Per evaluation, a window of recent live rows is compared to ``reference_data/reference_sample.csv``
with one test per (feature, aspect), all at the Bonferroni-corrected level ``alpha / n_tests``:

* numeric features: two-sample Kolmogorov-Smirnov (Evidently ``ValueDrift(method="ks")``), on the
  non-null values. Catches mean shifts, unit changes (x100, /7) and frozen values.
* categorical features: two-sample chi-square on the *known* categories' counts (window vs
  reference contingency table), registered as an Evidently stat test (``chisquare_2sample``) and run
  through ``ValueDrift``. Catches a category taking over. Evidently's built-in ``chisquare`` is a
  goodness-of-fit test that treats the reference shares as exact: with 5,000 reference rows and a
  500-row window it understates the variance by 10%, which about doubles its false-alarm rate at
  Bonferroni-sized alphas (measured: 4 of 150 simulated baselines alarmed on card_type alone).
* categorical features: share of categories unseen in training, binomial test against the
  rule-of-three bound (3 / reference rows) on the reference's unseen rate (which is zero).
  Unseen values are kept out of the chi-square above, so one typo cannot fire it by itself.
* nullable numeric features: null rate, Fisher's exact test window vs reference (KS drops nulls,
  so without this a geolocation outage would be invisible).

Evidently's own defaults are not used: with a reference over 1,000 rows it picks Wasserstein /
Jensen-Shannon with a fixed 0.1 threshold, which fires on most small baseline windows.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

#: Below this many usable values in the window a KS / chi-square test is not run (too little power,
#: and Evidently rejects empty columns); the null-rate and unseen-share tests still cover the feature.
MIN_VALUES = 30

#: Name under which the two-sample chi-square is registered with Evidently.
CHI2_TWO_SAMPLE = "chisquare_2sample"

_S: dict[str, Any] = {}


def _chi2_two_sample(reference: Any, current: Any, feature_type: Any, threshold: float) -> tuple[float, bool]:
    """Chi-square test of homogeneity on the 2 x k table (window counts, reference counts)."""
    from scipy.stats import chi2_contingency

    keys = sorted(set(reference.dropna().unique()) | set(current.dropna().unique()), key=str)
    if len(keys) < 2:
        return 1.0, False
    ref_counts, cur_counts = reference.value_counts(), current.value_counts()
    table = [[int(cur_counts.get(k, 0)) for k in keys], [int(ref_counts.get(k, 0)) for k in keys]]
    p_value = float(chi2_contingency(table, correction=False)[1])
    return p_value, p_value < threshold


def skip_widgets() -> None:
    """Evidently renders a plotly widget for every ValueDrift result; we only read the numbers, and the
    rendering is ~80% of an evaluation (measured: 320 ms of 400 ms for 8 columns). Skip it."""
    try:
        from evidently.metrics.column_statistics import ValueDriftCalculation

        ValueDriftCalculation._render = lambda self, *args, **kwargs: []  # type: ignore[method-assign]
    except (ImportError, AttributeError):  # another Evidently version: just slower
        pass


def register_stattests() -> None:
    from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
    from evidently.legacy.core import ColumnType

    register_stattest(StatTest(name=CHI2_TWO_SAMPLE, display_name="two-sample chi-square p_value",
                               allowed_feature_types=[ColumnType.Categorical], default_threshold=0.05),
                      default_impl=_chi2_two_sample)


def _die_with_parent() -> None:
    """Linux: get SIGTERM when the server process dies, so no orphan keeps running."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort, not on every platform
        pass


def n_tests(spec: Any) -> int:
    """Tests per evaluation: KS per numeric, chi-square + unseen share per categorical, null rate per
    nullable numeric."""
    return len(spec.numeric) + 2 * len(spec.categorical) + sum(1 for f in spec.numeric if f.nullable)


def init(spec_dict: dict[str, Any], reference_csv: str, alpha: float, warm_rows: int = 500) -> None:
    """Process initializer: import Evidently once, load and prepare the reference, warm up."""
    _die_with_parent()
    try:
        os.nice(10)  # the drift job must never compete with predictions for a core
    except OSError:
        pass
    warnings.filterwarnings("ignore")
    import numpy as np
    import pandas as pd
    from evidently import DataDefinition, Dataset

    from fraud.features import FeatureSpec

    register_stattests()
    skip_widgets()
    spec = FeatureSpec.from_dict(spec_dict)
    raw = pd.read_csv(reference_csv, dtype=str, keep_default_na=False)
    missing = [f for f in spec.order if f not in raw.columns]
    if missing:
        raise ValueError(f"{reference_csv} lacks features {missing}")
    ref = pd.DataFrame(index=raw.index)
    for f in spec.numeric:
        ref[f.name] = pd.to_numeric(raw[f.name].replace({"": None, "NaN": None, "nan": None, "null": None}),
                                    errors="coerce").astype(np.float64)
    for c in spec.categorical:
        ref[c.name] = raw[c.name].astype(object)
    ref = ref[list(spec.order)]
    definition = DataDefinition(numerical_columns=spec.numeric_names, categorical_columns=spec.categorical_names)
    known_ref = _known_only(ref, spec)
    _S.update(spec=spec, ref=ref, n_ref=len(ref), alpha=alpha, definition=definition,
              ref_dataset=Dataset.from_pandas(known_ref, data_definition=definition),
              ref_nulls={f.name: int(ref[f.name].isna().sum()) for f in spec.numeric},
              ref_unseen={c.name: int((~ref[c.name].isin(c.categories)).sum()) for c in spec.categorical},
              ref_stats=_summaries(ref, spec))
    warm = ref.sample(n=min(warm_rows, len(ref)), random_state=0)
    evaluate([tuple(r) for r in warm.itertuples(index=False, name=None)], 0)  # pays Evidently's first-run costs


def _known_only(frame: Any, spec: Any) -> Any:
    """Unseen categories -> NaN, so the chi-square compares the mix of known categories only."""
    out = frame.copy()
    for c in spec.categorical:
        out[c.name] = out[c.name].where(out[c.name].isin(c.categories))
    return out


def _summaries(frame: Any, spec: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for f in spec.numeric:
        col = frame[f.name]
        out[f.name] = {"median": _num(col.median()), "mean": _num(col.mean()), "null_share": _num(col.isna().mean())}
    for c in spec.categorical:
        col = frame[c.name]
        shares = col.value_counts(normalize=True)
        out[c.name] = {"top": None if shares.empty else str(shares.index[0]),
                       "top_share": _num(shares.iloc[0]) if not shares.empty else None,
                       "unseen_share": _num((~col.isin(c.categories)).mean())}
    return out


def _num(x: Any) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return None if x != x else round(x, 6)


def evaluate(rows: list[tuple[Any, ...]], rows_seen: int) -> dict[str, Any]:
    """Compare ``rows`` (tuples in feature order) to the reference. Returns a JSON-ready verdict."""
    from evidently import Dataset, Report
    from evidently.metrics import ValueDrift
    from scipy.stats import binom, fisher_exact

    from fraud.features import rows_to_frame

    started = time.perf_counter()
    spec, alpha, n_ref = _S["spec"], _S["alpha"], _S["n_ref"]
    m = n_tests(spec)
    level = alpha / m
    window = rows_to_frame(rows, spec)
    n = len(window)
    current = _known_only(window, spec)
    results: dict[str, dict[str, Any]] = {f: {} for f in spec.order}

    # 1) Evidently: KS per numeric, chi-square per categorical (known categories only).
    metrics, planned = [], []
    for f in spec.numeric:
        if current[f.name].notna().sum() >= MIN_VALUES:
            metrics.append(ValueDrift(column=f.name, method="ks", threshold=level))
            planned.append((f.name, "ks"))
        else:
            results[f.name]["ks"] = {"p_value": None, "drift": False, "skipped": "too few non-null values"}
    for c in spec.categorical:
        if current[c.name].notna().sum() >= MIN_VALUES:
            metrics.append(ValueDrift(column=c.name, method=CHI2_TWO_SAMPLE, threshold=level))
            planned.append((c.name, CHI2_TWO_SAMPLE))
        else:
            results[c.name][CHI2_TWO_SAMPLE] = {"p_value": None, "drift": False, "skipped": "too few known values"}
    if metrics:
        snapshot = Report(metrics).run(Dataset.from_pandas(current, data_definition=_S["definition"]),
                                       _S["ref_dataset"])
        values = {(r["config"]["column"], r["config"]["method"]): r["value"]
                  for r in snapshot.dict()["metrics"]}
        for name, method in planned:
            p = float(values[(name, method)])
            results[name][method] = {"p_value": p, "drift": bool(p < level)}

    # 2) Null rate of nullable numerics: Fisher's exact test, window vs reference.
    for f in spec.numeric:
        if not f.nullable:
            continue
        k, r = int(window[f.name].isna().sum()), _S["ref_nulls"][f.name]
        p = float(fisher_exact([[k, n - k], [r, n_ref - r]])[1])
        results[f.name]["null_rate"] = {"p_value": p, "drift": bool(p < level), "window": round(k / max(n, 1), 4),
                                        "reference": round(r / n_ref, 4)}

    # 3) Unseen categories: binomial test against the rule-of-three bound of the reference's rate.
    for c in spec.categorical:
        u = int((~window[c.name].isin(c.categories)).sum())
        p0 = max(_S["ref_unseen"][c.name], 3) / n_ref
        p = float(binom.sf(u - 1, n, p0)) if u > 0 else 1.0
        top = window.loc[~window[c.name].isin(c.categories), c.name].value_counts().head(3)
        results[c.name]["unseen_share"] = {"p_value": p, "drift": bool(p < level), "window": round(u / max(n, 1), 4),
                                           "examples": [str(x) for x in top.index]}

    now = _summaries(window, spec)
    details, drifted = {}, []
    for name in spec.order:
        tests = results[name]
        ps = [t["p_value"] for t in tests.values() if t.get("p_value") is not None]
        flag = any(t["drift"] for t in tests.values())
        details[name] = {"drift": flag, "min_p_value": min(ps) if ps else None, "tests": tests,
                         "window": now[name], "reference": _S["ref_stats"][name]}
        if flag:
            drifted.append((min(ps), name))
    return {
        "drift": bool(drifted),
        "features": [name for _, name in sorted(drifted)],
        "evaluated_rows_seen": rows_seen,
        "window_rows": n,
        "alpha": alpha,
        "alpha_per_test": level,
        "n_tests": m,
        "details": details,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        "engine": "evidently " + _evidently_version(),
    }


def _evidently_version() -> str:
    import evidently

    return str(getattr(evidently, "__version__", "?"))
