"""Load a built model (any flavour, any version) behind one small interface.

The grader uses this to compute the expected prediction of every probe row it sends, so
loaded predictors are cached; the cache key includes the model file's size and mtime, so a
rebuilt artifact directory is picked up without a restart. torch is imported only when a
torch predictor is loaded.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from reference_model.preprocessing import coerce_features, records_to_frame, transform

FLAVORS: tuple[str, ...] = ("sklearn", "torch")
VERSIONS: tuple[str, ...] = ("v1", "v2")


@runtime_checkable
class Predictor(Protocol):
    """Positive-class probabilities for feature frames or JSON records."""

    flavor: str
    version: str

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """P(is_fraud = 1) per row: float64, shape ``[n]``."""
        ...

    def predict_records(self, records: list[dict[str, Any]]) -> list[float]:
        """P(is_fraud = 1) per record (KServe V1 ``instances``); nulls are JSON ``None``."""
        ...


class _Base:
    flavor: str = ""

    def __init__(self, version: str) -> None:
        self.version = version

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def predict_records(self, records: list[dict[str, Any]]) -> list[float]:
        """See :class:`Predictor`."""
        return [float(p) for p in self.predict_proba(records_to_frame(records))]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(version={self.version!r})"


class SklearnPredictor(_Base):
    """A joblib-saved sklearn ``Pipeline`` (preprocessing included)."""

    flavor = "sklearn"

    def __init__(self, model_path: Path, version: str) -> None:
        import joblib

        from reference_model.sklearn_models import single_threaded

        super().__init__(version)
        self.pipeline = joblib.load(model_path)
        self._single_thread = single_threaded

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """See :class:`Predictor`."""
        if len(df) == 0:
            return np.zeros(0, dtype=np.float64)
        with self._single_thread():
            return np.asarray(self.pipeline.predict_proba(coerce_features(df))[:, 1], dtype=np.float64)


class TorchPredictor(_Base):
    """A ``torch.export`` program plus the numpy preprocessing of ``preprocessing.json``."""

    flavor = "torch"

    def __init__(self, model_dir: Path, version: str) -> None:
        import torch  # lazily: the rest of the project must import without torch

        super().__init__(version)
        self._torch = torch
        self.spec: dict[str, Any] = json.loads((model_dir / "preprocessing.json").read_text())
        self.module = torch.export.load(str(model_dir / "model.pt2")).module()

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """See :class:`Predictor`."""
        if len(df) == 0:
            return np.zeros(0, dtype=np.float64)
        x = self._torch.from_numpy(transform(self.spec, df))
        with self._torch.no_grad():
            out = self.module(x)
        return out.numpy().astype(np.float64).reshape(-1)


def model_path(artifacts_dir: Path, flavor: str, version: str) -> Path:
    """The file that holds a model: ``model.joblib`` (sklearn) or ``model.pt2`` (torch)."""
    if flavor not in FLAVORS:
        raise ValueError(f"unknown flavor {flavor!r}; expected one of {FLAVORS}")
    if version not in VERSIONS:
        raise ValueError(f"unknown version {version!r}; expected one of {VERSIONS}")
    name = "model.joblib" if flavor == "sklearn" else "model.pt2"
    return Path(artifacts_dir) / "models" / flavor / version / name


@functools.lru_cache(maxsize=32)
def _load_cached(path: str, flavor: str, version: str, stamp: tuple[int, int]) -> Predictor:
    del stamp  # part of the cache key only: a rebuilt file gets a new entry
    p = Path(path)
    if flavor == "sklearn":
        return SklearnPredictor(p, version)
    return TorchPredictor(p.parent, version)


def load_predictor(artifacts_dir: Path, flavor: str, version: str) -> Predictor:
    """Load (or return the cached) predictor of ``flavor`` (sklearn|torch) and ``version`` (v1|v2).

    Raises ``FileNotFoundError`` when the artifact is not built.
    """
    path = model_path(artifacts_dir, flavor, version).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no {flavor} {version} model at {path}; build the artifacts first")
    st = path.stat()
    return _load_cached(str(path), flavor, version, (st.st_mtime_ns, st.st_size))


def clear_cache() -> None:
    """Forget every loaded predictor (tests, or after deleting artifacts)."""
    _load_cached.cache_clear()
