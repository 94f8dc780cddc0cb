"""The feature schema of the card-transaction fraud dataset: the single source of truth.

Everything that builds, serves, replays or checks a row (the generator, both model flavours,
the traffic scenarios, the grader's input validation probes, the candidate's prompt) reads
the feature names, types, ranges and categories from here.
"""

from __future__ import annotations

from typing import Any

#: Numeric features, in model input order. Several are heavily right-skewed on purpose,
#: so that a scale change ("cents instead of dollars") is a realistic drift.
NUMERIC_FEATURES: list[str] = [
    "amount",  # transaction amount in US dollars, log-normal
    "account_age_days",  # days since the card account was opened, exponential-ish
    "distance_from_home_km",  # distance between merchant and cardholder home, log-normal; may be null
    "transactions_last_24h",  # count of this card's transactions in the past 24 hours, Poisson-ish
    "hour_of_day",  # local hour of the transaction, 0..23
]

#: Categorical features and their known categories, in model input order.
CATEGORICAL_FEATURES: dict[str, list[str]] = {
    "merchant_category": [
        "grocery",
        "restaurants",
        "fuel",
        "online_retail",
        "electronics",
        "travel",
        "entertainment",
    ],
    "channel": ["pos", "online", "mobile"],
    "card_type": ["credit", "debit", "prepaid"],
}

#: All features in the order every model flavour expects them.
FEATURES: list[str] = NUMERIC_FEATURES + list(CATEGORICAL_FEATURES)

#: Features that may legitimately be null in a request (the geolocation lookup fails sometimes).
#: A null here is valid input; an absent key is not.
NULLABLE_FEATURES: frozenset[str] = frozenset({"distance_from_home_km"})

#: Integer-valued numeric features (still sent as JSON numbers).
INTEGER_FEATURES: frozenset[str] = frozenset({"transactions_last_24h", "hour_of_day"})

#: Hard validity ranges: values outside are invalid input, not drift.
NUMERIC_RANGES: dict[str, tuple[float, float]] = {
    "amount": (0.0, 1_000_000.0),
    "account_age_days": (0.0, 36_500.0),
    "distance_from_home_km": (0.0, 20_000.0),
    "transactions_last_24h": (0.0, 1_000.0),
    "hour_of_day": (0.0, 23.0),
}

LABEL: str = "is_fraud"


def feature_schema() -> dict[str, Any]:
    """Return the schema as plain data (written to ``profile/schema.json`` for candidates)."""
    fields: list[dict[str, Any]] = []
    for name in NUMERIC_FEATURES:
        lo, hi = NUMERIC_RANGES[name]
        fields.append(
            {
                "name": name,
                "type": "integer" if name in INTEGER_FEATURES else "number",
                "nullable": name in NULLABLE_FEATURES,
                "min": lo,
                "max": hi,
            }
        )
    for name, cats in CATEGORICAL_FEATURES.items():
        fields.append({"name": name, "type": "categorical", "nullable": False, "categories": list(cats)})
    return {"features": fields, "label": LABEL, "feature_order": list(FEATURES)}
