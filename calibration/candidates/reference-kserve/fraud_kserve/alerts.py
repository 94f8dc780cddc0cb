"""Drift alerts as Alertmanager webhook payloads, POSTed to ``$TAKEHOME_ALERT_WEBHOOK_URL``.

One alert per drifted feature, identified by its labels ``{alertname="FeatureDrift",
feature=<name>, service="fraud-model", severity="warning"}``; the labels never change between the
firing and the resolved message of the same alert (a receiver keys alerts by their label set), so
everything that varies (p-values, window statistics, the Evidently report path) goes in the
annotations.

The sender is *level-triggered*: the monitor states which features are drifting now
(:meth:`Alerter.update`), and one background thread makes the receiver agree, sending a firing
alert for each feature that started drifting and a resolved one for each that stopped. A failed
POST (short timeout) is retried with backoff, and only the latest state is ever sent, so a slow or
down receiver can delay alerts but never reorders them, never blocks a prediction and never loses
a "resolved". Like Alertmanager's ``repeat_interval``, the firing alerts are re-sent every
``WEBHOOK_RESEND_S`` seconds, so a receiver that restarted converges.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable

log = logging.getLogger("fraud_kserve.alerts")

ALERTNAME = "FeatureDrift"
SERVICE = "fraud-model"
_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "no end time" for firing alerts
_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


class Alerter:
    """Keeps the receiver's view of the FeatureDrift alerts equal to the monitor's verdict."""

    def __init__(self, url: str | None, feature_label: str = "feature", timeout_s: float = 2.0,
                 resend_s: float = 60.0, external_url: str = "", on_event: Callable[[dict[str, Any]], None] | None = None,
                 on_send: Callable[[str], None] | None = None) -> None:
        self.url = url
        self.feature_label = feature_label
        self.timeout_s = timeout_s
        self.resend_s = resend_s
        self.external_url = external_url
        self.on_event = on_event or (lambda _e: None)
        self.on_send = on_send or (lambda _r: None)
        self._cond = threading.Condition()
        self._alerts: dict[str, dict[str, Any]] = {}  # feature -> alert (status firing|resolved)
        self._generation: dict[str, int] = {}  # feature -> bumps on every status change
        self._delivered: dict[str, int] = {}  # feature -> generation the receiver has
        self._stop = False
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.failed = 0
        self.last_error: str | None = None

    # --- monitor side -------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="drift-alerter", daemon=True)
            self._thread.start()

    def stop(self, flush_s: float = 2.0) -> None:
        end = time.monotonic() + flush_s
        while self.pending() and time.monotonic() < end:  # try to deliver what is pending
            time.sleep(0.05)
        with self._cond:
            self._stop = True
            self._cond.notify_all()

    def pending(self) -> bool:
        with self._cond:
            return any(self._delivered.get(f) != g for f, g in self._generation.items())

    def update(self, drifting: dict[str, dict[str, str]]) -> None:
        """``drifting``: feature -> annotations, for every feature drifting now (others resolve)."""
        now = time.time()
        with self._cond:
            changed = False
            for feature, annotations in drifting.items():
                alert = self._alerts.get(feature)
                if alert is None or alert["status"] == "resolved":
                    self._alerts[feature] = {"status": "firing", "labels": self._labels(feature),
                                             "annotations": annotations, "startsAt": rfc3339(now),
                                             "endsAt": _ZERO_TIME}
                    self._bump(feature)
                    changed = True
                else:
                    alert["annotations"] = annotations  # details refresh; no new message needed
            for feature, alert in self._alerts.items():
                if alert["status"] == "firing" and feature not in drifting:
                    alert["status"] = "resolved"
                    alert["endsAt"] = rfc3339(now)
                    alert["annotations"] = {**alert["annotations"],
                                            "summary": f"{feature} is back in line with the training data"}
                    self._bump(feature)
                    changed = True
            if changed:
                self._cond.notify_all()

    def firing(self) -> list[str]:
        with self._cond:
            return sorted(f for f, a in self._alerts.items() if a["status"] == "firing")

    def describe(self) -> dict[str, Any]:
        with self._cond:
            return {"url": self.url, "firing": sorted(f for f, a in self._alerts.items() if a["status"] == "firing"),
                    "undelivered": sorted(f for f, g in self._generation.items() if self._delivered.get(f) != g),
                    "sent": self.sent, "failed": self.failed, "last_error": self.last_error}

    def _labels(self, feature: str) -> dict[str, str]:
        return {"alertname": ALERTNAME, self.feature_label: feature, "service": SERVICE, "severity": "warning"}

    def _bump(self, feature: str) -> None:
        self._generation[feature] = self._generation.get(feature, 0) + 1

    # --- sender thread ------------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        last_full = time.monotonic()
        while True:
            with self._cond:
                while not self._stop:
                    dirty = [f for f, g in self._generation.items() if self._delivered.get(f) != g]
                    resend = (time.monotonic() - last_full >= self.resend_s
                              and any(a["status"] == "firing" for a in self._alerts.values()))
                    if dirty or resend:
                        break
                    self._cond.wait(timeout=max(0.5, self.resend_s - (time.monotonic() - last_full)))
                if self._stop:
                    return
                if not dirty:  # periodic re-send of what is firing
                    dirty = [f for f, a in self._alerts.items() if a["status"] == "firing"]
                    last_full = time.monotonic()
                batch = {f: (self._generation[f], json.loads(json.dumps(self._alerts[f]))) for f in dirty}
            ok = self._post([alert for _, alert in batch.values()])
            with self._cond:
                if ok:
                    failures = 0
                    for feature, (gen, _) in batch.items():
                        self._delivered[feature] = max(self._delivered.get(feature, 0), gen)
                    continue
                failures += 1
                delay = _BACKOFF_S[min(failures - 1, len(_BACKOFF_S) - 1)]
                self._cond.wait(timeout=delay)  # a state change wakes us early: the new state is sent

    def _payload(self, alerts: list[dict[str, Any]]) -> dict[str, Any]:
        status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
        return {"version": "4", "groupKey": '{}:{alertname="FeatureDrift"}', "truncatedAlerts": 0,
                "status": status, "receiver": "takehome", "groupLabels": {"alertname": ALERTNAME},
                "commonLabels": {"alertname": ALERTNAME, "service": SERVICE},
                "commonAnnotations": {}, "externalURL": self.external_url,
                "alerts": [{**a, "generatorURL": self.external_url + "/drift",
                            "fingerprint": a["labels"][self.feature_label]} for a in alerts]}

    def _post(self, alerts: list[dict[str, Any]]) -> bool:
        summary = {a["labels"][self.feature_label]: a["status"] for a in alerts}
        if not self.url:
            self.on_event({"event": "alert", "delivered": False, "reason": "no TAKEHOME_ALERT_WEBHOOK_URL",
                           "alerts": summary})
            return True  # nothing to deliver to: the state is logged and visible on /drift and /metrics
        body = json.dumps(self._payload(alerts)).encode()
        req = urllib.request.Request(self.url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "fraud-kserve"})
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 - configured URL
                resp.read(1024)
                status = resp.status
        except urllib.error.HTTPError as exc:
            status, error = exc.code, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"
        else:
            error = None if 200 <= status < 300 else f"HTTP {status}"
        ms = round((time.perf_counter() - started) * 1000, 1)
        ok = error is None
        if ok:
            self.sent += 1
        else:
            self.failed += 1
            self.last_error = error
        self.on_send("ok" if ok else "error")
        self.on_event({"event": "alert", "delivered": ok, "alerts": summary, "status": status, "ms": ms,
                       **({"error": error} if error else {})})
        return ok
