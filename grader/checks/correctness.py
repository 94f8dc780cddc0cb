"""Predictions on hidden rows must match the reference model's, within tolerance."""

from __future__ import annotations

import numpy as np

from grader.checks.spec import CheckSpec, items
from grader.evidence import CorrectnessEvidence
from grader.results import Outcome
from grader.session import Deadline, GradingSession
from harness.traffic.baseline import baseline_records

#: Hidden probe rows for correctness, and how many go in one request.
CORRECTNESS_ROWS = 200
BATCH = 25

ITEMS = items("correctness", predictions_match="Predictions match the reference model on hidden probe rows")
(PREDICTIONS_MATCH,) = ITEMS


def _worst_rows(rows: list[dict], got: np.ndarray, want: np.ndarray, k: int = 3) -> list[dict]:
    order = np.argsort(-np.abs(got - want))[:k]
    return [{"row": rows[i], "served": float(got[i]), "reference": float(want[i])} for i in order]


def match_credit(share: float, zero_share: float, full_share: float) -> float:
    """Credit for a match share: 0 at or below ``zero_share``, 1 from ``full_share``, linear between,
    so one row more or less never moves the score by more than its share of the ramp."""
    return min(1.0, max(0.0, (share - zero_share) / (full_share - zero_share)))


def run(s: GradingSession, deadline: Deadline) -> list[Outcome]:
    """Send hidden in-distribution rows (nulls included) and compare to the reference model."""
    rows = baseline_records(CORRECTNESS_ROWS, s.seed + 11)
    served: list[float] = []
    for start in range(0, len(rows), BATCH):
        deadline.check()
        rid = s.request_id("correctness")
        out = s.client.predict(rows[start:start + BATCH], request_id=rid)
        s.remember_request_id(rid)
        if not out.ok or out.predictions is None:
            return [Outcome.failed(PREDICTIONS_MATCH, "a prediction request on valid input failed",
                                   failing_request=out.evidence(), rows_checked=len(served))]
        served.extend(out.predictions)
    got = np.asarray(served, dtype=float)
    atol = s.config.thresholds.correctness_atol
    shares = {}
    for version in ("v2", "v1"):
        want = s.reference.predict(version, rows)
        shares[version] = float(np.mean(np.abs(got - want) <= atol))
    best = max(shares, key=shares.__getitem__)
    want = s.reference.predict(best, rows)
    max_err = float(np.max(np.abs(got - want)))
    evidence = {"rows": len(rows), "atol": atol, "match_share": {k: round(v, 4) for k, v in shares.items()},
                "compared_to": best, "max_abs_error": max_err, "rows_with_nulls":
                sum(1 for r in rows if any(v is None for v in r.values()))}
    need = s.config.thresholds.correctness_min_match
    if shares[best] >= need:
        note = "" if best == "v2" else " (v1 is live: the rollout is scored under deployment)"
        return [Outcome.passed(PREDICTIONS_MATCH, f"{shares[best]:.1%} of {len(rows)} hidden rows match the "
                               f"reference {best} within {atol}{note}", **evidence)]
    evidence["worst_rows"] = _worst_rows(rows, got, want)
    # Mostly-right preprocessing (a rare case mishandled) earns most of the credit; predictions
    # that match no more often than a systematic bug would earn none.
    zero = s.config.thresholds.correctness_zero_share
    evidence["credit_ramp"] = {"zero_at_or_below": zero, "full_from": need}
    return [Outcome.partial(PREDICTIONS_MATCH, match_credit(shares[best], zero, need),
                            f"{shares[best]:.1%} of {len(rows)} hidden rows match the reference {best} within "
                            f"{atol} (full credit from {need:.0%}, none at or below {zero:.0%}); "
                            f"largest error {max_err:.4f}", **evidence)]


SPEC = CheckSpec(section="correctness", title="Prediction correctness", items=ITEMS, run=run, evidence=CorrectnessEvidence,
                 timeout_s=lambda c: c.timeouts.correctness)
