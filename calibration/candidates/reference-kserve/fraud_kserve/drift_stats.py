"""The drift statistics: a sliding window of live rows against the training reference sample.

Pure numpy / scipy, no I/O and no event loop, so it can be tested (and simulated against the
traffic volumes of the assignment) on its own. One evaluation runs these tests, each at the
Bonferroni level ``alpha / n_tests``:

* numeric features: two-sample Kolmogorov-Smirnov on the non-null values (mean shifts, unit
  changes, frozen values all move the empirical CDF);
* categorical features: chi-square test of homogeneity on the counts of the *known* categories,
  window vs reference (a 2 x k table; a goodness-of-fit test that treats the reference shares as
  exact would understate the variance and raise the false-alarm rate);
* categorical features: share of values never seen in training, one-sided binomial test against
  the rule-of-three bound ``max(unseen_in_reference, 3) / n_reference``;
* nullable numeric features: null rate, Fisher's exact test window vs reference (KS drops nulls,
  so a geolocation outage would otherwise be invisible).

No verdict is given before the window is full: small windows are where false alarms come from.
"""

from __future__ import annotations

import csv
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import special

from fraud_kserve.schema import FeatureSpec

#: Below this many usable values a KS / chi-square test is skipped (the null-rate and unseen-share
#: tests still cover the feature).
MIN_VALUES = 30
_NULLS = {"", "nan", "NaN", "null", "None", "NULL"}


def n_tests(fs: FeatureSpec) -> int:
    """KS per numeric, chi-square + unseen share per categorical, null rate per nullable numeric."""
    return len(fs.numeric) + 2 * len(fs.categorical) + sum(1 for f in fs.numeric if f.nullable)


@dataclass(frozen=True)
class Reference:
    n: int
    numeric_sorted: dict[str, np.ndarray]  # non-null values, sorted
    nulls: dict[str, int]
    known_counts: dict[str, np.ndarray]  # per categorical: counts in schema category order
    unseen: dict[str, int]
    summary: dict[str, dict[str, Any]]


def load_reference(path: Path, fs: FeatureSpec) -> Reference:
    """Read ``reference_sample.csv`` (the training sample) into what the tests need."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path} has no rows")
    missing = [f for f in fs.order if f not in rows[0]]
    if missing:
        raise ValueError(f"{path} lacks features {missing}")
    n = len(rows)
    numeric_sorted, nulls, known, unseen, summary = {}, {}, {}, {}, {}
    for f in fs.numeric:
        vals = np.array([np.nan if r[f.name].strip() in _NULLS else float(r[f.name]) for r in rows])
        ok = vals[~np.isnan(vals)]
        numeric_sorted[f.name] = np.sort(ok)
        nulls[f.name] = int(n - ok.size)
        summary[f.name] = {"median": float(np.median(ok)), "mean": float(ok.mean()), "null_share": nulls[f.name] / n}
    for c in fs.categorical:
        counts = Counter(r[c.name] for r in rows)
        known[c.name] = np.array([counts.get(k, 0) for k in c.categories], dtype=np.int64)
        unseen[c.name] = int(n - known[c.name].sum())
        top = max(c.categories, key=lambda k: counts.get(k, 0))
        summary[c.name] = {"top": top, "top_share": counts.get(top, 0) / n, "unseen_share": unseen[c.name] / n}
    return Reference(n, numeric_sorted, nulls, known, unseen, summary)


class Window:
    """The last ``size`` rows, as ring buffers per feature (numerics float64, categoricals as codes:
    the index in the schema's category list, -1 for a value never seen in training)."""

    def __init__(self, fs: FeatureSpec, size: int) -> None:
        self.fs = fs
        self.size = size
        self.numeric = {f.name: np.full(size, np.nan) for f in fs.numeric}
        self.codes = {c.name: np.zeros(size, dtype=np.int16) for c in fs.categorical}
        self.raw = {c.name: np.empty(size, dtype=object) for c in fs.categorical}
        self._index = {c.name: {k: i for i, k in enumerate(c.categories)} for c in fs.categorical}
        self.filled = 0
        self.pos = 0
        self.rows_seen = 0

    @property
    def full(self) -> bool:
        return self.filled >= self.size

    def add(self, columns: dict[str, np.ndarray], n: int) -> None:
        self.rows_seen += n
        start = max(0, n - self.size)  # a batch bigger than the window: keep its tail
        k = n - start
        idx = (self.pos + np.arange(k)) % self.size
        for name, ring in self.numeric.items():
            ring[idx] = columns[name][start:]
        for name, ring in self.codes.items():
            lookup = self._index[name]
            values = columns[name][start:]
            ring[idx] = [lookup.get(v, -1) for v in values]
            self.raw[name][idx] = values
        self.pos = (self.pos + k) % self.size
        self.filled = min(self.size, self.filled + k)

    def snapshot(self) -> dict[str, np.ndarray]:
        """Copies of the filled part (row order does not matter to the tests)."""
        m = self.filled
        out: dict[str, np.ndarray] = {name: ring[:m].copy() for name, ring in self.numeric.items()}
        out.update({name: ring[:m].copy() for name, ring in self.codes.items()})
        for name, ring in self.raw.items():
            out["raw:" + name] = ring[:m].copy()
        return out


def _p(x: float) -> float:
    return min(1.0, max(0.0, float(x))) if math.isfinite(x) else 1.0


# The four tests, written against scipy.special directly: scipy.stats' wrappers cost ~1 ms per call
# in argument handling alone, ten times the arithmetic, and evaluations run every 50 rows.

def ks_two_sample(window: np.ndarray, ref_sorted: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov: (D, p) with the asymptotic Kolmogorov distribution at the
    effective size n*m/(n+m) (scipy.stats.ks_2samp(method="asymp") up to its finite-n correction).
    Ties are handled exactly (both CDFs evaluated right-continuously at every observed value);
    with discrete features the asymptotic p-value is conservative, i.e. fewer false alarms."""
    w = np.sort(window)
    n, m = w.size, ref_sorted.size
    points = np.concatenate([w, ref_sorted])
    d = float(np.max(np.abs(np.searchsorted(w, points, side="right") / n
                            - np.searchsorted(ref_sorted, points, side="right") / m)))
    en = n * m / (n + m)
    return d, _p(special.kolmogorov(math.sqrt(en) * d))


def chi2_homogeneity(table: np.ndarray) -> float:
    """Pearson chi-square test of homogeneity of a 2 x k count table (no continuity correction)."""
    table = table[:, table.sum(axis=0) > 0].astype(np.float64)
    if table.shape[1] < 2 or np.any(table.sum(axis=1) == 0):
        return 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    stat = float(((table - expected) ** 2 / expected).sum())
    return _p(special.chdtrc(table.shape[1] - 1, stat))


def fisher_exact_2x2(a: int, b: int, c: int, d: int) -> float:
    """Two-sided Fisher exact test of [[a, b], [c, d]] (sum of the hypergeometric probabilities
    no larger than the observed table's, as scipy.stats.fisher_exact does)."""
    r1, c1, total = a + b, a + c, a + b + c + d
    lo, hi = max(0, c1 - (total - r1)), min(r1, c1)
    x = np.arange(lo, hi + 1, dtype=np.float64)
    logpmf = (special.gammaln(r1 + 1) - special.gammaln(x + 1) - special.gammaln(r1 - x + 1)
              + special.gammaln(total - r1 + 1) - special.gammaln(c1 - x + 1)
              - special.gammaln(total - r1 - c1 + x + 1)
              - (special.gammaln(total + 1) - special.gammaln(c1 + 1) - special.gammaln(total - c1 + 1)))
    pmf = np.exp(logpmf)
    observed = pmf[a - lo]
    return _p(pmf[pmf <= observed * (1 + 1e-7)].sum())


def binom_at_least(k: int, n: int, p0: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p0)."""
    return 1.0 if k <= 0 else _p(special.bdtrc(k - 1, n, p0))


def evaluate(snap: dict[str, np.ndarray], ref: Reference, fs: FeatureSpec, alpha: float,
             rows_seen: int, firing: frozenset[str] | set[str] = frozenset(),
             clear_alpha: float | None = None) -> dict[str, Any]:
    """Run every test on a window snapshot; JSON-ready verdict.

    Hysteresis: a feature in ``firing`` (drifting at the previous evaluation) stays drifting until
    every one of its tests passes at the looser level ``clear_alpha / n_tests``. A feature fires
    only at ``alpha / n_tests``. Without the gap, a window that still holds a few dozen drifted
    rows sits near the threshold and flickers: the alarm clears, then re-fires when two more
    nulls arrive, and the re-fire is blamed on whatever happens next.
    """
    started = time.perf_counter()
    m_tests = n_tests(fs)
    level = alpha / m_tests
    clear_level = max(level, (clear_alpha if clear_alpha is not None else alpha) / m_tests)
    results: dict[str, dict[str, Any]] = {name: {} for name in fs.order}
    window_summary: dict[str, dict[str, Any]] = {}
    n = 0
    for f in fs.numeric:
        col = snap[f.name]
        n = col.size
        ok = col[~np.isnan(col)]
        window_summary[f.name] = {"median": float(np.median(ok)) if ok.size else None,
                                  "mean": float(ok.mean()) if ok.size else None,
                                  "null_share": round(1 - ok.size / max(n, 1), 4),
                                  "distinct": int(np.unique(ok).size)}
        if ok.size >= MIN_VALUES:
            d, p = ks_two_sample(ok, ref.numeric_sorted[f.name])
            results[f.name]["ks"] = {"p_value": p, "statistic": round(d, 4), "drift": p < level}
        else:
            results[f.name]["ks"] = {"p_value": None, "drift": False, "skipped": "too few non-null values"}
        if f.nullable:
            k, r = int(n - ok.size), ref.nulls[f.name]
            p = fisher_exact_2x2(k, n - k, r, ref.n - r)
            results[f.name]["null_rate"] = {"p_value": p, "drift": p < level, "window": round(k / max(n, 1), 4),
                                            "reference": round(r / ref.n, 4)}
    for c in fs.categorical:
        codes = snap[c.name]
        n = codes.size
        known = codes[codes >= 0]
        counts = np.bincount(known, minlength=len(c.categories))
        if known.size >= MIN_VALUES:
            p = chi2_homogeneity(np.vstack([counts, ref.known_counts[c.name]]))
            results[c.name]["chi2"] = {"p_value": p, "drift": p < level}
        else:
            results[c.name]["chi2"] = {"p_value": None, "drift": False, "skipped": "too few known values"}
        u = int(n - known.size)
        p0 = max(ref.unseen[c.name], 3) / ref.n
        p = binom_at_least(u, n, p0)
        examples = Counter(snap["raw:" + c.name][codes < 0].tolist()).most_common(3) if u else []
        results[c.name]["unseen_share"] = {"p_value": p, "drift": p < level, "window": round(u / max(n, 1), 4),
                                           "examples": [str(v)[:40] for v, _ in examples]}
        top = int(np.argmax(counts)) if counts.sum() else 0
        window_summary[c.name] = {"top": c.categories[top], "top_share": round(counts[top] / max(n, 1), 4),
                                  "unseen_share": round(u / max(n, 1), 4)}
    details: dict[str, Any] = {}
    drifted: list[tuple[float, str]] = []
    for name in fs.order:
        tests = results[name]
        ps = [t["p_value"] for t in tests.values() if t.get("p_value") is not None]
        flag = any(t["drift"] for t in tests.values())
        held = False
        if not flag and name in firing:  # still below the clearing level: keep the alarm
            for t in tests.values():
                if t.get("p_value") is not None and t["p_value"] < clear_level:
                    t["held"] = True
                    held = flag = True
        details[name] = {"drift": flag, "held": held, "min_p_value": min(ps) if ps else None,
                         "failed_tests": [k for k, t in tests.items() if t["drift"] or t.get("held")],
                         "tests": tests, "window": window_summary.get(name), "reference": ref.summary[name]}
        if flag:
            drifted.append((min(ps), name))
    return {"drift": bool(drifted), "features": [name for _, name in sorted(drifted)],
            "evaluated_rows_seen": rows_seen, "window_rows": n, "alpha": alpha, "alpha_per_test": level,
            "clear_alpha_per_test": clear_level,
            "n_tests": m_tests, "details": details,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2)}
