"""Evidently report of a drift alert, rendered in a separate low-priority process.

When a feature starts drifting, the on-call engineer wants more than a p-value: the two
distributions side by side. This worker renders an Evidently 0.7 ``DataDriftPreset`` report of the
window that raised the alert against the reference sample, for the blamed features, with the
*same* tests and per-test level as the alerting path (KS for numerics, chi-square for
categoricals, alpha / n_tests; the null-rate and unseen-share tests have no Evidently twin), and
writes ``drift-<time>.html`` and ``.json`` under ``$TAKEHOME_STATE_DIR/drift-reports/``; the alert's
annotations carry the path.

Why not decide with Evidently directly: a Report run takes 100-300 ms of pandas work per window
here, while the window is re-tested every 50 rows (about 25 times a second under the grader's
replay). The decision path is ``drift_stats`` (3 ms, same tests); Evidently is the explanation.
It runs in its own process (spawned, ``SCHED_IDLE`` and ``nice 19``) so its GIL, its imports and
its CPU time never touch the prediction path or the drift verdicts, at most once per ``DRIFT_REPORT_MIN_INTERVAL_S``, and any failure only costs the
report.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

_S: dict[str, Any] = {}


def _die_with_parent() -> None:
    """Linux: get SIGTERM when the server process dies, so no orphan keeps running."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort
        pass


def init(reference_csv: str, numeric: list[str], categorical: list[str], out_dir: str) -> None:
    """Process initializer: lower priority, import Evidently, load the reference once."""
    _die_with_parent()
    # SCHED_IDLE: run only on CPU time nobody else wants (a plain nice 10 still took enough of the
    # second core, shared with the load generator, to delay drift verdicts by ~150 rows).
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        pass
    try:
        os.nice(19)
    except OSError:
        pass
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    warnings.filterwarnings("ignore")
    import pandas as pd
    from evidently import DataDefinition, Dataset

    ref = pd.read_csv(reference_csv)
    for name in categorical:
        ref[name] = ref[name].astype(str)
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    _S.update(definition=definition, numeric=numeric, categorical=categorical, out_dir=out_dir,
              reference=Dataset.from_pandas(ref[numeric + categorical], data_definition=definition))


def render(columns: dict[str, list[Any]], features: list[str], level: float, tag: str) -> dict[str, Any]:
    """Render the report of one window for the blamed ``features`` (0.8 s for one feature; all
    eight take 5 s); returns the paths written and what Evidently concluded."""
    import pandas as pd
    from evidently import Dataset, Report
    from evidently.presets import DataDriftPreset

    started = time.perf_counter()
    frame = pd.DataFrame(columns)[_S["numeric"] + _S["categorical"]]
    for name in _S["categorical"]:
        frame[name] = frame[name].astype(str)
    current = Dataset.from_pandas(frame, data_definition=_S["definition"])
    report = Report([DataDriftPreset(columns=features, num_method="ks", cat_method="chisquare", threshold=level)])
    snapshot = report.run(current, _S["reference"])
    os.makedirs(_S["out_dir"], exist_ok=True)
    stem = os.path.join(_S["out_dir"], f"drift-{tag}")
    snapshot.save_html(stem + ".html")
    snapshot.save_json(stem + ".json")
    drifted = []
    for metric in snapshot.dict().get("metrics", []):
        cfg = metric.get("config", {})
        if cfg.get("type", "").endswith("ValueDrift") and isinstance(metric.get("value"), (int, float)):
            if metric["value"] < level:
                drifted.append(cfg.get("column"))
    return {"html": stem + ".html", "json": stem + ".json", "evidently_drifted": sorted(c for c in drifted if c),
            "ms": round((time.perf_counter() - started) * 1000, 1)}
