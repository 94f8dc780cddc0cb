"""Traffic the grader replays: in-distribution rows, drift scenarios, the public sample, the replayer."""

from harness.traffic.baseline import baseline_records, to_records
from harness.traffic.scenarios import SCENARIO_KINDS, Scenario, make_scenarios, scenario_records

__all__ = ["SCENARIO_KINDS", "Scenario", "baseline_records", "make_scenarios", "scenario_records", "to_records"]
