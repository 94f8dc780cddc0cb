"""The drift monitor: a sliding window of live rows, evaluated off the request path.

The service appends every scored row to a window of the last ``DRIFT_WINDOW`` rows. Evaluations
(``fraud.drift_worker``: Evidently KS / chi-square plus null-rate and unseen-category tests) run in
a separate *process*: Evidently and pandas hold the GIL for hundreds of milliseconds, which in a
thread would stall predictions. At most one evaluation runs at a time; a new one starts every
``DRIFT_EVAL_EVERY`` rows, and a read of the verdict (a scrape of ``/metrics``, or ``GET /drift``)
asks for one covering every row received so far and waits up to ``DRIFT_WAIT_S`` for it, so a
poll sees a verdict on the traffic it just sent. No verdict is given until the window is full:
small windows are where false alarms come from.

The alarm has hysteresis: a feature starts firing when one of its tests passes the corrected level
``alpha / n_tests`` and stops only when all its tests look clean at ``clear_p`` (1%). With a
sliding window the drifted rows leave one by one, so without it a half-flushed window flickers
on and off around the threshold.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

from fraud import drift_worker
from fraud.features import FeatureSpec
from fraud.reqlog import utc_iso

log = logging.getLogger("fraud.drift")


class DriftMonitor:
    def __init__(self, spec: FeatureSpec, reference_csv: str, window: int, eval_every: int, alpha: float,
                 wait_s: float, clear_p: float = 0.01,
                 on_result: Callable[[str], None] | None = None) -> None:
        self.spec = spec
        self.reference_csv = reference_csv
        self.size = window
        self.eval_every = max(1, eval_every)
        self.alpha = alpha
        self.wait_s = wait_s
        self.clear_p = clear_p
        self.on_result = on_result or (lambda _result: None)  # "ok" / "drift" / "error", for a counter
        self._firing: set[str] = set()
        self._rows: deque[tuple[Any, ...]] = deque(maxlen=window)
        self.rows_seen = 0
        self._submitted_at_rows = 0
        self._running: asyncio.Future | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._latest: dict[str, Any] | None = None
        self._latest_at: float | None = None
        self._error: str | None = None
        self.evaluations = 0

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pool = self._new_pool()
        # Start the worker now: importing Evidently takes seconds, and must not delay the first verdict.
        self._pool.submit(int, 0)

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=drift_worker.init,
            initargs=(self.spec.as_dict(), self.reference_csv, self.alpha, self.size))

    def worker_pids(self) -> list[int]:
        pool = self._pool
        procs = getattr(pool, "_processes", None) or {}
        return sorted(procs)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop the worker process and wait for it (bounded): no orphan outlives the server."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        procs = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout_s
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)

    # --- ingestion (event loop thread) ----------------------------------------------------------
    def add(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows.extend(rows)
        self.rows_seen += len(rows)
        if self._running is None and self.full and self.rows_seen - self._submitted_at_rows >= self.eval_every:
            self._submit()

    @property
    def full(self) -> bool:
        return len(self._rows) >= self.size

    @property
    def _evaluated_rows(self) -> int:
        return -1 if self._latest is None else int(self._latest["evaluated_rows_seen"])

    def _submit(self) -> asyncio.Future | None:
        if self._pool is None or self._loop is None:
            return None
        snapshot, seen = list(self._rows), self.rows_seen
        self._submitted_at_rows = seen
        try:
            fut = self._loop.run_in_executor(self._pool, drift_worker.evaluate, snapshot, seen)
        except (BrokenProcessPool, RuntimeError) as exc:
            self._worker_failed(exc)
            return None
        self._running = fut
        fut.add_done_callback(self._done)
        return fut

    def _done(self, fut: asyncio.Future) -> None:
        if self._running is fut:
            self._running = None
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            self.on_result("error")
            if isinstance(exc, BrokenProcessPool):
                self._worker_failed(exc)
            else:
                self._error = f"{type(exc).__name__}: {exc}"
                log.error("drift evaluation failed: %s", self._error)
            return
        result = fut.result()
        self.evaluations += 1
        if result["evaluated_rows_seen"] < self._evaluated_rows:
            return  # an older snapshot finishing late never overwrites a newer verdict
        was = self._latest["features"] if self._latest and self._latest["drift"] else []
        self._apply_hysteresis(result)
        self.on_result("drift" if result["drift"] else "ok")
        self._latest, self._latest_at, self._error = result, time.time(), None
        if result["features"] != was:
            log.warning("drift %s at row %d: features %s", "ALARM" if result["drift"] else "cleared",
                        result["evaluated_rows_seen"], result["features"] or "none")

    def _apply_hysteresis(self, result: dict[str, Any]) -> None:
        """Features already firing keep firing until every one of their tests has p >= clear_p."""
        details = result["details"]

        def min_p(name: str) -> float:
            p = details[name]["min_p_value"]
            return 1.0 if p is None else float(p)

        held = {f for f in self._firing if f in details and f not in result["features"] and min_p(f) < self.clear_p}
        for name in held:
            details[name]["drift"] = True
            details[name]["held"] = f"still firing until all its p-values are >= {self.clear_p}"
        self._firing = set(result["features"]) | held
        result["features"] = sorted(self._firing, key=min_p)
        result["drift"] = bool(self._firing)

    def _worker_failed(self, exc: BaseException) -> None:
        self._error = f"drift worker died: {type(exc).__name__}: {exc}"
        log.error("%s; starting a new one", self._error)
        self._running = None
        old, self._pool = self._pool, None
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()

    # --- verdict ----------------------------------------------------------------------------------
    async def fresh(self) -> dict[str, Any]:
        """The latest verdict, after waiting (bounded) for one that covers every row seen so far."""
        if self._loop is None:
            return self.describe()
        deadline = self._loop.time() + self.wait_s
        while self.full and self._evaluated_rows < self.rows_seen:
            fut = self._running or self._submit()
            remaining = deadline - self._loop.time()
            if fut is None or remaining <= 0:
                break
            try:
                await asyncio.wait_for(asyncio.shield(fut), remaining)
            except asyncio.TimeoutError:
                break
            except Exception:  # noqa: BLE001 - recorded by the done callback
                break
            await asyncio.sleep(0)  # let the done callback run before re-checking
        return self.describe()

    def describe(self) -> dict[str, Any]:
        latest = self._latest
        status = "ok" if latest else ("error" if self._error else "warming_up")
        out: dict[str, Any] = {
            "drift": bool(latest and latest["drift"]),
            "features": list(latest["features"]) if latest else [],
            "status": status,
            "rows_seen": self.rows_seen,
            "window_size": self.size,
            "window_rows": len(self._rows),
            "evaluated_rows_seen": latest["evaluated_rows_seen"] if latest else None,
            "stale_rows": (self.rows_seen - latest["evaluated_rows_seen"]) if latest else None,
            "evaluated_at": utc_iso(self._latest_at) if self._latest_at else None,
            "evaluations": self.evaluations,
            "worker_pids": self.worker_pids(),
            "method": {"numeric": "two-sample Kolmogorov-Smirnov (Evidently ValueDrift ks)",
                       "categorical": "two-sample chi-square on known categories (Evidently ValueDrift, "
                                      "registered chisquare_2sample) + unseen-category share (binomial)",
                       "nullable": "null rate (Fisher exact)",
                       "correction": "Bonferroni", "alpha_family": self.alpha,
                       "alpha_per_test": latest["alpha_per_test"] if latest else None,
                       "eval_every_rows": self.eval_every, "clear_p": self.clear_p},
        }
        if not latest:
            out["message"] = (f"collecting rows: {len(self._rows)} of {self.size} before the first evaluation"
                              if status == "warming_up" else self._error)
        else:
            out["details"] = latest["details"]
            out["engine"] = latest.get("engine")
            out["duration_ms"] = latest.get("duration_ms")
        if self._error:
            out["error"] = self._error
        return out
