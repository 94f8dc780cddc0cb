"""Every path, limit and tunable in one place. Environment variables override the defaults.

The grader (and any deployment) passes ``PORT``, ``TAKEHOME_STATE_DIR``, ``TAKEHOME_ENDPOINT`` and
``TAKEHOME_ALERT_WEBHOOK_URL``; everything else has a default that the README explains.
This module is imported by the deploy/rollback CLI too, so it must stay stdlib-only.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Repository root: the directory that holds ``fraud_kserve/``, ``models/`` and ``reference_data/``.
ROOT = Path(os.environ.get("TAKEHOME_REPO_ROOT") or Path(__file__).resolve().parent.parent)
MODELS_DIR = ROOT / "models"
REFERENCE_DIR = ROOT / "reference_data"
SCHEMA_PATH = REFERENCE_DIR / "schema.json"
REFERENCE_CSV = REFERENCE_DIR / "reference_sample.csv"
#: Files that make up one model version (torch flavour): both are hashed into the version's digest.
MODEL_FILES = ("model.pt2", "preprocessing.json")

#: KServe model name: the V1 route is /v1/models/fraud:predict, the V2 one /v2/models/fraud/infer.
MODEL_NAME = "fraud"
PREDICT_PATHS = (f"/v1/models/{MODEL_NAME}:predict", f"/v2/models/{MODEL_NAME}/infer")
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
    return _int("PORT", 8080)


def state_dir() -> Path:
    """Writable directory of the model registry (``registry.json``), the admin token and drift reports."""
    return Path(os.environ.get("TAKEHOME_STATE_DIR") or ROOT / "state")


def endpoint() -> str:
    """Base URL of the running server, for the deploy / rollback commands."""
    return (os.environ.get("TAKEHOME_ENDPOINT") or f"http://127.0.0.1:{port()}").rstrip("/")


def request_log_path() -> Path | None:
    """Request log file (JSON lines) besides stdout; ``REQUEST_LOG_PATH=""`` turns the file off."""
    value = os.environ.get("REQUEST_LOG_PATH")
    if value == "":
        return None
    return Path(value) if value else ROOT / "logs" / "requests.jsonl"


def webhook_url() -> str | None:
    return os.environ.get("TAKEHOME_ALERT_WEBHOOK_URL") or None


def run_id() -> str:
    return os.environ.get("TAKEHOME_RUN_ID") or "manual"


# --- request limits --------------------------------------------------------------------------
MAX_BODY_BYTES = _int("MAX_BODY_BYTES", 1024 * 1024)  # 1 MiB: ~4,000 rows, far above MAX_INSTANCES
MAX_INSTANCES = _int("MAX_INSTANCES", 1000)
#: An oversized body is read and dropped up to this size before the 413 goes out, so clients that
#: write the whole body before reading the answer (most do) see the 413 instead of a reset.
DRAIN_LIMIT_BYTES = _int("DRAIN_LIMIT_BYTES", 64 * 1024 * 1024)
MAX_CATEGORY_LENGTH = 256
#: Batches up to this many rows are scored on the event loop (0.3 ms); bigger ones in a thread.
INLINE_ROWS = 64

# --- drift monitor (README: "Drift monitor: window, cadence, alpha") ---------------------------
DRIFT_WINDOW = _int("DRIFT_WINDOW", 300)  # most recent rows compared with the reference sample
DRIFT_EVAL_EVERY = _int("DRIFT_EVAL_EVERY", 50)  # evaluate after every this many new rows
DRIFT_ALPHA = _float("DRIFT_ALPHA", 0.0001)  # family-wise false-alarm rate of one evaluation
#: Hysteresis: a firing feature clears only once all its tests pass at this (looser) family level.
DRIFT_CLEAR_ALPHA = _float("DRIFT_CLEAR_ALPHA", 0.01)
#: Evidently report of the window when an alert fires (side process, nice 10); 0 turns it off.
DRIFT_REPORTS = _int("DRIFT_REPORTS", 1)
DRIFT_REPORT_MIN_INTERVAL_S = _float("DRIFT_REPORT_MIN_INTERVAL_S", 60.0)

# --- webhook alerting ------------------------------------------------------------------------
WEBHOOK_TIMEOUT_S = _float("WEBHOOK_TIMEOUT_S", 2.0)
WEBHOOK_RESEND_S = _float("WEBHOOK_RESEND_S", 60.0)  # re-send the whole state this often (like repeat_interval)
