"""Metrics that parse as Prometheus exposition, and request ids the grader sent found in the logs."""

from __future__ import annotations

import random

from grader.checks.spec import CheckSpec, items
from grader.evidence import ObservabilityEvidence
from grader.results import Outcome
from grader.session import Deadline, GradingSession

#: How many of the grader's request ids to look for in the candidate's logs.
SAMPLE_IDS = 8
#: Logs may be written asynchronously: give them this long to land.
LOG_FLUSH_WAIT_S = 2.0
_LOG_POLL_S = 0.25

ITEMS = items("observability", metrics_endpoint="Prometheus metrics endpoint",
              request_id_logged="Request id sent by the grader appears in the logs")
METRICS_ENDPOINT, REQUEST_ID_LOGGED = ITEMS


def check_metrics(s: GradingSession) -> Outcome:
    """GET the metrics path and parse it with prometheus_client."""
    path = s.contract.serving.metrics_path
    if not path:
        return Outcome.failed(METRICS_ENDPOINT, "takehome.yaml declares no serving.metrics_path")
    out = s.client.request("GET", path, keep_body=True)
    if not out.ok or out.body is None:
        return Outcome.failed(METRICS_ENDPOINT, f"GET {path} -> {out.status or out.error}", **out.evidence())
    from prometheus_client.parser import (
        text_string_to_metric_families,  # lazy: only needed here
    )

    try:
        families = list(text_string_to_metric_families(out.body.decode("utf-8", "replace")))
    except (ValueError, TypeError, IndexError) as exc:
        return Outcome.partial(METRICS_ENDPOINT, 0.25, f"GET {path} answers, but is not Prometheus "
                               f"exposition text: {exc}", excerpt=out.body_excerpt[:300])
    samples = sum(len(f.samples) for f in families)
    names = sorted(f.name for f in families)
    if samples == 0:
        return Outcome.partial(METRICS_ENDPOINT, 0.5, f"{path} parses but holds no samples", families=names)
    return Outcome.passed(METRICS_ENDPOINT, f"{len(families)} metric families, {samples} samples",
                          families=names[:40])


def check_request_ids(s: GradingSession) -> Outcome:
    """Look for a sample of the request ids the grader sent (from every phase) in the candidate's logs."""
    ids = list(dict.fromkeys(s.sent_request_ids))
    if not ids:
        return Outcome.skipped(REQUEST_ID_LOGGED, "no request ids were sent (earlier phases failed)")
    rng = random.Random(s.seed)
    sample = ids if len(ids) <= SAMPLE_IDS else rng.sample(ids, SAMPLE_IDS)
    # Logs may be buffered: read again until every id is there or the flush wait is over.
    end = s.clock.monotonic() + LOG_FLUSH_WAIT_S
    logs = s.runtime.logs()
    while any(rid not in logs for rid in sample) and s.clock.monotonic() < end:
        s.clock.sleep(_LOG_POLL_S)
        logs = s.runtime.logs()
    found = [rid for rid in sample if rid in logs]
    missing = [rid for rid in sample if rid not in logs]
    ev = {"header": s.contract.serving.request_id_header, "looked_for": sample, "found": found,
          "missing": missing, "log_bytes_searched": len(logs)}
    frac = len(found) / len(sample)
    if frac == 1.0:
        return Outcome.passed(REQUEST_ID_LOGGED, f"all {len(sample)} sampled request ids are in the logs", **ev)
    return Outcome.partial(REQUEST_ID_LOGGED, frac, f"{len(found)} of {len(sample)} sampled request ids "
                           f"(sent in {s.contract.serving.request_id_header}) found in the logs", **ev)


def run(s: GradingSession, deadline: Deadline) -> list[Outcome]:
    """Both observability items."""
    deadline.check()
    return [check_metrics(s), check_request_ids(s)]


SPEC = CheckSpec(section="observability", title="Observability", items=ITEMS, run=run, evidence=ObservabilityEvidence,
                 timeout_s=lambda c: c.timeouts.robustness)
