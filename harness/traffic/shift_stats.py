"""How large a drift scenario's shift was, on the rows the grader actually sent before the alarm.

A reader of an Evidently report expects, per drifted feature, the test that was run, its score
and the threshold it was judged by. The grader does not know which test a candidate chose, so it
measures what it sent with the tests Evidently uses by default on windows of this size (two-sample
Kolmogorov-Smirnov for a numeric feature, chi-square for a categorical one, and for a missing-value
spike chi-square on the null share), against the fixed training-distribution sample the scenarios
are built from. A tiny p-value on few rows says the shift was plain to see in that many rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from harness.traffic.scenarios import Scenario, reference_sample
from reference_model.schema import CATEGORICAL_FEATURES

#: The p-value below which Evidently's default tests call a column drifted.
P_THRESHOLD = 0.05
_MIN_ROWS = 5


def _round(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def _numeric(ref: pd.Series, sent: pd.Series) -> dict[str, Any]:
    from scipy.stats import ks_2samp  # lazy: only the drift check needs scipy

    a, b = ref.dropna().to_numpy(np.float64), sent.dropna().to_numpy(np.float64)
    if len(b) < _MIN_ROWS:
        return {"test": "K-S", "note": f"only {len(b)} non-null values sent"}
    result = ks_2samp(a, b)
    return {"test": "K-S", "statistic": _round(result.statistic), "p_value": _round(result.pvalue),
            "reference_median": _round(float(np.median(a))), "sent_median": _round(float(np.median(b)))}


def _categorical(ref: pd.Series, sent: pd.Series) -> dict[str, Any]:
    from scipy.stats import chi2_contingency

    cats = sorted(set(ref.dropna().astype(str)) | set(sent.dropna().astype(str)))
    r = ref.dropna().astype(str).value_counts().reindex(cats, fill_value=0).to_numpy()
    s = sent.dropna().astype(str).value_counts().reindex(cats, fill_value=0).to_numpy()
    result = chi2_contingency(np.vstack([r, s]) + 0.5)  # +0.5: a category one side lacks keeps the test defined
    top = sent.dropna().astype(str).value_counts()
    return {"test": "chi-square", "statistic": _round(float(result.statistic)), "p_value": _round(float(result.pvalue)),
            "sent_top_category": f"{top.index[0]} ({top.iloc[0] / max(1, top.sum()):.0%})" if len(top) else None,
            "unseen_categories": [c for c, n_ref, n_sent in zip(cats, r, s) if n_sent and not n_ref]}


def _missing(ref: pd.Series, sent: pd.Series) -> dict[str, Any]:
    from scipy.stats import chi2_contingency

    table = np.array([[ref.isna().sum(), ref.notna().sum()], [sent.isna().sum(), sent.notna().sum()]]) + 0.5
    result = chi2_contingency(table)
    return {"test": "chi-square (null share)", "statistic": _round(float(result.statistic)),
            "p_value": _round(float(result.pvalue)), "reference_null_share": _round(float(ref.isna().mean()), 3),
            "sent_null_share": _round(float(sent.isna().mean()), 3)}


def measure_shift(scenario: Scenario, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per drifted feature: the test, its statistic and p-value on ``rows`` against the reference."""
    if not rows:
        return {}
    sent = pd.DataFrame(rows)
    ref = reference_sample()
    out: dict[str, dict[str, Any]] = {}
    for feature in scenario.features:
        if feature not in sent or feature not in ref:
            continue
        if scenario.kind == "missing_spike":
            stats = _missing(ref[feature], sent[feature])
        elif feature in CATEGORICAL_FEATURES:
            stats = _categorical(ref[feature], sent[feature])
        else:
            stats = _numeric(ref[feature], pd.to_numeric(sent[feature], errors="coerce"))
        stats["rows"] = len(sent)
        if "p_value" in stats:
            stats["drifted"] = stats["p_value"] < P_THRESHOLD
        out[feature] = stats
    return out
