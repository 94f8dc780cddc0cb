"""Every path, limit and tunable in one place. Environment variables override the defaults.

The grader (and any deployment) passes ``PORT``, ``TAKEHOME_STATE_DIR`` and ``TAKEHOME_ENDPOINT``;
everything else has a default that is explained in the README.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Repository root: the directory that holds ``service.py``, ``fraud/``, ``models/`` and ``reference_data/``.
ROOT = Path(os.environ.get("TAKEHOME_REPO_ROOT") or Path(__file__).resolve().parent.parent)
MODELS_DIR = ROOT / "models"
REFERENCE_DIR = ROOT / "reference_data"
SCHEMA_PATH = REFERENCE_DIR / "schema.json"
REFERENCE_CSV = REFERENCE_DIR / "reference_sample.csv"
MODEL_FILENAME = "model.joblib"

PREDICT_PATH = "/v1/models/fraud:predict"
REQUEST_ID_HEADER = "X-Request-ID"


def _int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def port() -> int:
    return _int("PORT", 3000)


def state_dir() -> Path:
    """Writable directory of the model registry (``registry.json``) and the admin token."""
    return Path(os.environ.get("TAKEHOME_STATE_DIR") or ROOT / "state")


def endpoint() -> str:
    """Base URL of the running server, for the deploy / rollback commands."""
    return (os.environ.get("TAKEHOME_ENDPOINT") or f"http://127.0.0.1:{port()}").rstrip("/")


def request_log_path() -> Path:
    """Request log (JSON lines); ``logs/requests.jsonl`` in the repo, as declared in takehome.yaml."""
    return Path(os.environ.get("REQUEST_LOG_PATH") or ROOT / "logs" / "requests.jsonl")


# --- request limits --------------------------------------------------------------------------
MAX_BODY_BYTES = _int("MAX_BODY_BYTES", 1024 * 1024)  # 1 MiB: ~4,000 rows, far above MAX_INSTANCES
MAX_INSTANCES = _int("MAX_INSTANCES", 1000)
#: An oversized body is read and discarded up to this size before the 413 goes out, so clients that
#: write the whole body before reading (most do) see the 413 instead of a connection reset.
DRAIN_LIMIT_BYTES = _int("DRAIN_LIMIT_BYTES", 64 * 1024 * 1024)
MAX_CATEGORY_LENGTH = 128

# --- drift monitor (see README "Drift monitor: window and alpha") ------------------------------
DRIFT_WINDOW = _int("DRIFT_WINDOW", 500)  # most recent rows compared to the reference sample
DRIFT_EVAL_EVERY = _int("DRIFT_EVAL_EVERY", 100)  # background evaluation cadence, in new rows
DRIFT_ALPHA = _float("DRIFT_ALPHA", 0.0002)  # family-wise false-alarm rate of one evaluation (README)
DRIFT_WAIT_S = _float("DRIFT_WAIT_S", 1.2)  # a scrape of /metrics waits this long for an up-to-date verdict
