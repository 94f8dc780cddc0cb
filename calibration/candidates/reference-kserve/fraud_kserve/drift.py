"""The drift monitor in the server: feeds the window, evaluates off the request path, alerts.

* ``add(batch)`` runs on the event loop after a successful prediction: it copies the validated
  columns into the ring buffers (microseconds) and, every ``DRIFT_EVAL_EVERY`` rows once the window
  is full, wakes the evaluation thread.
* The evaluation thread snapshots the window and runs ``drift_stats.evaluate`` (~3 ms). It never
  overlaps itself: rows that arrive while it runs are picked up by the next evaluation, which
  starts as soon as this one ends, on the newest window.
* Its verdict goes to the Prometheus gauges, to ``GET /drift`` (debugging), to the log on every
  change, and to the :class:`~fraud_kserve.alerts.Alerter`, which POSTs firing / resolved alerts
  to the webhook from its own thread.
* When a feature starts drifting, the window is also sent to the Evidently report worker.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Callable

from fraud_kserve import drift_report, metrics, settings
from fraud_kserve.alerts import Alerter
from fraud_kserve.drift_stats import Reference, Window, evaluate
from fraud_kserve.schema import Batch, FeatureSpec

log = logging.getLogger("fraud_kserve.drift")


def _annotations(feature: str, detail: dict[str, Any], verdict: dict[str, Any], report: str | None) -> dict[str, str]:
    failed = detail["failed_tests"]
    parts = []
    for name in failed:
        t = detail["tests"][name]
        extra = (f", window {t['window']:.1%} vs reference {t['reference']:.1%}" if name == "null_rate" else
                 f", unseen share {t['window']:.1%} (e.g. {', '.join(t['examples'])})" if name == "unseen_share" else
                 f", D={t['statistic']}" if name == "ks" else "")
        parts.append(f"{name} p={t['p_value']:.2e}{extra}")
    out = {"summary": f"{feature} drifted from the training distribution ({'; '.join(parts)})",
           "description": (f"Last {verdict['window_rows']} rows vs reference sample; per-test level "
                           f"{verdict['alpha_per_test']:.2e} (alpha {verdict['alpha']} / {verdict['n_tests']} tests)"),
           "tests": ",".join(failed), "min_p_value": f"{detail['min_p_value']:.3e}",
           "rows_seen": str(verdict["evaluated_rows_seen"]),
           "window": json.dumps(detail.get("window")), "reference": json.dumps(detail.get("reference"))}
    if report:
        out["report"] = report
    return out


class DriftMonitor:
    def __init__(self, fs: FeatureSpec, reference: Reference, alerter: Alerter, window: int, eval_every: int,
                 alpha: float, clear_alpha: float, event: Callable[[dict[str, Any]], None]) -> None:
        self.fs = fs
        self.reference = reference
        self.alerter = alerter
        self.window = Window(fs, window)
        self.eval_every = max(1, eval_every)
        self.alpha = alpha
        self.clear_alpha = clear_alpha
        self.event = event
        self._cond = threading.Condition()  # guards the window (event loop adds, this thread snapshots)
        self._stop = False
        self._thread: threading.Thread | None = None
        self._evaluated_at_rows = 0
        self._lock = threading.Lock()  # guards the latest verdict
        self._latest: dict[str, Any] | None = None
        self._latest_at: float | None = None
        self._error: str | None = None
        self.evaluations = 0
        # Evidently reports (optional, side process)
        self._reports: ProcessPoolExecutor | None = None
        self._last_report_at = 0.0
        self._last_report: dict[str, Any] | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self.alerter.start()
        self._thread = threading.Thread(target=self._run, name="drift-eval", daemon=True)
        self._thread.start()
        if settings.DRIFT_REPORTS:
            try:
                self._reports = ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=drift_report.init,
                    initargs=(str(settings.REFERENCE_CSV), self.fs.numeric_names, self.fs.categorical_names,
                              str(settings.state_dir() / "drift-reports")))
                self._reports.submit(int, 0)  # start the worker now: importing Evidently takes seconds
            except Exception as exc:  # noqa: BLE001 - reports are optional
                log.error("drift reports disabled: %s", exc)
                self._reports = None

    def shutdown(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self.alerter.stop()
        if self._reports is not None:
            # A report being rendered is not worth waiting for at shutdown: stop the worker now.
            for proc in list((getattr(self._reports, "_processes", None) or {}).values()):
                proc.terminate()
            self._reports.shutdown(wait=False, cancel_futures=True)

    # --- ingestion (event loop) ---------------------------------------------------------------
    def add(self, batch: Batch) -> None:
        """Append validated rows (microseconds); wakes the evaluation thread when one is due."""
        with self._cond:
            self.window.add(batch.columns, batch.n)
            due = self.window.full and self.window.rows_seen - self._evaluated_at_rows >= self.eval_every
            if due:
                self._cond.notify()
        metrics.DRIFT_ROWS_SEEN.set(self.window.rows_seen)
        metrics.DRIFT_WINDOW_ROWS.set(self.window.filled)

    def _run(self) -> None:
        """Evaluation thread: one evaluation at a time, on the newest rows, as soon as one is due."""
        while True:
            with self._cond:
                while not self._stop and not (self.window.full and
                                              self.window.rows_seen - self._evaluated_at_rows >= self.eval_every):
                    self._cond.wait()
                if self._stop:
                    return
                self._evaluated_at_rows = rows_seen = self.window.rows_seen
                snap = self.window.snapshot()
            self._evaluate(snap, rows_seen)

    # --- evaluation (drift-eval thread) -------------------------------------------------------
    def _evaluate(self, snap: dict[str, Any], rows_seen: int) -> None:
        started = time.perf_counter()
        try:
            with self._lock:
                firing = frozenset(self._latest["features"]) if self._latest else frozenset()
            verdict = evaluate(snap, self.reference, self.fs, self.alpha, rows_seen, firing, self.clear_alpha)
        except Exception as exc:  # noqa: BLE001 - a bug here must not stop serving
            metrics.DRIFT_EVALS.labels(result="error").inc()
            with self._lock:
                self._error = f"{type(exc).__name__}: {exc}"
            log.exception("drift evaluation failed")
            return
        finally:
            metrics.DRIFT_EVAL_SECONDS.observe(time.perf_counter() - started)
        with self._lock:
            was = list(self._latest["features"]) if self._latest else []
            self._latest, self._latest_at, self._error = verdict, time.time(), None
            self.evaluations += 1
        metrics.DRIFT_EVALS.labels(result="drift" if verdict["drift"] else "ok").inc()
        metrics.DRIFT.set(1 if verdict["drift"] else 0)
        for name, detail in verdict["details"].items():
            metrics.FEATURE_DRIFT.labels(feature=name).set(1 if detail["drift"] else 0)
            if detail["min_p_value"] is not None:
                metrics.FEATURE_PVALUE.labels(feature=name).set(detail["min_p_value"])
        new = [f for f in verdict["features"] if f not in was]
        report = self._maybe_report(snap, verdict) if new else None
        self.alerter.update({f: _annotations(f, verdict["details"][f], verdict, report)
                             for f in verdict["features"]})
        if verdict["features"] != was:
            self.event({"event": "drift", "drift": verdict["drift"], "features": verdict["features"],
                        "previous": was, "rows_seen": rows_seen, "window_rows": verdict["window_rows"],
                        "min_p_values": {f: verdict["details"][f]["min_p_value"] for f in
                                         sorted(set(verdict["features"]) | set(was))},
                        **({"report": report} if report else {})})

    def _maybe_report(self, snap: dict[str, Any], verdict: dict[str, Any]) -> str | None:
        """Queue an Evidently report of this window (rate-limited); returns where it will be written."""
        if self._reports is None or time.monotonic() - self._last_report_at < settings.DRIFT_REPORT_MIN_INTERVAL_S:
            return None
        self._last_report_at = time.monotonic()
        tag = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-r{verdict['evaluated_rows_seen']}"
        columns: dict[str, list[Any]] = {}
        for f in self.fs.numeric:
            columns[f.name] = snap[f.name].tolist()
        for c in self.fs.categorical:
            columns[c.name] = [str(v) for v in snap["raw:" + c.name].tolist()]
        try:
            fut = self._reports.submit(drift_report.render, columns, list(verdict["features"]),
                                       verdict["alpha_per_test"], tag)
        except Exception as exc:  # noqa: BLE001 - broken pool: no more reports, alerts go on
            log.error("drift report not queued: %s", exc)
            self._reports = None
            return None
        fut.add_done_callback(self._report_done)
        return str(settings.state_dir() / "drift-reports" / f"drift-{tag}.html")

    def _report_done(self, fut: Future) -> None:
        try:
            result = fut.result()
        except Exception as exc:  # noqa: BLE001
            self.event({"event": "drift_report", "ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]})
            return
        self._last_report = result
        self.event({"event": "drift_report", "ok": True, **result})

    # --- views --------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        with self._lock:
            latest, error, at = self._latest, self._error, self._latest_at
        w = self.window
        status = "ok" if latest else ("error" if error else "warming_up")
        out: dict[str, Any] = {
            "drift": bool(latest and latest["drift"]),
            "features": list(latest["features"]) if latest else [],
            "status": status, "rows_seen": w.rows_seen, "window_size": w.size, "window_rows": w.filled,
            "evaluated_rows_seen": latest["evaluated_rows_seen"] if latest else None,
            "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)) if at else None,
            "evaluations": self.evaluations, "eval_every_rows": self.eval_every,
            "alerts": self.alerter.describe(), "last_report": self._last_report,
            "method": {"numeric": "two-sample Kolmogorov-Smirnov", "categorical": "chi-square homogeneity on "
                       "known categories + unseen-category share (binomial)", "nullable": "null rate (Fisher exact)",
                       "correction": "Bonferroni", "alpha_family": self.alpha, "clear_alpha_family": self.clear_alpha,
                       "alpha_per_test": latest["alpha_per_test"] if latest else None},
        }
        if latest:
            out["details"] = latest["details"]
            out["duration_ms"] = latest["duration_ms"]
        else:
            out["message"] = error or f"collecting rows: {w.filled} of {w.size} before the first evaluation"
        return out
