"""The registry of check specs, in the order the lifecycle runs them.

Everything that needs to know which sections and items exist reads it: the lifecycle's phase
table, the rubric's validation (``grader.config``), the calibration file's validation, scoring
(an outcome for an undeclared item is a grader fault) and the follow-up questions.
"""

from __future__ import annotations

from functools import cache

from grader.checks import (
    correctness,
    deployment,
    drift,
    latency,
    observability,
    robustness,
    rollback,
)
from grader.checks.spec import CheckSpec, ItemSpec
from grader.facts import FACT_NAMES

#: The brief's lifecycle order: deploy, check predictions, drift, latency, rollback, bad input, logs.
SPECS: tuple[CheckSpec, ...] = (deployment.SPEC, correctness.SPEC, drift.SPEC, latency.SPEC, rollback.SPEC,
                                robustness.SPEC, observability.SPEC)


def validate(specs: tuple[CheckSpec, ...]) -> None:
    """Refuse duplicate sections or items, unknown fact names, and a need before its provider."""
    sections: set[str] = set()
    provided: set[str] = set()
    for spec in specs:
        if spec.section in sections:
            raise ValueError(f"section {spec.section!r} is declared twice")
        sections.add(spec.section)
        ids = spec.item_ids
        if not ids or len(set(ids)) != len(ids):
            raise ValueError(f"{spec.section}: needs at least one item and no item twice (got {ids})")
        if any(it.section != spec.section for it in spec.items):
            raise ValueError(f"{spec.section}: an item spec names another section")
        unknown = set(spec.needs + spec.provides) - FACT_NAMES
        if unknown:
            raise ValueError(f"{spec.section}: unknown fact(s) {sorted(unknown)} (grader.facts.Facts has "
                             f"{sorted(FACT_NAMES)})")
        missing = [n for n in spec.needs if n not in provided]
        if missing:
            raise ValueError(f"{spec.section} needs {missing}, which no earlier check provides")
        provided.update(spec.provides)


validate(SPECS)


def spec(section: str) -> CheckSpec:
    """The spec of one section (KeyError naming the known ones otherwise)."""
    for s in SPECS:
        if s.section == section:
            return s
    raise KeyError(f"unknown section {section!r} (known: {', '.join(s.section for s in SPECS)})")


@cache
def known_items() -> dict[str, tuple[str, ...]]:
    """Section id -> its item ids, in rubric order."""
    return {s.section: s.item_ids for s in SPECS}


def item_spec(section: str, item_id: str) -> ItemSpec:
    """One item's spec."""
    return spec(section).item(item_id)


def all_items() -> list[ItemSpec]:
    """Every item of every section, in rubric order."""
    return [it for s in SPECS for it in s.items]
