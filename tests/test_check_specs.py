"""The check registry: one spec per section, and everything else derived from it."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from grader.checks import registry
from grader.checks.spec import CheckSpec, items
from grader.config import ConfigError, DEFAULTS_PATH, load_config
from grader.evidence import DeploymentEvidence, Evidence
from grader.facts import FACT_NAMES, Facts
from grader.lifecycle import checked_outcomes
from grader.results import Outcome
from harness.errors import GraderFault


def _spec(section: str, *, needs: tuple[str, ...] = (), provides: tuple[str, ...] = (), **titles: str) -> CheckSpec:
    return CheckSpec(section=section, title=section, items=items(section, **(titles or {"a": "A"})),
                     timeout_s=lambda c: 1.0, run=lambda s, d: [], evidence=Evidence, needs=needs,
                     provides=provides)


def test_the_rubric_and_the_registry_name_the_same_sections_and_items_in_order() -> None:
    rubric = yaml.safe_load(DEFAULTS_PATH.read_text())["rubric"]
    assert list(rubric) == [s.section for s in registry.SPECS]
    for spec in registry.SPECS:
        assert tuple(rubric[spec.section]["items"]) == spec.item_ids


def test_titles_come_from_the_specs_unless_the_rubric_words_them() -> None:
    cfg = load_config()
    assert cfg.rubric["drift"].title == registry.spec("drift").title
    assert cfg.rubric["drift"].items["attribution"].title == registry.item_spec("drift", "attribution").title
    custom = load_config(overrides={"rubric": {"drift": {"items": {"attribution": {"points": 4, "title": "Names it"}}}}})
    assert custom.rubric["drift"].items["attribution"].title == "Names it"
    assert custom.rubric["drift"].items["detects_scenarios"].title == "Alarm fires on each drift scenario"


def test_the_rubric_may_not_invent_items() -> None:
    with pytest.raises(ConfigError, match="unknown item"):
        load_config(overrides={"rubric": {"drift": {"items": {"typo_item": {"points": 1}}}}})
    with pytest.raises(ConfigError, match="unknown section"):
        load_config(overrides={"rubric": {"speed": {"items": {"fast": {"points": 1}}}}})


def test_registry_refuses_a_need_before_its_provider_and_unknown_facts() -> None:
    registry.validate((_spec("one", provides=("v2_served",)), _spec("two", needs=("v2_served",))))
    with pytest.raises(ValueError, match="no earlier check provides"):
        registry.validate((_spec("two", needs=("v2_served",)), _spec("one", provides=("v2_served",))))
    with pytest.raises(ValueError, match="unknown fact"):
        registry.validate((_spec("one", provides=("v3_served",)),))
    with pytest.raises(ValueError, match="declared twice"):
        registry.validate((_spec("one"), _spec("one")))


def test_the_real_specs_declare_facts_that_exist() -> None:
    declared = {n for s in registry.SPECS for n in (*s.needs, *s.provides)}
    assert declared <= FACT_NAMES
    assert {f.name for f in dataclasses.fields(Facts)} == FACT_NAMES
    assert registry.spec("rollback").needs == ("v2_served",)


def test_lifecycle_refuses_undeclared_items_and_evidence_off_the_model() -> None:
    spec = registry.spec("deployment")
    good = Outcome.passed(spec.item("v1_served"), "ok", versions_seen=["v1"], seconds_until_served=2,
                          deploy={"command": "make deploy", "exit_code": 0, "something_extra": 1})
    (out,) = checked_outcomes(spec, [good])
    # The keys the check wrote, and only those; ints stay ints; harness-built parts keep their extras.
    assert out.evidence == {"versions_seen": ["v1"], "seconds_until_served": 2,
                            "deploy": {"command": "make deploy", "exit_code": 0, "something_extra": 1}}
    with pytest.raises(GraderFault, match="undeclared item"):
        checked_outcomes(spec, [Outcome.passed("restores_v1", "not mine")])
    with pytest.raises(GraderFault, match="DeploymentEvidence"):
        checked_outcomes(spec, [Outcome.passed("v1_served", "ok", seconds_until_servd=2)])


def test_evidence_readers_fall_back_to_an_empty_model_for_foreign_evidence() -> None:
    from grader.results import ItemResult

    item = ItemResult(id="deployment.v1_served", title="t", section="deployment", points=0, max_points=4,
                      status="fail", message="m", evidence={"from_another_grader": 1})
    assert DeploymentEvidence.of(item) == DeploymentEvidence()
    item.evidence = {"deploy": {"exit_code": 3}}
    assert DeploymentEvidence.of(item).deploy.exit_code == 3  # type: ignore[union-attr]


def test_an_outcome_takes_the_item_spec_and_keeps_its_id() -> None:
    item = registry.item_spec("latency", "p99_under_slo")
    assert Outcome.failed(item, "slow").item == "p99_under_slo"
    assert item.key == "latency.p99_under_slo"
