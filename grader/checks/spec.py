"""What a check declares about itself: its section, its items, its phase timeout, and the facts it
needs from earlier checks and provides to later ones.

Each module in ``grader/checks`` defines one ``SPEC``; ``grader.checks.registry`` lists them in
the order the lifecycle runs them. The phase table, the rubric's known items, the calibration
file's validation and the follow-up questions are all derived from the specs, so a new check is
one module (plus its tests) and an item id is written once, in its check's spec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the specs are imported by config validation: keep this import light
    from grader.config import GraderConfig
    from grader.evidence import Evidence
    from grader.results import Outcome
    from grader.session import Deadline, GradingSession


@dataclass(frozen=True)
class ItemSpec:
    """One rubric item a check scores. Points live in the rubric (``grader/defaults.yaml``), which
    a hiring team may re-weight; the id and the default title live here."""

    section: str
    id: str
    title: str

    @property
    def key(self) -> str:
        """``section.item``, the id reports and ``calibration/expected.yaml`` use."""
        return f"{self.section}.{self.id}"

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
class CheckSpec:
    """One rubric section and the check that scores it.

    ``evidence`` is the model its items' evidence must fit (checked by the lifecycle).
    ``needs`` and ``provides`` name fields of :class:`grader.facts.Facts`: a check reads only the
    facts it declares, and the registry refuses an order in which a need comes before its provider.
    """

    section: str
    title: str
    items: tuple[ItemSpec, ...]
    timeout_s: Callable[[GraderConfig], float]
    run: Callable[[GradingSession, Deadline], list[Outcome]]
    #: The model every item's evidence must fit (grader/evidence.py).
    evidence: type[Evidence]
    needs: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    doc: str = field(default="", compare=False)

    def item(self, item_id: str) -> ItemSpec:
        """The item with this id (KeyError naming the known ones otherwise)."""
        for it in self.items:
            if it.id == item_id:
                return it
        raise KeyError(f"{self.section} has no item {item_id!r} (known: {', '.join(self.item_ids)})")

    @property
    def item_ids(self) -> tuple[str, ...]:
        return tuple(it.id for it in self.items)


def items(section: str, **titles: str) -> tuple[ItemSpec, ...]:
    """Item specs of one section, in declaration order: ``items("latency", p99_under_slo="...")``."""
    return tuple(ItemSpec(section, item_id, title) for item_id, title in titles.items())
