"""Unit tests of the framework-free parts: validation, preprocessing, drift statistics, alerting.

    pip install pytest && python -m pytest tests -q        (from the repository root)
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from scipy import stats

from fraud_kserve import settings
from fraud_kserve.alerts import Alerter
from fraud_kserve.drift_stats import (Window, binom_at_least, chi2_homogeneity, evaluate, fisher_exact_2x2,
                                      ks_two_sample, load_reference)
from fraud_kserve.preprocessing import check_recipe, transform
from fraud_kserve.schema import InvalidRequest, spec, validate_instances

ROW = {"amount": 42.5, "account_age_days": 730, "distance_from_home_km": 3.2, "transactions_last_24h": 1,
       "hour_of_day": 14, "merchant_category": "grocery", "channel": "pos", "card_type": "debit"}


@pytest.mark.parametrize("change", [
    {"amount": "12"}, {"amount": True}, {"amount": None}, {"amount": -1}, {"amount": float("inf")},
    {"hour_of_day": 24}, {"hour_of_day": 3.5}, {"merchant_category": 7}, {"channel": None}, {"colour": 3},
])
def test_invalid_rows_are_rejected(change: dict) -> None:
    with pytest.raises(InvalidRequest):
        validate_instances([{**ROW, **change}])


def test_valid_drift_is_not_an_error() -> None:
    batch = validate_instances([{**ROW, "distance_from_home_km": None, "merchant_category": "crypto_exchange",
                                 "transactions_last_24h": 3.0}])
    assert batch.n == 1 and np.isnan(batch.columns["distance_from_home_km"][0])
    with pytest.raises(InvalidRequest):
        validate_instances([])
    with pytest.raises(InvalidRequest):
        validate_instances([{k: v for k, v in ROW.items() if k != "amount"}])


def test_preprocessing_matches_the_recipe() -> None:
    recipe = json.loads((settings.MODELS_DIR / "v2" / "preprocessing.json").read_text())
    check_recipe(recipe, spec().order)
    batch = validate_instances([ROW, {**ROW, "distance_from_home_km": None, "channel": "moto"}])
    x = transform(recipe, batch.columns)
    assert x.dtype == np.float32 and x.shape == (2, recipe["n_inputs"])
    amount = recipe["numeric"][0]
    assert x[0, 0] == np.float32((np.log1p(42.5) - amount["mean"]) / amount["std"])
    distance = next(i for i, f in enumerate(recipe["numeric"]) if f["name"] == "distance_from_home_km")
    d = recipe["numeric"][distance]
    assert x[1, distance] == np.float32((np.log1p(d["impute_median"]) - d["mean"]) / d["std"])
    channel = [i for i, name in enumerate(recipe["input_vector"]) if name.startswith("channel=")]
    assert x[1, channel].sum() == 0  # unknown category: all zeros


def test_statistics_agree_with_scipy_stats() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 500).round(1), np.sort(rng.normal(0.1, 1, 5000).round(1))
    d, p = ks_two_sample(a, b)
    ref = stats.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue, rel=0.1)
    table = np.array([[150, 100, 60, 90, 35, 30, 65], [1200, 1000, 600, 900, 350, 300, 650]])
    assert chi2_homogeneity(table) == pytest.approx(stats.chi2_contingency(table, correction=False)[1])
    for k in (0, 3, 20):
        assert fisher_exact_2x2(k, 500 - k, 50, 4950) == pytest.approx(
            stats.fisher_exact([[k, 500 - k], [50, 4950]])[1], rel=1e-6)
    assert binom_at_least(5, 500, 0.0006) == pytest.approx(stats.binom.sf(4, 500, 0.0006))


def _feed(window: Window, rows: list[dict]) -> None:
    for i in range(0, len(rows), 10):
        batch = validate_instances(rows[i:i + 10])
        window.add(batch.columns, batch.n)


def test_monitor_names_the_drifted_feature_and_holds_it() -> None:
    fs = spec()
    ref = load_reference(settings.REFERENCE_CSV, fs)
    sample = [json.loads(line) for line in (settings.ROOT / "public_traffic" / "baseline.jsonl").open()][:500]
    if len(sample) < 500:
        pytest.skip("public_traffic/baseline.jsonl has fewer than 500 rows")
    window = Window(fs, 500)
    _feed(window, sample)
    quiet = evaluate(window.snapshot(), ref, fs, 1e-4, window.rows_seen)
    assert not quiet["drift"]
    _feed(window, [{**r, "amount": round(r["amount"] * 100, 2)} for r in sample[:200]])  # cents
    loud = evaluate(window.snapshot(), ref, fs, 1e-4, window.rows_seen)
    assert loud["features"] == ["amount"]
    held = evaluate(window.snapshot(), ref, fs, 1e-4, window.rows_seen, {"amount"}, 1e-2)
    assert held["features"] == ["amount"]


def test_alerter_sends_firing_then_resolved() -> None:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    alerter = Alerter(f"http://127.0.0.1:{server.server_address[1]}/alerts", resend_s=3600)
    alerter.start()
    try:
        alerter.update({"amount": {"summary": "x"}})
        alerter.update({"amount": {"summary": "y"}})  # still firing: no new message
        deadline = time.monotonic() + 5
        while alerter.pending() and time.monotonic() < deadline:
            time.sleep(0.01)
        alerter.update({})
        alerter.stop(flush_s=5)
    finally:
        server.shutdown()
    statuses = [(p["status"], [(a["labels"]["feature"], a["status"]) for a in p["alerts"]]) for p in received]
    assert statuses[0] == ("firing", [("amount", "firing")])
    assert statuses[-1] == ("resolved", [("amount", "resolved")])
    assert len(received) == 2 and all(p["version"] == "4" for p in received)


def test_alerter_sends_only_the_latest_state() -> None:
    """Level-triggered: a state that changed twice before it could be sent is sent once, as it is now."""
    alerter = Alerter(None)  # no receiver: deliveries are logged instead
    events: list[dict] = []
    alerter.on_event = events.append
    alerter.update({"amount": {}})
    alerter.update({})
    alerter.start()
    alerter.stop(flush_s=2)
    assert [e["alerts"] for e in events] == [{"amount": "resolved"}]
