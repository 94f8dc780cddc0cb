"""Model artifacts: locate, checksum, load, smoke-test and verify a version; hold the live one.

A version is a directory ``models/<version>/model.joblib`` (``v1``, ``v2``...). Loading reads the
file's bytes once, so the sha256 that is recorded is exactly the one of the pipeline in memory.
The live model is one immutable ``LoadedModel`` behind one attribute: a reload builds, tests and
verifies the new one completely, then swaps the reference; requests already running keep the
object they took.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from fraud import settings

log = logging.getLogger("fraud.models")

VERSION_RE = re.compile(r"^v[0-9]{1,6}$")
#: Reference rows the fast path is checked on at every load (plus the edge rows below).
VERIFY_ROWS = 2000


class ModelError(Exception):
    """A version cannot be served: missing, corrupt, wrong checksum or failing its smoke test."""


@dataclass(frozen=True)
class LoadedModel:
    version: str
    sha256: str
    path: str
    pipeline: Any = field(repr=False, compare=False)
    fast: Any = field(default=None, repr=False, compare=False)  # fraud.fastpath.FastPredictor, verified
    fast_note: str = ""
    loaded_at: float = field(default_factory=time.time)

    def predict_rows(self, rows: list[tuple[Any, ...]]) -> np.ndarray:
        """P(fraud) for rows given as tuples in feature order."""
        if self.fast is not None:
            return self.fast.predict_proba(rows)
        from fraud.features import rows_to_frame

        return np.asarray(self.pipeline.predict_proba(rows_to_frame(rows))[:, 1], dtype=np.float64)

    def describe(self) -> dict[str, Any]:
        return {"version": self.version, "sha256": self.sha256, "path": self.path,
                "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at)),
                "fast_path": self.fast is not None, "fast_path_note": self.fast_note}


def check_version(version: str) -> str:
    if not VERSION_RE.match(version or ""):
        raise ModelError(f"invalid model version {version!r}: expected v<number>, e.g. v1")
    return version


def model_path(version: str, models_dir: Path | None = None) -> Path:
    return (models_dir or settings.MODELS_DIR) / check_version(version) / settings.MODEL_FILENAME


def available_versions(models_dir: Path | None = None) -> list[str]:
    """Versions with a model file, oldest first (v2 before v10)."""
    base = models_dir or settings.MODELS_DIR
    found = [p.parent.name for p in base.glob(f"*/{settings.MODEL_FILENAME}") if VERSION_RE.match(p.parent.name)]
    return sorted(found, key=lambda v: int(v[1:]))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _smoke_rows() -> list[tuple[Any, ...]]:
    """Two valid rows (one with every nullable feature null) built from the schema alone."""
    from fraud.features import spec

    fs = spec()
    row, null_row = [], []
    for name in fs.order:
        num = next((f for f in fs.numeric if f.name == name), None)
        if num is not None:
            value = float(min(max(1.0, num.lo), num.hi))
            row.append(value)
            null_row.append(None if num.nullable else value)
        else:
            cat = next(f for f in fs.categorical if f.name == name)
            row.append(cat.categories[0])
            null_row.append(cat.categories[-1])
    return [tuple(row), tuple(null_row)]


@lru_cache(maxsize=1)
def verification_rows() -> tuple[tuple[Any, ...], ...]:
    """Reference rows plus edge rows: range ends, every nullable null, unseen categories."""
    import csv

    from fraud.features import spec

    fs = spec()
    numeric = {f.name: f for f in fs.numeric}
    rows: list[tuple[Any, ...]] = []
    try:
        with open(settings.REFERENCE_CSV, newline="", encoding="utf-8") as fh:
            for n, rec in enumerate(csv.DictReader(fh)):
                if n >= VERIFY_ROWS:
                    break
                row = []
                for name in fs.order:
                    raw = rec.get(name, "")
                    if name in numeric:
                        row.append(None if raw in ("", "nan", "NaN", "null") else float(raw))
                    else:
                        row.append(raw)
                rows.append(tuple(row))
    except OSError as exc:
        log.warning("cannot read %s for fast-path verification: %s", settings.REFERENCE_CSV, exc)
    for pick in (lambda f: f.lo, lambda f: f.hi, lambda f: (f.lo + f.hi) / 2):
        for unseen in (False, True):
            row = []
            for name in fs.order:
                if name in numeric:
                    f = numeric[name]
                    value = float(pick(f))
                    row.append(None if (f.nullable and unseen) else (round(value) if f.integer else value))
                else:
                    cat = next(c for c in fs.categorical if c.name == name)
                    row.append("never_seen_in_training" if unseen else cat.categories[-1])
            rows.append(tuple(row))
    return tuple(rows)


def _fast_path(pipeline: Any, version: str) -> tuple[Any, str]:
    """A verified FastPredictor for ``pipeline``, or (None, why not)."""
    from fraud import fastpath
    from fraud.features import FEATURES, rows_to_frame

    try:
        fast = fastpath.FastPredictor(pipeline, FEATURES)
        diff = fastpath.verify(fast, pipeline, list(verification_rows()), rows_to_frame)
    except fastpath.Unsupported as exc:
        return None, f"not used: {exc}"
    except Exception as exc:  # noqa: BLE001 - any surprise means "use the pipeline"
        return None, f"not used: {type(exc).__name__}: {exc}"
    if not diff <= fastpath.TOLERANCE:
        log.warning("%s: fast path disagrees with the pipeline by %.3g; serving with the pipeline", version, diff)
        return None, f"not used: max |diff| {diff:.3g} on {len(verification_rows())} rows"
    return fast, f"verified: max |diff| {diff:.3g} on {len(verification_rows())} rows"


def load_model(version: str, expected_sha256: str | None = None, models_dir: Path | None = None,
               fast: bool = True) -> LoadedModel:
    """Load ``version`` and prove it can serve: right checksum, predict_proba gives probabilities."""
    import joblib  # lazy: the registry CLI imports this module for paths without paying for sklearn

    from fraud.features import rows_to_frame

    path = model_path(version, models_dir)
    if not path.is_file():
        have = ", ".join(available_versions(models_dir)) or "none"
        raise ModelError(f"model {version} not found at {path} (available: {have})")
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if expected_sha256 and sha != expected_sha256:
        raise ModelError(f"model {version} at {path} has sha256 {sha[:12]}..., expected {expected_sha256[:12]}... "
                         "(the artifact changed since it was registered)")
    try:
        pipeline = joblib.load(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "cannot serve this"
        raise ModelError(f"model {version} at {path} cannot be loaded: {type(exc).__name__}: {exc}") from None
    if not hasattr(pipeline, "predict_proba"):
        raise ModelError(f"model {version} at {path} has no predict_proba ({type(pipeline).__name__})")
    try:
        proba = np.asarray(pipeline.predict_proba(rows_to_frame(_smoke_rows())), dtype=np.float64)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"model {version} failed its smoke test: {type(exc).__name__}: {exc}") from None
    if proba.shape != (2, 2) or not np.all(np.isfinite(proba)) or np.any(proba < 0) or np.any(proba > 1):
        raise ModelError(f"model {version} smoke test returned {proba.tolist()!r}, not two probabilities per row")
    predictor, note = _fast_path(pipeline, version) if fast else (None, "not used: disabled")
    return LoadedModel(version, sha, str(path), pipeline, predictor, note)


class ModelStore:
    """Holds the live model. Reads are one attribute access; swaps are serialised by a lock."""

    def __init__(self) -> None:
        self._active: LoadedModel | None = None
        self._swap_lock = threading.Lock()

    @property
    def active(self) -> LoadedModel | None:
        return self._active

    def swap(self, model: LoadedModel) -> LoadedModel | None:
        """Make ``model`` live (one reference assignment: atomic under the GIL); return the old one."""
        with self._swap_lock:
            old, self._active = self._active, model
            return old
