"""Model artifacts: locate, checksum, load and smoke-test a version; hold the live one.

A version is a directory ``models/<version>/model.joblib`` (``v1``, ``v2``...). Loading reads the
file's bytes once, so the sha256 that is recorded is exactly the one of the pipeline in memory.
The live model is one immutable ``LoadedModel`` behind one attribute: a reload builds and tests the
new one completely, then swaps the reference; requests already running keep the object they took.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

from app import settings

log = logging.getLogger("app.models")

VERSION_RE = re.compile(r"^v[0-9]{1,6}$")


class ModelError(Exception):
    """A version cannot be served: missing, corrupt, wrong checksum or failing its smoke test."""


@dataclass(frozen=True)
class LoadedModel:
    version: str
    sha256: str
    path: str
    pipeline: Any = field(repr=False, compare=False)
    fast: Any = field(default=None, repr=False, compare=False)  # app.fastpath.FastPredictor, verified
    fast_max_abs_diff: float | None = None
    loaded_at: float = field(default_factory=time.time)

    def predict_rows(self, rows: list[tuple[Any, ...]]) -> "np.ndarray":
        """P(fraud) for rows given as tuples in feature order."""
        import numpy as np

        if self.fast is not None:
            return self.fast.predict_proba(rows)
        from app.features import rows_to_frame

        return np.asarray(self.pipeline.predict_proba(rows_to_frame(rows))[:, 1], dtype=np.float64)

    def describe(self) -> dict[str, Any]:
        return {"version": self.version, "sha256": self.sha256, "path": self.path,
                "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at)),
                "fast_path": self.fast is not None, "fast_path_max_abs_diff": self.fast_max_abs_diff}


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


def artifact_sha256(version: str, expected_sha256: str | None = None, models_dir: Path | None = None) -> str:
    """The model file exists (and still has the recorded checksum): cheap, no scikit-learn import."""
    path = model_path(version, models_dir)
    if not path.is_file():
        have = ", ".join(available_versions(models_dir)) or "none"
        raise ModelError(f"model {version} not found at {path} (available: {have})")
    sha = sha256_file(path)
    if expected_sha256 and sha != expected_sha256:
        raise ModelError(f"model {version} at {path} has sha256 {sha[:12]}..., expected {expected_sha256[:12]}... "
                         "(the artifact changed since it was registered)")
    return sha


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _smoke_rows() -> list[tuple[Any, ...]]:
    """Two valid rows (one with every nullable feature null) built from the schema alone."""
    from app.features import spec

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


def verification_rows(limit: int = 2000) -> list[tuple[Any, ...]]:
    """Rows the fast path must reproduce exactly: reference sample rows plus edge cases
    (every nullable feature null, range limits, every known category, an unseen category)."""
    import csv

    from app.features import spec

    fs = spec()
    numeric = {f.name: f for f in fs.numeric}
    rows: list[tuple[Any, ...]] = []
    try:
        with settings.REFERENCE_CSV.open(newline="", encoding="utf-8") as fh:
            for i, rec in enumerate(csv.DictReader(fh)):
                if i >= limit:
                    break
                rows.append(tuple((float(rec[n]) if rec[n] not in ("", "nan", "NaN") else None) if n in numeric
                                  else rec[n] for n in fs.order))
    except (OSError, KeyError, ValueError) as exc:
        log.warning("reference sample unusable for fast-path verification: %s", exc)
    base = list(_smoke_rows()[0])
    for name in fs.order:
        i = fs.order.index(name)
        if name in numeric:
            f = numeric[name]
            values: list[Any] = [f.lo, f.hi] + ([None] if f.nullable else [])
        else:
            cat = next(c for c in fs.categorical if c.name == name)
            values = [*cat.categories, "__unseen__"]
        for v in values:
            row = list(base)
            row[i] = v
            rows.append(tuple(row))
    return rows


def load_model(version: str, expected_sha256: str | None = None, models_dir: Path | None = None,
               with_fast_path: bool = True) -> LoadedModel:
    """Load ``version`` and prove it can serve: right checksum, predict_proba gives probabilities.
    ``with_fast_path``: also build the fast path and verify it against the pipeline (app.fastpath)."""
    import joblib  # lazy: the registry CLI imports this module for paths without paying for sklearn
    import numpy as np

    from app.features import rows_to_frame

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
    fast, diff = None, None
    if with_fast_path and os.environ.get("TAKEHOME_FAST_PATH", "1") != "0":
        from app.fastpath import compile_fast, verify
        from app.features import spec

        fast = compile_fast(pipeline, spec().order)
        if fast is not None:
            try:
                diff = verify(fast, pipeline, verification_rows(), rows_to_frame)
            except Exception as exc:  # noqa: BLE001 - any mismatch or error: use the pipeline itself
                log.warning("model %s: fast path rejected (%s); predictions go through the pipeline", version, exc)
                fast = None
    return LoadedModel(version, sha, str(path), pipeline, fast, diff)


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
