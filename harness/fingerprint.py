"""Which model version is live? Decided from behaviour, never from a version string.

v1 and v2 give different probabilities on almost every row, so the served predictions on a fixed
probe set identify the version. A submission whose predictions match neither reference (wrong
preprocessing, say) can still be fingerprinted against its *own* earlier responses: the grader
learns what the candidate returned right after deploying v1 and v2, and compares to those. That
keeps a correctness bug from also costing deployment and rollback points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Version = Literal["v1", "v2", "unknown", "error"]
VERSIONS: tuple[str, str] = ("v1", "v2")
#: Share of rows that must agree with a version for the whole probe to be called that version.
MATCH_SHARE = 0.9


@dataclass
class VersionReading:
    """One fingerprint: the version the predictions point to, and how it was decided."""

    version: Version
    basis: Literal["reference", "signature", "none"] = "none"
    match: dict[str, float] = field(default_factory=dict)  # share of rows matching each candidate version
    error: str | None = None

    def evidence(self) -> dict[str, object]:
        out: dict[str, object] = {"version": self.version, "basis": self.basis,
                                  "match_share": {k: round(v, 3) for k, v in self.match.items()}}
        if self.error:
            out["error"] = self.error
        return out


class Fingerprinter:
    """Classifies predictions on the probe rows as v1, v2 or unknown."""

    def __init__(self, probe_rows: list[dict], reference: dict[str, np.ndarray], atol: float) -> None:
        if set(reference) != set(VERSIONS):
            raise ValueError("reference predictions for v1 and v2 are required")
        self.rows = probe_rows
        self.reference = {k: np.asarray(v, dtype=float) for k, v in reference.items()}
        self.atol = atol
        self.signatures: dict[str, np.ndarray] = {}

    @staticmethod
    def informative(v1: np.ndarray, v2: np.ndarray, atol: float) -> np.ndarray:
        """Mask of rows on which the two references disagree clearly (usable to tell them apart)."""
        return np.abs(np.asarray(v1) - np.asarray(v2)) > 10 * atol

    def learn(self, version: str, predictions: list[float]) -> None:
        """Remember what the candidate returned while ``version`` was supposed to be live."""
        if len(predictions) == len(self.rows):
            self.signatures[version] = np.asarray(predictions, dtype=float)

    def _shares(self, preds: np.ndarray, idx: np.ndarray, table: dict[str, np.ndarray]) -> dict[str, float]:
        return {v: float(np.mean(np.abs(preds - table[v][idx]) <= self.atol)) for v in table}

    def classify(self, predictions: list[float], indices: list[int] | None = None) -> VersionReading:
        """Version of a set of predictions made on ``self.rows[indices]`` (all rows when None)."""
        idx = np.arange(len(self.rows)) if indices is None else np.asarray(indices, dtype=int)
        preds = np.asarray(predictions, dtype=float)
        if preds.shape != idx.shape:
            return VersionReading("error", error=f"expected {len(idx)} predictions, got {preds.size}")
        ref = self._shares(preds, idx, self.reference)
        best = max(ref, key=ref.__getitem__)
        if ref[best] >= MATCH_SHARE and ref[best] > ref[_other(best)]:
            return VersionReading(best, "reference", ref)  # type: ignore[arg-type]
        if len(self.signatures) == 2 and not np.allclose(self.signatures["v1"], self.signatures["v2"],
                                                         atol=self.atol):
            sig = self._shares(preds, idx, self.signatures)
            best_sig = max(sig, key=sig.__getitem__)
            if sig[best_sig] >= MATCH_SHARE and sig[best_sig] > sig[_other(best_sig)]:
                return VersionReading(best_sig, "signature", sig)  # type: ignore[arg-type]
        return VersionReading("unknown", "none", ref)

    def classify_one(self, index: int, prediction: float) -> Version:
        """Version of a single prediction on probe row ``index`` (used per request during rollback)."""
        return self.classify([prediction], [index]).version


def representative_subset(pool: list[dict], candidates: np.ndarray, n: int, seed: int,
                          tries: int = 60) -> list[int]:
    """Indices of ``n`` rows from ``candidates`` whose feature mix best matches the whole ``pool``.

    Probe rows are sent again and again (every deploy, every rollback request) and so end up in the
    candidate's drift window. The first n informative rows skewed categories (14 of 16 credit
    cards against 55%) enough to make a sound monitor fire on its first baseline window. Each try
    fills the subset in a seeded random order, admitting a row only while every one of its
    categories is under its share of ``n`` (rounded up); the try whose worst feature distance to
    the pool (total variation for categories, KS for numbers) is smallest wins.
    """
    from reference_model.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES

    candidates = np.asarray(candidates, dtype=int)
    if len(candidates) <= n:
        return [int(i) for i in candidates]
    cats = {f: [str(r.get(f)) for r in pool] for f in CATEGORICAL_FEATURES}
    share = {f: {c: v.count(c) / len(v) for c in set(v)} for f, v in cats.items()}
    cap = {f: {c: int(np.ceil(p * n)) for c, p in sh.items()} for f, sh in share.items()}
    nums = {f: np.array([np.nan if r.get(f) is None else float(r[f]) for r in pool]) for f in NUMERIC_FEATURES}
    sorted_ref = {f: np.sort(v[~np.isnan(v)]) for f, v in nums.items()}
    null_share = {f: float(np.mean(np.isnan(v))) for f, v in nums.items()}

    def distance(idx: list[int]) -> float:
        worst = 0.0
        for f, sh in share.items():
            sub = [cats[f][i] for i in idx]
            worst = max(worst, 0.5 * sum(abs(sub.count(c) / len(sub) - p) for c, p in sh.items()))
        for f, values in nums.items():
            col = values[idx]
            worst = max(worst, abs(float(np.mean(np.isnan(col))) - null_share[f]))
            col, ref = np.sort(col[~np.isnan(col)]), sorted_ref[f]
            if len(col) and len(ref):
                grid = np.concatenate([ref, col])  # KS statistic: the largest gap between the two ECDFs
                gap = np.abs(np.searchsorted(ref, grid, "right") / len(ref)
                             - np.searchsorted(col, grid, "right") / len(col))
                worst = max(worst, float(gap.max()))
        return worst

    rng = np.random.default_rng(seed)
    best: list[int] = [int(i) for i in candidates[:n]]
    best_d = distance(best)
    for _ in range(tries):
        order = [int(i) for i in rng.permutation(candidates)]
        used = {f: dict.fromkeys(sh, 0) for f, sh in share.items()}
        picked: list[int] = []
        for i in order:
            if all(used[f][cats[f][i]] < cap[f][cats[f][i]] for f in cats):
                picked.append(i)
                for f in cats:
                    used[f][cats[f][i]] += 1
                if len(picked) == n:
                    break
        if len(picked) < n:  # caps too tight for the informative rows: top up in the same order
            picked += [i for i in order if i not in picked][:n - len(picked)]
        d = distance(picked)
        if d < best_d:
            best, best_d = picked, d
    return sorted(best)


def _other(version: str) -> str:
    return "v2" if version == "v1" else "v1"
