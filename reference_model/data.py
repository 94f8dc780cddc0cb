"""The generative process of the card-transaction fraud data (documented in ``README.md``).

Everything is drawn from a ``numpy.random.Generator`` built from an explicit seed, so a
``(n, seed)`` pair always yields the same frame and no global random state is touched.
The grader's drift scenarios derive their ground truth from these parameters: change a
constant here and the README section "Generative process" must change with it.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from reference_model import schema

# --- Feature distributions -------------------------------------------------------------------

#: amount ~ LogNormal(mu, sigma) in US dollars (median exp(mu) = $40), rounded to cents.
AMOUNT_LOG_MU: float = float(np.log(40.0))
AMOUNT_LOG_SIGMA: float = 1.0
AMOUNT_MIN: float = 0.50

#: account_age_days ~ floor(Gamma(shape, scale)): many young accounts, a long tail of old ones.
ACCOUNT_AGE_SHAPE: float = 0.9
ACCOUNT_AGE_SCALE: float = 900.0

#: distance_from_home_km ~ LogNormal(mu, sigma), rounded to 0.01 km (median 6 km).
DISTANCE_LOG_MU: float = float(np.log(6.0))
DISTANCE_LOG_SIGMA: float = 1.4
#: Share of rows whose distance is null (geolocation lookup failed), missing completely at random.
DISTANCE_NULL_RATE: float = 0.01

#: transactions_last_24h ~ Poisson(lambda).
TX_24H_LAMBDA: float = 2.0

#: hour_of_day: P(h) proportional to exp(kappa * cos(2*pi*(h - peak) / 24)), h = 0..23.
HOUR_KAPPA: float = 1.1
HOUR_PEAK: float = 14.0

#: merchant_category marginal probabilities (sum to 1).
MERCHANT_PROBS: dict[str, float] = {
    "grocery": 0.24,
    "restaurants": 0.20,
    "fuel": 0.12,
    "online_retail": 0.18,
    "electronics": 0.07,
    "travel": 0.06,
    "entertainment": 0.13,
}

#: channel | merchant_category: probabilities of (pos, online, mobile).
CHANNEL_GIVEN_MERCHANT: dict[str, tuple[float, float, float]] = {
    "grocery": (0.85, 0.05, 0.10),
    "restaurants": (0.75, 0.05, 0.20),
    "fuel": (0.95, 0.00, 0.05),
    "online_retail": (0.00, 0.70, 0.30),
    "electronics": (0.45, 0.40, 0.15),
    "travel": (0.20, 0.55, 0.25),
    "entertainment": (0.40, 0.30, 0.30),
}

#: card_type marginal probabilities, independent of everything else.
CARD_PROBS: dict[str, float] = {"credit": 0.55, "debit": 0.38, "prepaid": 0.07}

# --- Fraud model: logit(P(is_fraud = 1)) = sum of the terms below --------------------------

FRAUD_INTERCEPT: float = -4.6  # calibrated so that the base rate is about 6%
FRAUD_COEF: dict[str, float] = {
    "log_amount": 0.9,  # * ln(amount / 40)
    "big_ticket": 1.2,  # * max(0, ln(amount / 250))
    "new_account": 3.0,  # * exp(-account_age_days / 45)
    "far_from_home": 1.2,  # * max(0, ln((distance_km + 1) / 50))
    "burst": 0.7,  # * max(0, transactions_last_24h - 4)
    "night": 1.6,  # * [hour_of_day <= 5]
    "online_log_amount": 0.5,  # * [channel == online] * ln(amount / 40)
    "night_prepaid": 1.0,  # * [hour_of_day <= 5] * [card_type == prepaid]
}
FRAUD_MERCHANT_OFFSET: dict[str, float] = {
    "grocery": -0.7,
    "restaurants": -0.4,
    "fuel": -0.3,
    "online_retail": 0.7,
    "electronics": 1.1,
    "travel": 0.9,
    "entertainment": 0.0,
}
FRAUD_CHANNEL_OFFSET: dict[str, float] = {"pos": 0.0, "online": 0.6, "mobile": 0.35}
FRAUD_CARD_OFFSET: dict[str, float] = {"credit": 0.0, "debit": 0.15, "prepaid": 1.3}

#: Default split sizes: big enough for stable metrics, small enough for a fast build.
DEFAULT_SPLIT_SIZES: dict[str, int] = {"train": 40_000, "validation": 10_000, "holdout": 10_000}


def derive_seed(seed: int, purpose: str) -> int:
    """Derive an independent 63-bit seed for one purpose (``"train"``, ``"probe"``...).

    Hashing ``"<seed>:<purpose>"`` keeps splits independent of each other and of any
    ``seed + k`` arithmetic another component might use for its own traffic.
    """
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _choice(rng: np.random.Generator, probs: dict[str, float], n: int) -> np.ndarray:
    names = list(probs)
    p = np.array([probs[k] for k in names], dtype=np.float64)
    idx = rng.choice(len(names), size=n, p=p / p.sum())
    return np.array(names, dtype=object)[idx]


def hour_probabilities() -> np.ndarray:
    """Return P(hour_of_day = h) for h = 0..23 (the documented daily pattern)."""
    hours = np.arange(24, dtype=np.float64)
    w = np.exp(HOUR_KAPPA * np.cos(2.0 * np.pi * (hours - HOUR_PEAK) / 24.0))
    return w / w.sum()


def _draw_features(rng: np.random.Generator, n: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Draw features; also return the true distance (before nulls) for the fraud model."""
    amount = np.round(rng.lognormal(AMOUNT_LOG_MU, AMOUNT_LOG_SIGMA, n), 2)
    amount = np.clip(amount, AMOUNT_MIN, schema.NUMERIC_RANGES["amount"][1])
    age = np.floor(rng.gamma(ACCOUNT_AGE_SHAPE, ACCOUNT_AGE_SCALE, n))
    age = np.clip(age, 0.0, schema.NUMERIC_RANGES["account_age_days"][1])
    distance = np.round(rng.lognormal(DISTANCE_LOG_MU, DISTANCE_LOG_SIGMA, n), 2)
    distance = np.clip(distance, 0.0, schema.NUMERIC_RANGES["distance_from_home_km"][1])
    tx = np.minimum(rng.poisson(TX_24H_LAMBDA, n), int(schema.NUMERIC_RANGES["transactions_last_24h"][1]))
    hour = rng.choice(24, size=n, p=hour_probabilities())
    merchant = _choice(rng, MERCHANT_PROBS, n)
    # channel depends on the merchant: draw one uniform per row and invert the conditional CDF.
    channels = np.array(schema.CATEGORICAL_FEATURES["channel"], dtype=object)
    cdf = np.cumsum(np.array([CHANNEL_GIVEN_MERCHANT[m] for m in merchant]), axis=1)
    u = rng.random(n)
    channel = channels[np.minimum((u[:, None] >= cdf).sum(axis=1), len(channels) - 1)]
    card = _choice(rng, CARD_PROBS, n)
    observed_distance = distance.copy()
    observed_distance[rng.random(n) < DISTANCE_NULL_RATE] = np.nan
    frame = pd.DataFrame(
        {
            "amount": amount.astype(np.float64),
            "account_age_days": age.astype(np.float64),
            "distance_from_home_km": observed_distance.astype(np.float64),
            "transactions_last_24h": tx.astype(np.int64),
            "hour_of_day": hour.astype(np.int64),
            "merchant_category": merchant.astype(object),
            "channel": channel.astype(object),
            "card_type": card.astype(object),
        },
        columns=schema.FEATURES,
    )
    return frame, distance


def fraud_logit(frame: pd.DataFrame, true_distance: np.ndarray | None = None) -> np.ndarray:
    """Return the log-odds of fraud for each row (the README formula).

    ``true_distance`` overrides the (possibly null) observed distance; when it is absent a
    null distance contributes nothing to the far-from-home term.
    """
    c = FRAUD_COEF
    amount = frame["amount"].to_numpy(np.float64)
    age = frame["account_age_days"].to_numpy(np.float64)
    dist = frame["distance_from_home_km"].to_numpy(np.float64) if true_distance is None else true_distance
    tx = frame["transactions_last_24h"].to_numpy(np.float64)
    night = (frame["hour_of_day"].to_numpy(np.float64) <= 5).astype(np.float64)
    online = (frame["channel"] == "online").to_numpy(np.float64)
    prepaid = (frame["card_type"] == "prepaid").to_numpy(np.float64)
    log_amount = np.log(amount / 40.0)
    far = np.nan_to_num(np.maximum(0.0, np.log((dist + 1.0) / 50.0)), nan=0.0)
    z = (
        FRAUD_INTERCEPT
        + c["log_amount"] * log_amount
        + c["big_ticket"] * np.maximum(0.0, np.log(amount / 250.0))
        + c["new_account"] * np.exp(-age / 45.0)
        + c["far_from_home"] * far
        + c["burst"] * np.maximum(0.0, tx - 4.0)
        + c["night"] * night
        + c["online_log_amount"] * online * log_amount
        + c["night_prepaid"] * night * prepaid
        + frame["merchant_category"].map(FRAUD_MERCHANT_OFFSET).to_numpy(np.float64)
        + frame["channel"].map(FRAUD_CHANNEL_OFFSET).to_numpy(np.float64)
        + frame["card_type"].map(FRAUD_CARD_OFFSET).to_numpy(np.float64)
    )
    return z


def generate_features(n: int, seed: int) -> pd.DataFrame:
    """Draw ``n`` transactions (columns exactly ``schema.FEATURES``) from the documented process."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    frame, _ = _draw_features(np.random.default_rng(seed), n)
    return frame


def generate_dataset(n: int, seed: int) -> pd.DataFrame:
    """Draw ``n`` labelled transactions: the features of ``generate_features`` plus ``is_fraud``.

    The features are identical to ``generate_features(n, seed)``; the label uses the same
    generator afterwards, and the *true* distance, because a failed geolocation lookup
    does not make a fraud less likely.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    frame, true_distance = _draw_features(rng, n)
    p = 1.0 / (1.0 + np.exp(-fraud_logit(frame, true_distance)))
    frame[schema.LABEL] = (rng.random(n) < p).astype(np.int64)
    return frame


def make_splits(seed: int, sizes: dict[str, int] | None = None) -> dict[str, pd.DataFrame]:
    """Return independent ``train``/``validation``/``holdout`` splits for one build seed.

    Each split is ``generate_dataset(size, derive_seed(seed, name))``.
    """
    sizes = dict(DEFAULT_SPLIT_SIZES if sizes is None else sizes)
    missing = set(DEFAULT_SPLIT_SIZES) - set(sizes)
    if missing:
        raise ValueError(f"split sizes missing {sorted(missing)}")
    return {name: generate_dataset(sizes[name], derive_seed(seed, name)) for name in DEFAULT_SPLIT_SIZES}


def read_split_csv(path: str) -> pd.DataFrame:
    """Read a split or feature CSV written by the build back with the schema's dtypes."""
    dtypes: dict[str, object] = {name: "float64" for name in schema.NUMERIC_FEATURES}
    dtypes.update({name: "int64" for name in schema.INTEGER_FEATURES})
    dtypes.update({name: object for name in schema.CATEGORICAL_FEATURES})
    return pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values={"distance_from_home_km": [""]})
