"""The GitHub Actions workflows: valid against GitHub's workflow schema (SchemaStore's, as
vendored by check-jsonschema), and wired the way the grade-on-push promise needs."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted([*(REPO / ".github" / "workflows").glob("*.yml"),
                    *(REPO / "assignment" / "template" / ".github" / "workflows").glob("*.yml")])


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    if True in data:  # YAML 1.1 reads the key `on` as a boolean; GitHub reads YAML 1.2
        data["on"] = data.pop(True)
    return data


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "github-workflows.json"
    return jsonschema.Draft7Validator(json.loads(schema_file.read_text()))


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: str(p.relative_to(REPO)))
def test_workflow_matches_githubs_schema(path: Path, validator: jsonschema.Draft7Validator) -> None:
    problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(_load(path))]
    assert not problems, "\n".join(problems)


def test_the_schema_check_can_fail(validator: jsonschema.Draft7Validator) -> None:
    broken = copy.deepcopy(_load(REPO / ".github" / "workflows" / "grade.yml"))
    broken["jobs"]["grade"]["step"] = broken["jobs"]["grade"].pop("steps")  # a typo GitHub would refuse
    assert list(validator.iter_errors(broken))


def test_grade_on_push_takes_the_seed_from_a_secret_and_reports_on_the_commit() -> None:
    flow = _load(REPO / ".github" / "workflows" / "grade.yml")
    call = flow["on"]["workflow_call"]
    assert call["secrets"]["TAKEHOME_SCENARIO_SEED"]["required"] is True
    steps = flow["jobs"]["grade"]["steps"]
    grade = next(s for s in steps if s.get("id") == "grade")
    assert grade["env"]["TAKEHOME_SCENARIO_SEED"] == "${{ secrets.TAKEHOME_SCENARIO_SEED }}"
    assert "--min-score" in grade["run"]
    assert any("GITHUB_STEP_SUMMARY" in s.get("run", "") for s in steps)
    assert any(s.get("uses", "").startswith("actions/upload-artifact") for s in steps)
    assert any("junit.xml" in str(s.get("with", {})) for s in steps)
    submission = next(s for s in steps if s.get("name") == "Check out the submission")
    assert "REPO_TOKEN" in submission["with"]["token"]
    caller = _load(REPO / "assignment" / "template" / ".github" / "workflows" / "grade-on-push.yml")
    job = caller["jobs"]["grade"]
    assert job["uses"].endswith("/.github/workflows/grade.yml@main")
    assert "push" in caller["on"]
    assert job["secrets"]["TAKEHOME_SCENARIO_SEED"] == "${{ secrets.TAKEHOME_SCENARIO_SEED }}"
