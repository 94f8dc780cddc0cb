"""The sklearn flavour: a ``Pipeline`` with preprocessing included, v1 and v2.

v1 (previous) is a logistic regression, v2 (current) a histogram gradient-boosted tree
model. Both take a ``DataFrame`` with columns ``schema.FEATURES`` (a null distance is fine)
and are saved with joblib; loading needs only numpy and scikit-learn, never this package.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from threadpoolctl import ThreadpoolController

from reference_model import schema
from reference_model.preprocessing import LOG1P_FEATURES, coerce_features

VERSIONS: tuple[str, ...] = ("v1", "v2")


@functools.lru_cache(maxsize=1)
def _threadpools() -> ThreadpoolController:
    return ThreadpoolController()


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run sklearn's native thread pools (OpenMP in HistGradientBoosting, BLAS) on one thread.

    On a busy 2-core machine, OpenMP threads spin-waiting for each other made one v2 fit take
    20 s instead of 2 s; one thread is fast, and the results do not depend on the thread count.
    """
    with _threadpools().limit(limits=1):
        yield


def _preprocessor() -> ColumnTransformer:
    """The column transformer both versions share (same recipe as ``preprocessing.json``)."""
    skewed = [f for f in schema.NUMERIC_FEATURES if f in LOG1P_FEATURES]
    plain = [f for f in schema.NUMERIC_FEATURES if f not in LOG1P_FEATURES]
    skewed_pipe = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            # np.log1p itself, not a lambda: the pipeline must pickle and load without our code.
            ("log1p", FunctionTransformer(np.log1p, feature_names_out="one-to-one")),
            ("scale", StandardScaler()),
        ]
    )
    plain_pipe = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categories = [list(c) for c in schema.CATEGORICAL_FEATURES.values()]
    onehot = OneHotEncoder(categories=categories, handle_unknown="ignore", sparse_output=False)
    return ColumnTransformer(
        [
            ("skewed", skewed_pipe, skewed),
            ("plain", plain_pipe, plain),
            ("categorical", onehot, list(schema.CATEGORICAL_FEATURES)),
        ],
        remainder="drop",
    )


def make_pipeline(version: str, seed: int) -> Pipeline:
    """Return an unfitted pipeline for ``version`` (``"v1"`` or ``"v2"``)."""
    if version == "v1":
        clf = LogisticRegression(C=1.0, max_iter=2000)
    elif version == "v2":
        # Fixed iterations, no early stopping: the build must not depend on an internal split.
        clf = HistGradientBoostingClassifier(
            learning_rate=0.06,
            max_iter=250,
            max_leaf_nodes=15,
            min_samples_leaf=40,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=seed % (2**32),
        )
    else:
        raise ValueError(f"unknown version {version!r}; expected one of {VERSIONS}")
    return Pipeline([("preprocess", _preprocessor()), ("model", clf)])


def train(version: str, train_frame: pd.DataFrame, seed: int) -> Pipeline:
    """Fit the ``version`` pipeline on a labelled training frame."""
    pipe = make_pipeline(version, seed)
    with single_threaded():
        pipe.fit(coerce_features(train_frame), train_frame[schema.LABEL].to_numpy(np.int64))
    return pipe


def save(pipe: Pipeline, path: Path) -> None:
    """Save a fitted pipeline with joblib (creates the parent folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipe, path)


def predict_proba(pipe: Pipeline, frame: pd.DataFrame) -> np.ndarray:
    """Positive-class probabilities, float64, shape ``[n]``."""
    if len(frame) == 0:
        return np.zeros(0, dtype=np.float64)
    with single_threaded():
        return np.asarray(pipe.predict_proba(coerce_features(frame))[:, 1], dtype=np.float64)
