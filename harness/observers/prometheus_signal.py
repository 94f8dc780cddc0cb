"""Prometheus drift signal: the grader scrapes ``serving.metrics_path`` and reads a gauge.

Any sample of ``drift.prometheus_metric`` with a value > 0 means firing; the ``feature_label``
values of those samples are the blamed features. So both shapes work:
``takehome_drift_detected 1`` (one unlabelled gauge) and
``takehome_feature_drift{feature="amount"} 1`` (one series per feature).

A labelled gauge that was never set is exposed with no samples (or not at all); that reads as
"not firing", not as an error: in Prometheus an absent series means no alert. The reading's
``raw`` still says whether the metric was present, so a misspelt metric name shows in the report.
"""

from __future__ import annotations

import math
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from harness.limits import DRIFT_READ_DEADLINE_S
from harness.observers.base import DriftReading, HttpPollingObserver, excerpt

_MAX_SAMPLES_KEPT = 20  # samples of the metric quoted in a reading


def _matches(metric: str, family_name: str, sample_name: str) -> bool:
    if sample_name == metric:
        return True
    # The parser strips "_total" from counter family names; accept the family name for the value
    # sample, but never "_created" / "_bucket" style companions that are not the signal itself.
    return family_name == metric and sample_name in (metric, metric + "_total")


def read_metric(text: str, metric: str, feature_label: str) -> tuple[bool, frozenset[str], dict[str, Any]]:
    """Parse exposition ``text``; return (firing, features, raw excerpt). Raises ValueError on bad text."""
    firing = False
    features: set[str] = set()
    present = False
    samples: list[dict[str, Any]] = []
    for family in text_string_to_metric_families(text):
        family_hit = family.name == metric or family.name + "_total" == metric
        present = present or family_hit
        for sample in family.samples:
            if not _matches(metric, family.name, sample.name):
                continue
            present = True
            value = float(sample.value)
            if len(samples) < _MAX_SAMPLES_KEPT:
                samples.append({"labels": dict(sample.labels), "value": value})
            if not math.isnan(value) and value > 0:
                firing = True
                label = sample.labels.get(feature_label)
                if label:
                    features.add(label)
    return firing, frozenset(features), {"metric": metric, "metric_present": present, "samples": samples}


class PrometheusDriftObserver(HttpPollingObserver):
    """Scrape ``base_url + metrics_path`` and read ``metric``."""

    def __init__(self, base_url: str, metrics_path: str, metric: str, feature_label: str = "feature",
                 timeout_s: float = DRIFT_READ_DEADLINE_S) -> None:
        super().__init__(base_url.rstrip("/") + metrics_path, timeout_s)
        self.metric = metric
        self.feature_label = feature_label

    def describe(self) -> str:
        return f"prometheus {self.url} metric {self.metric!r} (feature label {self.feature_label!r})"

    def poll(self) -> DriftReading:
        resp, failed = self.fetch()
        if failed is not None:
            return failed
        assert resp is not None  # fetch() returns one of the two
        if resp.status != 200:
            return DriftReading.failed(f"GET {self.url} answered HTTP {resp.status}",
                                       {"status": resp.status, "body": excerpt(resp.text)})
        try:
            firing, features, raw = read_metric(resp.text, self.metric, self.feature_label)
        except Exception as exc:  # noqa: BLE001 - the parser raises assorted errors on malformed text
            return DriftReading.failed(f"{self.url} is not Prometheus exposition text: {exc}",
                                       {"status": resp.status, "body": excerpt(resp.text, 500)})
        raw["status"] = resp.status
        return DriftReading(firing=firing, features=features, ok=True, raw=raw)
