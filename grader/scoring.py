"""Apply the rubric to the checks' outcomes: points, partial credit, and a reason for every zero."""

from __future__ import annotations

from dataclasses import dataclass

from grader.config import GraderConfig
from grader.results import ItemResult, ItemStatus, Outcome, SectionResult


@dataclass(frozen=True)
class Missing:
    """Why a section has no outcomes: its phase's ending, as an item status, and the reason."""

    status: ItemStatus
    reason: str


NOT_CHECKED = Missing("skipped", "not checked")


def score_sections(config: GraderConfig, outcomes: dict[str, list[Outcome]],
                   missing: dict[str, Missing]) -> list[SectionResult]:
    """One SectionResult per rubric section, in rubric order.

    An item without an outcome (its phase failed, timed out or never ran) scores zero with the
    status and reason of ``missing[section]``.
    """
    sections: list[SectionResult] = []
    for section_id, section in config.rubric.items():
        by_item = {o.item: o for o in outcomes.get(section_id, [])}
        items: list[ItemResult] = []
        for item_id, rubric_item in section.items.items():
            outcome = by_item.get(item_id)
            if outcome is None:
                why = missing.get(section_id, NOT_CHECKED)
                items.append(ItemResult(id=f"{section_id}.{item_id}", title=rubric_item.title or item_id,
                                        section=section_id, points=0.0, max_points=rubric_item.points,
                                        status=why.status, message=why.reason))
                continue
            points = round(rubric_item.points * outcome.fraction, 2)
            items.append(ItemResult(id=f"{section_id}.{item_id}", title=rubric_item.title or item_id, section=section_id,
                                    points=points, max_points=rubric_item.points, status=outcome.status,
                                    message=outcome.message, evidence=outcome.evidence))
        sections.append(SectionResult(id=section_id, title=section.title or section_id,
                                      points=round(sum(i.points for i in items), 2),
                                      max_points=section.max_points, items=items))
    return sections


def total(sections: list[SectionResult]) -> tuple[float, float]:
    """Score and maximum over all sections."""
    return round(sum(s.points for s in sections), 2), round(sum(s.max_points for s in sections), 2)
