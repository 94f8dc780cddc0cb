"""A faster way to run the *same* fitted pipeline: preprocessing in plain numpy, then the fitted
estimator's own ``predict_proba``.

On the grading machine one ``Pipeline.predict_proba`` call on a single row costs ~13 ms, almost
all of it per-call framework overhead in the ColumnTransformer (pandas column selection, input
validation, feature-name checks, a joblib dispatch per branch), not arithmetic. At 50 requests/s
that is most of a core. This module reads the fitted parameters of the standard steps (SimpleImputer,
FunctionTransformer(np.log1p), StandardScaler, OneHotEncoder) and applies the identical float64
operations in the identical order, then hands the matrix to the fitted classifier. For a
HistGradientBoostingClassifier the 250 per-tree Cython calls (~2 ms) are replaced by one vectorised
walk of all trees, summed in the same order (``np.add.accumulate`` is a sequential sum, like the
``+=`` per tree in scikit-learn) and passed through the model's own link function. Result: ~1 ms
per call instead of ~13 ms, with bit-identical probabilities.

It is only ever used after proving itself: ``compile_fast`` returns None for any structure it does
not know (then the server just calls the pipeline), and ``verify`` compares it to the pipeline on
the reference sample plus edge rows (nulls, unseen categories, range limits) at every model load;
any difference above 1e-12 means the pipeline is used instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

log = logging.getLogger("app.fastpath")

Step = Callable[[np.ndarray], np.ndarray]


@dataclass
class _Block:
    columns: list[int]  # indices into the spec's feature order
    steps: list[Step]
    categorical: list[np.ndarray] | None = None  # one-hot categories per column


class Unsupported(Exception):
    pass


def _numeric_step(est: Any) -> Step:
    import sklearn.impute
    import sklearn.preprocessing

    if isinstance(est, sklearn.impute.SimpleImputer):
        stats = np.asarray(est.statistics_, dtype=np.float64)
        if est.add_indicator or np.isnan(stats).any() or not (isinstance(est.missing_values, float)
                                                              and np.isnan(est.missing_values)):
            raise Unsupported("SimpleImputer with indicator, empty features or non-NaN missing marker")
        return lambda x: np.where(np.isnan(x), stats, x)
    if isinstance(est, sklearn.preprocessing.FunctionTransformer):
        if est.func is not np.log1p or est.kw_args or est.validate:
            raise Unsupported(f"FunctionTransformer({est.func!r})")
        return np.log1p
    if isinstance(est, sklearn.preprocessing.StandardScaler):
        mean = None if not est.with_mean else np.asarray(est.mean_, dtype=np.float64)
        scale = None if not est.with_std else np.asarray(est.scale_, dtype=np.float64)

        def scale_step(x: np.ndarray) -> np.ndarray:
            x = x.copy()
            if mean is not None:
                x -= mean
            if scale is not None:
                x /= scale
            return x
        return scale_step
    raise Unsupported(f"step {type(est).__name__}")


class _HistGBRaw:
    """All trees of a fitted binary HistGradientBoostingClassifier as flat arrays."""

    def __init__(self, clf: Any) -> None:
        if getattr(clf, "n_trees_per_iteration_", None) != 1 or getattr(clf, "is_categorical_", None) is not None \
                and np.any(clf.is_categorical_):
            raise Unsupported("HistGradientBoosting with categorical features or several trees per iteration")
        nodes = [p[0].nodes for p in clf._predictors]
        if any(n["is_categorical"].any() for n in nodes):
            raise Unsupported("categorical splits")
        sizes = np.array([len(n) for n in nodes])
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        flat = np.concatenate(nodes)
        shift = np.repeat(offsets, sizes)
        self.roots = offsets.astype(np.intp)
        self.value = flat["value"].astype(np.float64)
        self.feature = flat["feature_idx"].astype(np.intp)
        self.threshold = flat["num_threshold"].astype(np.float64)
        self.missing_left = flat["missing_go_to_left"].astype(bool)
        self.is_leaf = flat["is_leaf"].astype(bool)
        self.left = (flat["left"].astype(np.intp) + shift)
        self.right = (flat["right"].astype(np.intp) + shift)
        self.max_depth = int(flat["depth"].max()) + 1
        self.baseline = float(np.asarray(clf._baseline_prediction).ravel()[0])
        self.loss = clf._loss

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        n = X.shape[0]
        cur = np.broadcast_to(self.roots, (n, len(self.roots))).copy()
        rows = np.arange(n)[:, None]
        for _ in range(self.max_depth):
            leaf = self.is_leaf[cur]
            if leaf.all():
                break
            x = X[rows, self.feature[cur]]
            # the rule of sklearn's _predict_one_from_raw_data: NaN follows missing_go_to_left, else x <= threshold
            go_left = np.where(np.isnan(x), self.missing_left[cur], x <= self.threshold[cur])
            cur = np.where(leaf, cur, np.where(go_left, self.left[cur], self.right[cur]))
        acc = np.empty((n, cur.shape[1] + 1), dtype=np.float64)
        acc[:, 0] = self.baseline
        acc[:, 1:] = self.value[cur]
        raw = np.asfortranarray(np.add.accumulate(acc, axis=1)[:, -1:])
        return self.loss.predict_proba(raw)


class FastPredictor:
    def __init__(self, blocks: list[_Block], estimator: Any) -> None:
        self.blocks = blocks
        self.estimator = estimator
        try:
            from sklearn.ensemble import HistGradientBoostingClassifier

            self._proba = (_HistGBRaw(estimator).predict_proba if isinstance(estimator, HistGradientBoostingClassifier)
                           else estimator.predict_proba)
        except Unsupported as exc:
            log.info("tree walk not vectorised (%s): using the estimator's predict_proba", exc)
            self._proba = estimator.predict_proba

    def predict_proba(self, rows: list[tuple[Any, ...]]) -> np.ndarray:
        """P(class 1) for rows given as tuples in the spec's feature order."""
        parts = []
        for block in self.blocks:
            if block.categorical is None:
                x = np.array([[np.nan if r[c] is None else r[c] for c in block.columns] for r in rows],
                             dtype=np.float64)
                for step in block.steps:
                    x = step(x)
                parts.append(x)
            else:
                for c, cats in zip(block.columns, block.categorical):
                    values = np.array([r[c] for r in rows], dtype=object)
                    parts.append((values[:, None] == cats[None, :]).astype(np.float64))
        X = np.ascontiguousarray(np.hstack(parts), dtype=np.float64)
        return np.asarray(self._proba(X)[:, 1], dtype=np.float64)


def compile_fast(pipeline: Any, order: tuple[str, ...]) -> FastPredictor | None:
    """A FastPredictor for ``Pipeline([ColumnTransformer(...), classifier])``, or None."""
    try:
        return _compile(pipeline, order)
    except Unsupported as exc:
        log.warning("fast path not used (%s): predictions go through the pipeline", exc)
        return None
    except Exception as exc:  # noqa: BLE001 - never let an optimisation break loading
        log.warning("fast path not used (%s: %s)", type(exc).__name__, exc)
        return None


def _compile(pipeline: Any, order: tuple[str, ...]) -> FastPredictor:
    import sklearn.compose
    import sklearn.pipeline
    import sklearn.preprocessing

    if not isinstance(pipeline, sklearn.pipeline.Pipeline) or len(pipeline.steps) != 2:
        raise Unsupported("not a 2-step Pipeline")
    pre, est = pipeline.steps[0][1], pipeline.steps[1][1]
    if not isinstance(pre, sklearn.compose.ColumnTransformer) or not hasattr(est, "predict_proba"):
        raise Unsupported("first step is not a ColumnTransformer")
    if getattr(pre, "sparse_output_", False):
        raise Unsupported("sparse ColumnTransformer output")
    blocks: list[_Block] = []
    for name, trans, cols in pre.transformers_:
        if trans == "drop" or (name == "remainder" and trans == "drop"):
            continue
        if isinstance(trans, str) or not isinstance(cols, (list, tuple)) or not cols:
            raise Unsupported(f"transformer {name!r}: {trans!r} on {cols!r}")
        idx = [order.index(c) for c in cols]
        steps = [s for _, s in trans.steps] if isinstance(trans, sklearn.pipeline.Pipeline) else [trans]
        if len(steps) == 1 and isinstance(steps[0], sklearn.preprocessing.OneHotEncoder):
            ohe = steps[0]
            if ohe.drop is not None or ohe.handle_unknown != "ignore" or getattr(ohe, "sparse_output", True) \
                    or getattr(ohe, "_infrequent_enabled", False) or np.dtype(ohe.dtype) != np.float64:
                raise Unsupported("OneHotEncoder options")
            blocks.append(_Block(idx, [], [np.asarray(c, dtype=object) for c in ohe.categories_]))
        else:
            blocks.append(_Block(idx, [_numeric_step(s) for s in steps]))
    return FastPredictor(blocks, est)


def verify(fast: FastPredictor, pipeline: Any, rows: list[tuple[Any, ...]], to_frame: Callable[[list], Any],
           atol: float = 1e-12) -> float:
    """Max |fast - pipeline| over ``rows``; raises AssertionError above ``atol``."""
    want = np.asarray(pipeline.predict_proba(to_frame(rows))[:, 1], dtype=np.float64)
    got = np.concatenate([fast.predict_proba(rows[i:i + 256]) for i in range(0, len(rows), 256)]
                         + [fast.predict_proba(rows[:1])])[: len(rows) + 1]
    diff = float(np.max(np.abs(got[: len(rows)] - want)))
    single = float(abs(got[len(rows)] - want[0]))
    worst = max(diff, single)
    if not worst <= atol:
        raise AssertionError(f"fast path differs from the pipeline by {worst:.3g}")
    return worst
