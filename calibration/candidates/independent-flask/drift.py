"""Drift monitor: the last WINDOW scored rows against the training sample, feature by feature.

Numeric features: two-sample Kolmogorov-Smirnov. Categorical ones: chi-square on the category
counts (an unseen category counts as its own column). The nullable feature also gets a chi-square
on its null share. A feature drifts when its p-value is below ALPHA; ALPHA is small because the
monitor is read every 50 rows, 9 tests at a time: 40 reads on clean traffic make ~360 correlated
tests, and one false alarm among them is a page at 3 a.m. A 200-row window holds the alarm for at
most 200 clean rows after drift ends, and a clear shift fills half of it within 100 rows.
"""

from __future__ import annotations

import threading
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency, ks_2samp

WINDOW = 200
MIN_ROWS = 100
ALPHA = 1e-4
MAX_NAMED = 3


class Monitor:
    def __init__(self, reference_csv: Path, fields: dict[str, dict[str, Any]], features: list[str]) -> None:
        ref = pd.read_csv(reference_csv)
        self.fields, self.features = fields, features
        self.numeric = [f for f in features if fields[f]["type"] != "categorical"]
        self.categorical = [f for f in features if fields[f]["type"] == "categorical"]
        self.nullable = [f for f in features if fields[f]["nullable"]]
        self.ref_values = {f: ref[f].dropna().to_numpy(np.float64) for f in self.numeric}
        self.ref_counts = {f: ref[f].astype(str).value_counts() for f in self.categorical}
        self.ref_nulls = {f: (int(ref[f].isna().sum()), int(ref[f].notna().sum())) for f in self.nullable}
        self.window: deque[dict[str, Any]] = deque(maxlen=WINDOW)
        self.lock = threading.Lock()

    def add(self, rows: list[dict[str, Any]]) -> None:
        with self.lock:
            self.window.extend(rows)

    def p_values(self) -> dict[str, float]:
        with self.lock:
            rows = list(self.window)
        if len(rows) < MIN_ROWS:
            return {}
        win = pd.DataFrame(rows, columns=self.features)
        out: dict[str, float] = {}
        for f in self.numeric:
            values = pd.to_numeric(win[f], errors="coerce").dropna().to_numpy(np.float64)
            if len(values) >= 20:
                out[f] = float(ks_2samp(self.ref_values[f], values).pvalue)
        for f in self.categorical:
            now = win[f].astype(str).value_counts()
            cats = sorted(set(self.ref_counts[f].index) | set(now.index))
            table = np.array([self.ref_counts[f].reindex(cats, fill_value=0), now.reindex(cats, fill_value=0)])
            out[f] = float(chi2_contingency(table).pvalue)
        for f in self.nullable:
            nulls = int(win[f].isna().sum())
            p = float(chi2_contingency(np.array([self.ref_nulls[f], (nulls, len(win) - nulls)]) + 0.5).pvalue)
            out[f] = min(out.get(f, 1.0), p)
        return out

    def verdict(self) -> dict[str, Any]:
        p = self.p_values()
        drifted = sorted((v, f) for f, v in p.items() if v < ALPHA)
        return {"drift": bool(drifted), "features": [f for _, f in drifted[:MAX_NAMED]],
                "window_rows": len(self.window), "alpha": ALPHA,
                "p_values": {f: float(f"{v:.3g}") for f, v in p.items()}}
