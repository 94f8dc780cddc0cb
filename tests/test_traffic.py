"""Traffic: JSON-ready rows, drift scenarios and their ground truth, the public sample, the wire
protocol and the replayer (against a small local server)."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from grader.config import FALLBACK_SEED
from harness.protocol import (ProtocolError, V2_DATATYPES, decode_predictions, decode_request, encode_predictions,
                              encode_request)
from harness.traffic.baseline import baseline_records, to_records
from harness.traffic.public import PUBLIC_SEED, write_public_sample
from harness.traffic.replay import Replayer
from harness.traffic.scenarios import SCENARIO_KINDS, make_scenarios, scenario_frames, scenario_records
from reference_model.data import generate_features
from fakes import StubService
from reference_model.schema import (CATEGORICAL_FEATURES, FEATURES, INTEGER_FEATURES, NULLABLE_FEATURES,
                                    NUMERIC_FEATURES, NUMERIC_RANGES)

ROWS = 500
REQUIRED_KINDS = {"mean_shift", "unit_change", "new_category", "category_mix", "missing_spike", "frozen_feature"}


# --- to_records / baseline -------------------------------------------------------------------

def test_to_records_is_json_ready_and_keeps_full_precision() -> None:
    df = pd.DataFrame({"amount": [0.1 + 0.2, 1 / 3], "distance_from_home_km": [np.nan, 2.5],
                       "transactions_last_24h": np.array([3, 4], dtype=np.int64),
                       "hour_of_day": [5.0, 6.0], "channel": ["pos", "online"]})
    rows = to_records(df)
    assert rows[0]["amount"] == 0.1 + 0.2 and rows[1]["amount"] == 1 / 3  # no rounding
    assert rows[0]["distance_from_home_km"] is None
    assert type(rows[0]["transactions_last_24h"]) is int and type(rows[0]["hour_of_day"]) is int
    back = json.loads(json.dumps(rows, allow_nan=False))
    assert back == rows and back[1]["amount"] == 1 / 3


def test_baseline_records_match_the_generator_exactly() -> None:
    rows = baseline_records(300, 5)
    frame = generate_features(300, 5)
    assert len(rows) == 300 and all(list(r) == FEATURES for r in rows)
    assert [r["amount"] for r in rows] == frame["amount"].tolist()
    nulls = sum(r["distance_from_home_km"] is None for r in rows)
    assert nulls == int(frame["distance_from_home_km"].isna().sum())
    assert baseline_records(300, 5) == rows and baseline_records(300, 6) != rows


# --- scenarios -------------------------------------------------------------------------------

def _p_value(kind: str, feature: str, drifted: pd.DataFrame, reference: pd.DataFrame) -> float:
    """The test a sane monitor would run for this kind of feature."""
    if kind == "missing_spike":
        a, b = int(drifted[feature].isna().sum()), int(reference[feature].isna().sum())
        return float(stats.chi2_contingency([[a, len(drifted) - a], [b, len(reference) - b]])[1])
    if feature in CATEGORICAL_FEATURES:
        cats = sorted(set(drifted[feature]) | set(reference[feature]))
        table = [[int((frame[feature] == c).sum()) for c in cats] for frame in (drifted, reference)]
        return float(stats.chi2_contingency(table)[1])
    return float(stats.ks_2samp(drifted[feature].dropna(), reference[feature].dropna()).pvalue)


def test_scenario_kinds_cover_the_required_ones() -> None:
    assert REQUIRED_KINDS <= set(SCENARIO_KINDS)
    assert all(isinstance(v, str) and v for v in SCENARIO_KINDS.values())


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 17, 12345])
def test_each_scenario_changes_exactly_its_ground_truth_features(seed: int) -> None:
    reference = generate_features(ROWS, 424242)  # an independent in-distribution sample
    for sc in make_scenarios(sorted(SCENARIO_KINDS), seed):
        before, after = scenario_frames(sc, ROWS, seed)
        assert len(sc.features) == 1 and sc.features[0] in FEATURES, sc
        feature = sc.features[0]
        # the drifted feature differs strongly from the training distribution...
        assert _p_value(sc.kind, feature, after, reference) < 1e-6, sc
        # ...and from the very rows it was applied to, while every other column is untouched
        assert not before[feature].equals(after[feature]), sc
        for column in FEATURES:
            if column != feature:
                pd.testing.assert_series_equal(before[column], after[column], check_exact=True)
        assert list(after.columns) == FEATURES and list(after.dtypes) == list(before.dtypes), sc


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 17, 12345])
def test_drifted_rows_stay_valid_input(seed: int) -> None:
    """Drift is not bad input: ranges, integral integers and nulls only where nullable."""
    for sc in make_scenarios(sorted(SCENARIO_KINDS), seed):
        for row in scenario_records(sc, 200, seed):
            assert list(row) == FEATURES
            for name in NUMERIC_FEATURES:
                value = row[name]
                if value is None:
                    assert name in NULLABLE_FEATURES, (sc.name, name)
                    continue
                lo, hi = NUMERIC_RANGES[name]
                assert lo <= value <= hi and math.isfinite(value), (sc.name, name, value)
                if name in INTEGER_FEATURES:
                    assert type(value) is int, (sc.name, name, value)
            for name in CATEGORICAL_FEATURES:
                assert isinstance(row[name], str)
                if sc.kind != "new_category" or name not in sc.features:
                    assert row[name] in CATEGORICAL_FEATURES[name], (sc.name, name, row[name])


def test_scenarios_are_deterministic_per_seed_and_order_independent() -> None:
    kinds = sorted(SCENARIO_KINDS)
    assert make_scenarios(kinds, 99) == make_scenarios(kinds, 99)
    first = make_scenarios(kinds, 99)[0]
    assert scenario_records(first, 50, 7) == scenario_records(make_scenarios(kinds, 99)[0], 50, 7)
    assert scenario_records(first, 50, 7) != scenario_records(first, 50, 8)
    by_kind = {sc.kind: sc for sc in make_scenarios(kinds, 99)}
    assert {sc.kind: sc for sc in make_scenarios(list(reversed(kinds)), 99)} == by_kind
    assert [s.params for s in make_scenarios(kinds, 99)] != [s.params for s in make_scenarios(kinds, 100)]
    with pytest.raises(ValueError, match="unknown scenario"):
        make_scenarios(["mean_shift", "gremlins"], 1)


def test_seed_picks_the_target_so_it_cannot_be_hard_coded() -> None:
    targets = {make_scenarios(["mean_shift"], seed)[0].features for seed in range(30)}
    assert len(targets) >= 3
    for kind in ("unit_change", "new_category", "category_mix", "frozen_feature"):
        assert len({make_scenarios([kind], seed)[0].features for seed in range(30)}) > 1, kind


def test_scenario_ground_truth_is_documented_in_params() -> None:
    for sc in make_scenarios(sorted(SCENARIO_KINDS), 3):
        assert sc.params["feature"] == sc.features[0] and sc.description
        json.dumps(sc.as_dict(), allow_nan=False)  # plain data, for reports
    mix = make_scenarios(["missing_spike"], 3)[0]
    drifted = scenario_frames(mix, 2000, 3)[1]
    assert abs(drifted["distance_from_home_km"].isna().mean() - mix.params["null_rate"]) < 0.05


# --- public sample ---------------------------------------------------------------------------

def test_public_sample_is_deterministic_and_not_the_scoring_seed(tmp_path: Path) -> None:
    assert PUBLIC_SEED != FALLBACK_SEED
    first = write_public_sample(tmp_path / "a")
    second = write_public_sample(tmp_path / "b")
    names = sorted(p.name for p in first)
    assert names == ["README.md", "baseline.jsonl", "drift_mean_shift.jsonl", "scenarios.json"]
    for a, b in zip(sorted(first), sorted(second)):
        assert a.read_bytes() == b.read_bytes(), a.name
    truth = json.loads((tmp_path / "a" / "scenarios.json").read_text())
    (scenario,) = truth["scenarios"]
    assert scenario["kind"] == "mean_shift" and scenario["file"] == "drift_mean_shift.jsonl"
    read = {name: pd.DataFrame([json.loads(line) for line in (tmp_path / "a" / name).read_text().splitlines()])
            for name in ("baseline.jsonl", "drift_mean_shift.jsonl")}
    base, drift = read["baseline.jsonl"], read["drift_mean_shift.jsonl"]
    assert len(base) == 1000 and len(drift) == 1000 and list(base.columns) == FEATURES
    feature = scenario["features"][0]
    assert stats.ks_2samp(base[feature].dropna(), drift[feature].dropna()).pvalue < 1e-6
    other = next(f for f in NUMERIC_FEATURES if f != feature)
    assert stats.ks_2samp(base[other].dropna(), drift[other].dropna()).pvalue > 1e-3


# --- protocol --------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_protocol_round_trip(protocol: str) -> None:
    rows = baseline_records(20, 1)
    rows[3]["distance_from_home_km"] = None
    body = encode_request(rows, protocol)
    assert decode_request(body, protocol) == rows
    probs = [0.0, 0.25, 1.0, 1e-17]
    assert decode_predictions(encode_predictions(probs, protocol), protocol, 4) == probs


def test_v2_request_has_one_typed_tensor_per_feature_in_schema_order() -> None:
    rows = baseline_records(3, 2)
    rows[0]["distance_from_home_km"] = None
    payload = json.loads(encode_request(rows, "v2"))
    assert [t["name"] for t in payload["inputs"]] == FEATURES
    types = {t["name"]: t["datatype"] for t in payload["inputs"]}
    assert types["amount"] == "FP64" and types["hour_of_day"] == "INT64" and types["channel"] == "BYTES"
    assert types == V2_DATATYPES
    assert all(t["shape"] == [3] for t in payload["inputs"])
    dist = next(t for t in payload["inputs"] if t["name"] == "distance_from_home_km")
    assert dist["data"][0] is None
    assert json.loads(encode_request(rows, "v1")) == {"instances": rows}


def test_v2_encodes_the_robustness_probes_rows() -> None:
    row = baseline_records(1, 3)[0]
    missing = {k: v for k, v in row.items() if k != "amount"}
    names = [t["name"] for t in json.loads(encode_request([missing], "v2"))["inputs"]]
    assert "amount" not in names and len(names) == len(FEATURES) - 1
    extra = json.loads(encode_request([{**row, "favourite_colour": 3}], "v2"))["inputs"]
    assert extra[-1] == {"name": "favourite_colour", "shape": [1], "datatype": "INT64", "data": [3]}
    with pytest.raises(ProtocolError, match="row 1 has no 'amount'"):
        encode_request([row, missing], "v2")
    with pytest.raises(ProtocolError, match="not JSON-serialisable"):
        encode_request([{**row, "amount": float("nan")}], "v1")
    with pytest.raises(ProtocolError, match="unknown protocol"):
        encode_request([row], "v3")  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol,body,match", [
    ("v1", b"<html>oops</html>", "not JSON"),
    ("v1", b"[0.1, 0.2]", "must be a JSON object"),
    ("v1", b'{"outputs": [0.1, 0.2]}', "no 'predictions'"),
    ("v1", b'{"predictions": [0.1]}', "1 value.*for 2 instance"),
    ("v1", b'{"predictions": [[0.9, 0.1], [0.8, 0.2]]}', r"predictions\[0\].*not a \[p0, p1\] pair"),
    ("v1", b'{"predictions": [0.1, "0.2"]}', r"predictions\[1\]"),
    ("v1", b'{"predictions": [0.1, true]}', r"predictions\[1\]"),
    ("v1", b'{"predictions": [0.1, 1.5]}', "not a probability"),
    ("v1", b'{"predictions": 0.1}', "must be a list"),
    ("v2", b'{"predictions": [0.1, 0.2]}', "non-empty 'outputs'"),
    ("v2", b'{"outputs": [{"name": "p"}]}', "'data'"),
    ("v2", b'{"outputs": [{"data": [0.1, 0.9, 0.2, 0.8]}]}', "4 value"),
])
def test_decode_predictions_is_strict(protocol: str, body: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_predictions(body, protocol, 2)  # type: ignore[arg-type]


# --- replayer --------------------------------------------------------------------------------

@pytest.fixture
def predict_server() -> Iterator[StubService]:
    """A predict route answering 0.5 per row: 500 for any batch containing channel 'boom'."""
    with StubService(version=lambda rows: [0.5] * len(rows), request_id_header="X-Req", validate=False) as server:
        server.fail(500, b'{"error": "kaboom"}', path="/predict",
                    when=lambda req: any(r.get("channel") == "boom" for r in decode_request(req.body, "v1")))
        yield server


def rows_received(server: StubService) -> int:
    return sum(len(decode_request(r.body, "v1")) for r in server.predict_requests())


def test_replayer_counts_successes_and_errors(predict_server: StubService) -> None:
    rows = baseline_records(95, 4)
    for i in (12, 13, 57):  # requests 2 and 6 (10 rows each) fail
        rows[i]["channel"] = "boom"
    with Replayer(predict_server.url, "/predict", "v1", "X-Req", "run1", concurrency=4, timeout_s=5) as rep:
        stats = rep.send(rows, rows_per_request=10)
        again = rep.send(rows[:5], rows_per_request=10)
    assert (stats.rows, stats.requests, stats.ok, stats.errors) == (95, 10, 8, 2)
    assert stats.status_counts == {"200": 8, "500": 2}
    assert stats.first_error is not None and stats.first_error["status"] == 500
    assert stats.first_error["request_id"] == "run1-2" and "kaboom" in stats.first_error["body"]
    assert stats.request_ids == [f"run1-{i}" for i in range(1, 11)] and again.request_ids == ["run1-11"]
    assert sorted(r.request_id for r in predict_server.predict_requests()) == sorted(stats.request_ids + again.request_ids)
    assert rows_received(predict_server) == 100 and stats.wall_s > 0
    assert stats.merge(again).requests == 11 and stats.as_dict()["request_ids"]["count"] == 11


def test_replayer_never_raises_when_the_server_is_gone() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rep = Replayer(f"http://127.0.0.1:{port}", "/predict", "v2", "X-Request-ID", "gone", concurrency=2, timeout_s=2)
    try:
        stats = rep.send(baseline_records(30, 1), rows_per_request=10)
    finally:
        rep.close()
        rep.close()  # idempotent
    assert (stats.requests, stats.ok, stats.errors) == (3, 0, 3)
    assert stats.status_counts == {"connect_error": 3}
    assert stats.first_error is not None and stats.first_error["status"] is None and stats.first_error["error"]
    with pytest.raises(RuntimeError, match="closed"):
        rep.send([], 10)
