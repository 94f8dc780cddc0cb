"""The grader's own measure of each scenario's shift: plain on drifted rows, absent on clean ones."""

from __future__ import annotations

from harness.traffic.baseline import baseline_records
from harness.traffic.scenarios import SCENARIO_KINDS, make_scenarios, scenario_records
from harness.traffic.shift_stats import P_THRESHOLD, measure_shift


def test_every_kind_is_measured_as_drift_on_its_rows_and_not_on_clean_rows() -> None:
    clean = baseline_records(300, 17)
    for sc in make_scenarios(list(SCENARIO_KINDS), 11):
        drifted = measure_shift(sc, scenario_records(sc, 100, 5))
        assert set(drifted) == set(sc.features), sc.name
        for stats in drifted.values():
            assert stats["drifted"] and stats["p_value"] < 1e-6 and stats["rows"] == 100, (sc.name, stats)
        quiet = measure_shift(sc, clean)
        assert all(s["p_value"] > P_THRESHOLD / 50 for s in quiet.values()), (sc.name, quiet)
    assert measure_shift(sc, []) == {}
