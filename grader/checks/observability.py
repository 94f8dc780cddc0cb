"""Metrics that parse as Prometheus exposition, request ids the grader sent found in the logs, and
requests replayed from what the logs recorded."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

from grader.checks.spec import CheckSpec, items
from grader.evidence import ObservabilityEvidence
from grader.results import Outcome
from grader.session import Deadline, GradingSession
from harness.request_log import logged_request, records_for
from harness.traffic.baseline import baseline_records

#: How many of the grader's request ids to look for in the candidate's logs.
SAMPLE_IDS = 8
#: Logs may be written asynchronously: give them this long to land.
LOG_FLUSH_WAIT_S = 2.0
_LOG_POLL_S = 0.25

#: Requests the replay item sends, finds in the logs and replays, and the rows each carries.
REPLAY_REQUESTS = 3
REPLAY_ROWS = 4

ITEMS = items("observability", metrics_endpoint="Prometheus metrics endpoint",
              request_id_logged="Request id sent by the grader appears in the logs",
              request_replay="A request replayed from its log record gets the predictions that were served")
METRICS_ENDPOINT, REQUEST_ID_LOGGED, REQUEST_REPLAY = ITEMS


class _Logs:
    """The candidate's logs, read again only while what a check needs is not in them yet.

    One flush wait for the whole section: the ids and the replay records are looked for in the
    same reads, so a service without logs costs the wait once, not once per item."""

    def __init__(self, s: GradingSession, wait_s: float = LOG_FLUSH_WAIT_S) -> None:
        self.s = s
        self.end = s.clock.monotonic() + wait_s
        self.text = s.runtime.logs()

    def until(self, enough: Callable[[str], bool]) -> str:
        """The logs once ``enough(logs)`` holds, or as they are when the flush wait is over."""
        while not enough(self.text) and self.s.clock.monotonic() < self.end:
            self.s.clock.sleep(_LOG_POLL_S)
            self.text = self.s.runtime.logs()
        return self.text


@dataclass
class _Sent:
    request_id: str
    rows: list[dict[str, Any]]
    served: list[float] | None
    failure: dict[str, Any] | None = None


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


def check_request_ids(s: GradingSession, reader: _Logs | None = None) -> Outcome:
    """Look for a sample of the request ids the grader sent (from every phase) in the candidate's logs."""
    ids = list(dict.fromkeys(s.sent_request_ids))
    if not ids:
        return Outcome.skipped(REQUEST_ID_LOGGED, "no request ids were sent (earlier phases failed)")
    rng = random.Random(s.seed)
    sample = ids if len(ids) <= SAMPLE_IDS else rng.sample(ids, SAMPLE_IDS)
    # Logs may be buffered: read again until every id is there or the flush wait is over.
    logs = (reader or _Logs(s)).until(lambda text: all(rid in text for rid in sample))
    found = [rid for rid in sample if rid in logs]
    missing = [rid for rid in sample if rid not in logs]
    ev = {"header": s.contract.serving.request_id_header, "looked_for": sample, "found": found,
          "missing": missing, "log_bytes_searched": len(logs)}
    frac = len(found) / len(sample)
    if frac == 1.0:
        return Outcome.passed(REQUEST_ID_LOGGED, f"all {len(sample)} sampled request ids are in the logs", **ev)
    return Outcome.partial(REQUEST_ID_LOGGED, frac, f"{len(found)} of {len(sample)} sampled request ids "
                           f"(sent in {s.contract.serving.request_id_header}) found in the logs", **ev)


def send_replay_requests(s: GradingSession) -> list[_Sent]:
    """Send the requests the replay item will look for: a few in-distribution rows each."""
    rows = baseline_records(REPLAY_REQUESTS * REPLAY_ROWS, s.seed + 29)
    sent: list[_Sent] = []
    for start in range(0, len(rows), REPLAY_ROWS):
        rid = s.request_id("replay")
        chunk = rows[start:start + REPLAY_ROWS]
        out = s.client.predict(chunk, request_id=rid)
        s.remember_request_id(rid)
        ok = out.ok and out.predictions is not None
        sent.append(_Sent(rid, chunk, out.predictions if ok else None, None if ok else out.evidence()))
    return sent


def _replay_one(s: GradingSession, sent: _Sent, records: list[dict[str, Any]], atol: float) -> dict[str, Any]:
    """Find ``sent``'s record, send its logged inputs again, compare with what was served."""
    row: dict[str, Any] = {"request_id": sent.request_id, "rows_sent": len(sent.rows), "records": len(records)}
    logged = logged_request(sent.request_id, records)
    if logged is None:
        return {**row, "result": "no JSON log record holds this request id"}
    if logged.rows is None:
        return {**row, "result": f"record found, but no inputs the grader can read ({logged.where})",
                "record_keys": logged.keys}
    row.update(inputs=logged.where, rows_logged=len(logged.rows))
    if "model_version" in logged.record:
        row["logged_version"] = str(logged.record["model_version"])[:40]
    out = s.client.predict(logged.rows, request_id=f"{sent.request_id}-replay")
    if not out.ok or out.predictions is None:
        return {**row, "result": f"the replayed request failed: {out.error or f'HTTP {out.status}'}",
                "replay_request": out.evidence()}
    served = sent.served or []
    if len(out.predictions) != len(served):
        return {**row, "result": f"replay answered {len(out.predictions)} predictions, {len(served)} were served"}
    diff = max((abs(a - b) for a, b in zip(out.predictions, served)), default=0.0)
    row["max_abs_diff"] = round(diff, 8)
    return {**row, "result": "same predictions" if diff <= atol else f"predictions differ by up to {diff:.4g}",
            "match": diff <= atol}


def check_request_replay(s: GradingSession, sent: list[_Sent], reader: _Logs, deadline: Deadline) -> Outcome:
    """Find the records of the requests in ``sent`` by id, replay their logged inputs, compare."""
    failed = next((x for x in sent if x.served is None), None)
    if failed is not None:
        return Outcome.failed(REQUEST_REPLAY, "a prediction request on valid input failed, so there is nothing "
                              "to replay", failing_request=failed.failure)
    ids = [x.request_id for x in sent]

    def all_readable(text: str) -> bool:
        found = records_for(text, ids)
        return all((got := logged_request(rid, found[rid])) is not None and got.rows is not None for rid in ids)

    logs = reader.until(all_readable)
    records = records_for(logs, ids)
    atol = s.config.thresholds.correctness_atol
    replayed = []
    for x in sent:
        deadline.check()
        replayed.append(_replay_one(s, x, records[x.request_id], atol))
    matched = sum(1 for r in replayed if r.get("match"))
    ev = {"replayed": replayed, "atol": atol}
    if matched == len(sent):
        return Outcome.passed(REQUEST_REPLAY, f"all {len(sent)} requests replayed from their log records got the "
                              f"predictions that were served (within {atol})", **ev)
    first = next(r for r in replayed if not r.get("match"))
    return Outcome.partial(REQUEST_REPLAY, matched / len(sent), f"{matched} of {len(sent)} requests replayed from "
                           f"their log records got the served predictions; {first['request_id']}: {first['result']}",
                           **ev)


def run(s: GradingSession, deadline: Deadline) -> list[Outcome]:
    """The three observability items. The replay requests go first, so their log records have
    the metrics read's time to land."""
    deadline.check()
    sent = send_replay_requests(s)
    metrics = check_metrics(s)
    reader = _Logs(s)
    return [metrics, check_request_ids(s, reader), check_request_replay(s, sent, reader, deadline)]


SPEC = CheckSpec(section="observability", title="Observability", items=ITEMS, run=run, evidence=ObservabilityEvidence,
                 timeout_s=lambda c: c.timeouts.robustness)
