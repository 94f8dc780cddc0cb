"""The public traffic sample shipped to candidates for self-checks.

It comes from ``PUBLIC_SEED``, a fixed seed that is published with the assignment and is never
the seed of scored traffic (``grader.config.FALLBACK_SEED`` differs; a hiring team sets its own
private seed). Candidates can replay it to check that their monitor stays quiet on baseline
rows and fires on one drifted file; the scored scenarios use other kinds, targets and magnitudes.
Output is byte-for-byte deterministic, so the shipped copy can be regenerated and diffed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.traffic.baseline import baseline_records
from harness.traffic.scenarios import SCENARIO_KINDS, make_scenarios, scenario_records
from reference_model.data import derive_seed

#: Published with the assignment. Must never be used to score anyone.
PUBLIC_SEED = 31_415_926
PUBLIC_BASELINE_ROWS = 1_000
PUBLIC_DRIFT_ROWS = 1_000
PUBLIC_SCENARIO_KINDS: tuple[str, ...] = ("mean_shift",)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    lines = [json.dumps(row, allow_nan=False) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _readme(scenarios: list[dict[str, Any]], graded_kinds: list[str]) -> str:
    files = "\n".join(f"- `{s['file']}`: {s['rows']:,} rows, {s['kind']}: {s['description']} "
                      f"(drifted feature: {', '.join(s['features'])})" for s in scenarios)
    return f"""# Public traffic sample

Rows for checking your service and drift monitor yourself before you submit. Each line of a
`.jsonl` file is one instance: a JSON object with every feature (see `reference_data/schema.json`),
`distance_from_home_km` may be null. Send them as the grader does: in `{{"instances": [...]}}`
requests (protocol v1) or as one input tensor per feature (v2), about 10 rows per request.

- `baseline.jsonl`: {PUBLIC_BASELINE_ROWS:,} rows from the training distribution. Your monitor should stay quiet.
{files}
- `scenarios.json`: the ground truth of the drifted file(s): kind, the feature(s) that changed,
  and the parameters.

The grader replays other traffic, from a private seed: the drift kinds {', '.join(f'`{k}`' for k in graded_kinds)},
with other features and other magnitudes. Tuning your monitor to this file alone will not help; sizing
its windows and tests sensibly will.
"""


def write_public_sample(out_dir: Path, graded_kinds: list[str] | None = None) -> list[Path]:
    """Write baseline.jsonl, drift_<kind>.jsonl, scenarios.json and README.md; return their paths.

    ``graded_kinds`` are the scenario kinds the grader plays (its config's ``traffic.scenarios``),
    named in the README; every known kind when not given."""
    kinds = list(graded_kinds) if graded_kinds is not None else list(SCENARIO_KINDS)
    unknown = sorted(set(kinds) - set(SCENARIO_KINDS))
    if unknown:
        raise ValueError(f"unknown scenario kinds: {', '.join(unknown)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    baseline_path = out_dir / "baseline.jsonl"
    _write_jsonl(baseline_path, baseline_records(PUBLIC_BASELINE_ROWS, derive_seed(PUBLIC_SEED, "public-baseline")))
    written.append(baseline_path)
    truth: list[dict[str, Any]] = []
    for scenario in make_scenarios(list(PUBLIC_SCENARIO_KINDS), PUBLIC_SEED):
        path = out_dir / f"drift_{scenario.kind}.jsonl"
        _write_jsonl(path, scenario_records(scenario, PUBLIC_DRIFT_ROWS, PUBLIC_SEED))
        written.append(path)
        truth.append({**scenario.as_dict(), "file": path.name, "rows": PUBLIC_DRIFT_ROWS})
    scenarios_path = out_dir / "scenarios.json"
    scenarios_path.write_text(json.dumps({"seed": PUBLIC_SEED, "baseline": {"file": baseline_path.name,
                                                                          "rows": PUBLIC_BASELINE_ROWS},
                                          "scenarios": truth}, indent=2) + "\n", encoding="utf-8")
    written.append(scenarios_path)
    readme_path = out_dir / "README.md"
    readme_path.write_text(_readme(truth, kinds), encoding="utf-8")
    written.append(readme_path)
    return written
