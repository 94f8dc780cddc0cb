"""Model versions on disk: locate, fingerprint and (in the server) load and smoke-test them.

A version is a directory ``models/<version>/`` holding ``model.pt2`` (a ``torch.export`` program)
and ``preprocessing.json``. Its *digest* is the sha256 over both files' sha256s, so a changed
recipe is a changed version just like changed weights. The digest and the listing are stdlib-only:
the deploy / rollback CLI uses them without importing torch (which takes seconds).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fraud_kserve import settings

VERSION_RE = re.compile(r"^v[0-9]{1,6}$")


class ModelError(Exception):
    """A version cannot be served: missing, corrupt, wrong digest or failing its smoke test."""


def check_version(version: str) -> str:
    if not VERSION_RE.match(version or ""):
        raise ModelError(f"invalid model version {version!r}: expected v<number>, e.g. v1")
    return version


def version_dir(version: str, models_dir: Path | None = None) -> Path:
    return (models_dir or settings.MODELS_DIR) / check_version(version)


def available_versions(models_dir: Path | None = None) -> list[str]:
    """Versions with every model file present, oldest first (v2 before v10)."""
    base = models_dir or settings.MODELS_DIR
    found = [p.name for p in base.glob("v*") if VERSION_RE.match(p.name)
             and all((p / f).is_file() for f in settings.MODEL_FILES)]
    return sorted(found, key=lambda v: int(v[1:]))


def read_version_files(version: str, models_dir: Path | None = None) -> dict[str, bytes]:
    """The bytes of every file of ``version`` (read once: what is hashed is what is loaded)."""
    base = version_dir(version, models_dir)
    out: dict[str, bytes] = {}
    for name in settings.MODEL_FILES:
        path = base / name
        try:
            out[name] = path.read_bytes()
        except FileNotFoundError:
            have = ", ".join(available_versions(models_dir)) or "none"
            raise ModelError(f"model {version}: {path} does not exist (complete versions: {have})") from None
        except OSError as exc:
            raise ModelError(f"model {version}: cannot read {path}: {exc}") from None
    return out


def digest_of(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in settings.MODEL_FILES:
        h.update(f"{name}:{hashlib.sha256(files[name]).hexdigest()}\n".encode())
    return h.hexdigest()


def version_digest(version: str, models_dir: Path | None = None) -> str:
    """Digest of ``version`` as it is on disk now (raises ModelError when a file is missing)."""
    return digest_of(read_version_files(version, models_dir))


def rel_path(version: str) -> str:
    try:
        return str(version_dir(version).relative_to(settings.ROOT))
    except ValueError:
        return str(version_dir(version))


@dataclass(frozen=True)
class LoadedModel:
    """One servable version: the program and its recipe, immutable once loaded."""

    version: str
    digest: str
    recipe: dict[str, Any] = field(repr=False, compare=False)
    module: Any = field(repr=False, compare=False)
    loaded_at: float = 0.0
    load_ms: float = 0.0

    def describe(self) -> dict[str, Any]:
        import time

        return {"version": self.version, "sha256": self.digest, "path": rel_path(self.version),
                "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at)),
                "load_ms": self.load_ms}


def smoke_columns() -> dict[str, Any]:
    """Two valid rows built from the schema alone: one ordinary, one with every nullable null and
    unseen categories (the all-zero encoding)."""
    import numpy as np

    from fraud_kserve.schema import spec

    fs = spec()
    cols: dict[str, Any] = {}
    for f in fs.numeric:
        value = float(min(max(1.0, f.lo), f.hi))
        cols[f.name] = np.array([value, np.nan if f.nullable else value], dtype=np.float64)
    for c in fs.categorical:
        cols[c.name] = np.array([c.categories[0], "__unseen__"], dtype=object)
    return cols


def load_model(version: str, expected_digest: str | None = None, models_dir: Path | None = None) -> LoadedModel:
    """Load ``version`` and prove it can serve: right digest, valid recipe, probabilities out."""
    import io
    import time

    import numpy as np
    import torch

    from fraud_kserve.preprocessing import RecipeError, check_recipe, n_inputs, transform
    from fraud_kserve.schema import spec

    started = time.perf_counter()
    files = read_version_files(version, models_dir)
    digest = digest_of(files)
    if expected_digest and digest != expected_digest:
        raise ModelError(f"model {version} has digest {digest[:12]}..., expected {expected_digest[:12]}... "
                         "(its files changed since it was registered)")
    try:
        recipe = json.loads(files["preprocessing.json"])
        check_recipe(recipe, spec().order)
    except (ValueError, KeyError, TypeError, RecipeError) as exc:
        raise ModelError(f"model {version}: preprocessing.json is unusable: {exc}") from None
    try:
        module = torch.export.load(io.BytesIO(files["model.pt2"])).module()
    except Exception as exc:  # noqa: BLE001 - any deserialisation failure means "cannot serve this"
        raise ModelError(f"model {version}: model.pt2 cannot be loaded: {type(exc).__name__}: {exc}") from None
    try:
        x = transform(recipe, smoke_columns())
        if x.shape[1] != n_inputs(recipe):
            raise ModelError(f"model {version}: recipe gives {x.shape[1]} inputs")
        with torch.inference_mode():
            out = module(torch.from_numpy(x)).numpy().astype(np.float64).reshape(-1)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"model {version} failed its smoke test: {type(exc).__name__}: {exc}") from None
    if out.shape != (2,) or not np.all(np.isfinite(out)) or np.any(out < 0) or np.any(out > 1):
        raise ModelError(f"model {version} smoke test returned {out.tolist()!r}, not one probability per row")
    return LoadedModel(version, digest, recipe, module, time.time(), round((time.perf_counter() - started) * 1000, 1))
