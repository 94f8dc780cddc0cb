"""Drift scenarios with known ground truth: which features changed, how, and by how much.

Each scenario changes exactly the features listed in ``Scenario.features`` and leaves every other
column identical to the in-distribution rows it was applied to, so attribution can be scored
exactly. The seed picks the target feature (where a kind has several valid targets) and the
magnitude, so a candidate cannot hard-code "watch amount". Every scenario keeps rows *valid*
(schema ranges, integer features integral, nulls only where nullable): drift is not bad input,
and a strict validator must not reject drifted rows. Every scenario is clearly detectable by a
sane two-sample test on 300-500 rows (KS for numerics, chi-square / shares for categoricals,
null rate for missing values); ``tests/test_traffic.py`` checks that for many seeds.

Reference statistics (log-scale spreads, category shares, quantiles) come from one fixed
20,000-row sample of the training distribution, so parameters are deterministic per seed.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

import numpy as np
import pandas as pd

from harness.traffic.baseline import to_records
from reference_model.data import derive_seed, generate_features
from reference_model.schema import CATEGORICAL_FEATURES, NULLABLE_FEATURES, NUMERIC_RANGES

#: kind -> one-line description (the grader config validates ``traffic.scenarios`` against these keys).
SCENARIO_KINDS: dict[str, str] = {
    "mean_shift": "one numeric feature's distribution shifts (log-scale by 0.8-1.5 sigma for skewed features)",
    "unit_change": "one numeric feature arrives in another unit (amount in cents, account age in weeks/months)",
    "new_category": "a categorical feature gets an unseen category for 40-60% of rows",
    "category_mix": "the mix of a categorical feature's known categories changes strongly (one takes 75-90%)",
    "missing_spike": "distance_from_home_km is null for 40-70% of rows (geolocation outage)",
    "frozen_feature": "a stalled upstream pipeline: one numeric feature repeats a single plausible value",
}

#: Right-skewed features shift multiplicatively (in log space); the rest shift additively.
_LOG_SCALE = ("amount", "account_age_days", "distance_from_home_km")
_MEAN_SHIFT_TARGETS = ("amount", "account_age_days", "distance_from_home_km", "transactions_last_24h",
                       "hour_of_day")
#: (feature, factor, unit description). Distance in metres is not offered: x1000 would push a fifth
#: of the rows past the schema's 20,000 km bound, i.e. make them invalid input rather than drift.
_UNIT_CHANGES: tuple[tuple[str, float, str], ...] = (
    ("amount", 100.0, "cents instead of dollars (x100)"),
    ("account_age_days", 1.0 / 7.0, "whole weeks instead of days (/7)"),
    ("account_age_days", 1.0 / 30.4375, "whole months instead of days (/30.44)"),
)
_NEW_CATEGORIES: dict[str, str] = {"merchant_category": "crypto_exchange", "channel": "moto", "card_type": "virtual"}
#: Resolution of each numeric feature in the training data, kept after a change so that drifted
#: values look like real ones (a monitor must not get a free tell from odd decimals).
_DECIMALS: dict[str, int] = {"amount": 2, "account_age_days": 0, "distance_from_home_km": 2,
                             "transactions_last_24h": 0, "hour_of_day": 0}
_REFERENCE_ROWS = 20_000


@lru_cache(maxsize=1)
def _reference() -> pd.DataFrame:
    return generate_features(_REFERENCE_ROWS, derive_seed(0, "scenario-reference"))


def reference_sample() -> pd.DataFrame:
    """The fixed training-distribution sample the scenarios' parameters come from (do not modify)."""
    return _reference()


def _log_sigma(feature: str) -> float:
    values = _reference()[feature].dropna().to_numpy(np.float64)
    return float(np.log(values[values > 0]).std())


@dataclass(frozen=True)
class Scenario:
    """One drift scenario. ``features`` is the ground truth: exactly the features that change."""

    kind: str
    name: str
    description: str
    features: tuple[str, ...]
    params: dict[str, Any] = field(hash=False)

    def apply(self, df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """Return a drifted copy of ``df``; columns outside ``features`` are left identical."""
        out = df.copy()
        _APPLY[self.kind](out, self.params, rng)
        return out

    def as_dict(self) -> dict[str, Any]:
        """Plain data (ground truth for reports and the public sample's ``scenarios.json``)."""
        return {"kind": self.kind, "name": self.name, "description": self.description,
                "features": list(self.features), "params": dict(self.params)}


# --- appliers: mutate ``out`` in place (it is already a copy) ---------------------------------

def _finish_numeric(out: pd.DataFrame, feature: str, values: np.ndarray) -> None:
    """Clip to the schema range, round to the feature's resolution, keep the column's dtype."""
    lo, hi = NUMERIC_RANGES[feature]
    values = np.round(np.clip(values, lo, hi), _DECIMALS[feature])
    if feature == "amount":
        values = np.maximum(values, 0.01)  # a zero-dollar purchase is not a plausible drifted value
    dtype = out[feature].dtype
    out[feature] = values.astype(dtype) if np.issubdtype(dtype, np.integer) else values.astype(np.float64)


def _apply_mean_shift(out: pd.DataFrame, p: dict[str, Any], rng: np.random.Generator) -> None:
    feature = p["feature"]
    x = out[feature].to_numpy(np.float64)
    if p["mode"] == "log":
        # floor (not round) for day counts: the generator floors ages, so shifted ages stay whole days
        shifted = x * p["factor"]
        if feature == "account_age_days":
            shifted = np.floor(shifted)
    elif p["mode"] == "circular":  # hour of day: a shifted clock wraps around midnight
        shifted = np.mod(x + p["shift"], 24.0)
    else:
        shifted = x + p["shift"]
    _finish_numeric(out, feature, shifted)  # NaN stays NaN through all of the above


def _apply_unit_change(out: pd.DataFrame, p: dict[str, Any], rng: np.random.Generator) -> None:
    feature = p["feature"]
    x = out[feature].to_numpy(np.float64) * p["factor"]
    if p["factor"] < 1:
        x = np.floor(x)  # "whole weeks/months": an upstream integer division
    _finish_numeric(out, feature, x)


def _apply_new_category(out: pd.DataFrame, p: dict[str, Any], rng: np.random.Generator) -> None:
    mask = rng.random(len(out)) < p["share"]
    col = out[p["feature"]].to_numpy(object).copy()
    col[mask] = p["category"]
    out[p["feature"]] = col


def _apply_category_mix(out: pd.DataFrame, p: dict[str, Any], rng: np.random.Generator) -> None:
    # Re-assign a share q of rows to the dominant category so that its overall share is ~p["share"].
    base = p["baseline_share"]
    q = (p["share"] - base) / (1.0 - base)
    mask = rng.random(len(out)) < q
    col = out[p["feature"]].to_numpy(object).copy()
    col[mask] = p["category"]
    out[p["feature"]] = col


def _apply_missing_spike(out: pd.DataFrame, p: dict[str, Any], rng: np.random.Generator) -> None:
    base = p["baseline_null_rate"]
    q = (p["null_rate"] - base) / (1.0 - base)  # already-null rows stay null: overall rate ~ null_rate
    mask = rng.random(len(out)) < q
    col = out[p["feature"]].to_numpy(np.float64).copy()
    col[mask] = np.nan
    out[p["feature"]] = col


def _apply_frozen(out: pd.DataFrame, p: dict[str, Any], rng: np.random.Generator) -> None:
    feature = p["feature"]
    # Every row, nulls included: a stalled pipeline keeps serving its last value.
    _finish_numeric(out, feature, np.full(len(out), float(p["value"])))


_APPLY: dict[str, Callable[[pd.DataFrame, dict[str, Any], np.random.Generator], None]] = {
    "mean_shift": _apply_mean_shift,
    "unit_change": _apply_unit_change,
    "new_category": _apply_new_category,
    "category_mix": _apply_category_mix,
    "missing_spike": _apply_missing_spike,
    "frozen_feature": _apply_frozen,
}


# --- builders: the seed picks target and magnitude --------------------------------------------

def _pick(rng: np.random.Generator, options: tuple[Any, ...] | list[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def _build_mean_shift(rng: np.random.Generator) -> Scenario:
    """Ground truth: one of amount, account_age_days, distance_from_home_km (x exp(+-k*sigma_log),
    k in [0.8, 1.5]), transactions_last_24h (+-round(k*sigma)) or hour_of_day (clock shifted by
    +-round(k*sigma) hours, wrapping at midnight). Nulls stay null."""
    feature = _pick(rng, _MEAN_SHIFT_TARGETS)
    k = round(float(rng.uniform(0.8, 1.5)), 3)
    sign = 1 if rng.random() < 0.5 else -1
    if feature in _LOG_SCALE:
        sigma = _log_sigma(feature)
        factor = math.exp(sign * k * sigma)
        params = {"feature": feature, "mode": "log", "k": k, "direction": sign, "sigma_log": round(sigma, 6),
                  "factor": round(factor, 6)}
        how = f"multiplied by {factor:.3g} (log-scale shift of {sign * k:+.2f} sigma)"
    else:
        sigma = float(_reference()[feature].std())
        shift = sign * max(1, int(round(k * sigma)))
        mode = "circular" if feature == "hour_of_day" else "additive"
        params = {"feature": feature, "mode": mode, "k": k, "direction": sign, "sigma": round(sigma, 6),
                  "shift": shift}
        how = f"shifted by {shift:+d}" + (" hours (mod 24)" if mode == "circular" else "")
    return Scenario("mean_shift", f"mean_shift:{feature}", f"{feature} {how}", (feature,), params)


def _build_unit_change(rng: np.random.Generator) -> Scenario:
    """Ground truth: amount x100 (cents) or account_age_days floored to weeks or months."""
    feature, factor, unit = _pick(rng, _UNIT_CHANGES)
    params = {"feature": feature, "factor": factor, "unit": unit}
    return Scenario("unit_change", f"unit_change:{feature}", f"{feature} sent in {unit}", (feature,), params)


def _build_new_category(rng: np.random.Generator) -> Scenario:
    """Ground truth: one categorical feature takes an unseen value for a 40-60% share of rows."""
    feature = _pick(rng, list(_NEW_CATEGORIES))
    share = round(float(rng.uniform(0.4, 0.6)), 3)
    category = _NEW_CATEGORIES[feature]
    params = {"feature": feature, "category": category, "share": share}
    return Scenario("new_category", f"new_category:{feature}",
                    f"{feature} = unseen {category!r} for {share:.0%} of rows", (feature,), params)


def _build_category_mix(rng: np.random.Generator) -> Scenario:
    """Ground truth: one categorical feature; a known category with a training share under 40%
    grows to 75-90% of rows (the other categories shrink proportionally)."""
    feature = _pick(rng, list(CATEGORICAL_FEATURES))
    shares = _reference()[feature].value_counts(normalize=True)
    minor = [c for c in CATEGORICAL_FEATURES[feature] if shares.get(c, 0.0) < 0.4]
    category = _pick(rng, minor)
    share = round(float(rng.uniform(0.75, 0.9)), 3)
    base = round(float(shares.get(category, 0.0)), 6)
    params = {"feature": feature, "category": category, "share": share, "baseline_share": base}
    return Scenario("category_mix", f"category_mix:{feature}",
                    f"{feature} = {category!r} for {share:.0%} of rows (training: {base:.0%})", (feature,), params)


def _build_missing_spike(rng: np.random.Generator) -> Scenario:
    """Ground truth: a nullable feature (distance_from_home_km) is null for 40-70% of rows."""
    feature = _pick(rng, sorted(NULLABLE_FEATURES))
    rate = round(float(rng.uniform(0.4, 0.7)), 3)
    base = round(float(_reference()[feature].isna().mean()), 6)
    params = {"feature": feature, "null_rate": rate, "baseline_null_rate": base}
    return Scenario("missing_spike", f"missing_spike:{feature}",
                    f"{feature} null for {rate:.0%} of rows (training: {base:.1%})", (feature,), params)


def _build_frozen(rng: np.random.Generator) -> Scenario:
    """Ground truth: one numeric feature is the same real value (a training-sample value between
    its 30th and 70th percentile) on every row, nulls included."""
    feature = _pick(rng, list(NUMERIC_RANGES))
    q = round(float(rng.uniform(0.3, 0.7)), 3)
    column = _reference()[feature].dropna()
    # an actual observed value (the "last value seen" before the stall), not an interpolated one
    value = column.sort_values().iloc[int(q * (len(column) - 1))].item()
    params = {"feature": feature, "value": value, "quantile": q}
    return Scenario("frozen_feature", f"frozen_feature:{feature}", f"{feature} stuck at {value!r} on every row",
                    (feature,), params)


_BUILD: dict[str, Callable[[np.random.Generator], Scenario]] = {
    "mean_shift": _build_mean_shift,
    "unit_change": _build_unit_change,
    "new_category": _build_new_category,
    "category_mix": _build_category_mix,
    "missing_spike": _build_missing_spike,
    "frozen_feature": _build_frozen,
}
assert set(_BUILD) == set(SCENARIO_KINDS) == set(_APPLY)


def make_scenarios(kinds: list[str], seed: int) -> list[Scenario]:
    """One scenario per entry of ``kinds``, deterministic per ``seed``.

    Each kind draws from its own stream (seeded by kind and occurrence), so reordering or
    removing kinds in the configuration does not change the others' targets.
    """
    unknown = [k for k in kinds if k not in SCENARIO_KINDS]
    if unknown:
        raise ValueError(f"unknown scenario kind(s) {unknown} (known: {sorted(SCENARIO_KINDS)})")
    seen: dict[str, int] = {}
    scenarios = []
    for kind in kinds:
        occurrence = seen.get(kind, 0)
        seen[kind] = occurrence + 1
        rng = np.random.default_rng(derive_seed(seed, f"scenario:{kind}:{occurrence}"))
        scenarios.append(_BUILD[kind](rng))
    return scenarios


def _apply_rng(scenario: Scenario, seed: int) -> np.random.Generator:
    # the params are part of the stream's seed: two scenarios on the same feature draw different rows
    tag = zlib.crc32(repr(sorted(scenario.params.items())).encode())
    return np.random.default_rng(derive_seed(seed, f"apply:{scenario.name}:{tag}"))


def scenario_frames(scenario: Scenario, n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(in-distribution rows, the same rows drifted). The rows come from
    ``generate_features(n, derive_seed(seed, "scenario-rows:<name>"))``: independent of
    ``baseline_records(n, seed)`` and of other scenarios replayed with the same seed."""
    before = generate_features(n, derive_seed(seed, f"scenario-rows:{scenario.name}"))
    return before, scenario.apply(before, _apply_rng(scenario, seed))


def scenario_records(scenario: Scenario, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` drifted rows, JSON-ready, deterministic per (scenario, n, seed)."""
    return to_records(scenario_frames(scenario, n, seed)[1])
