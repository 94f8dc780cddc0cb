"""The grading result tree: one model that every report format renders.

run (GradeReport) -> sections (SectionResult) -> scored items (ItemResult), plus the phases the
lifecycle went through (PhaseResult) and the raw observations plots are drawn from. A failed
check is a result that carries its evidence, never an exception; a crash becomes a report with
``status`` set and the error kept, so every run writes a report.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Literal

from pydantic import BaseModel, Field

REPORT_SCHEMA_VERSION = "1.0"

ItemStatus = Literal["pass", "partial", "fail", "skipped", "error", "inconclusive"]
PhaseStatus = Literal["ok", "failed", "timeout", "skipped", "interrupted", "error"]
RunStatus = Literal["completed", "broken_submission", "grader_error", "interrupted"]


def utcnow() -> str:
    """An ISO-8601 UTC timestamp (the report's only clock format)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Outcome(BaseModel):
    """What a check measured for one rubric item, before points are applied.

    ``fraction`` is the share of the item's points earned (0..1). ``evidence`` holds what was
    measured: numbers, the failing request, a log excerpt. Checks never see point values.
    """

    item: str
    fraction: float = Field(ge=0.0, le=1.0)
    status: ItemStatus
    message: str
    evidence: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def passed(cls, item: str, message: str, **evidence: Any) -> "Outcome":
        return cls(item=item, fraction=1.0, status="pass", message=message, evidence=evidence)

    @classmethod
    def failed(cls, item: str, message: str, **evidence: Any) -> "Outcome":
        return cls(item=item, fraction=0.0, status="fail", message=message, evidence=evidence)

    @classmethod
    def partial(cls, item: str, fraction: float, message: str, **evidence: Any) -> "Outcome":
        fraction = max(0.0, min(1.0, fraction))
        status: ItemStatus = "pass" if fraction >= 0.999 else ("fail" if fraction <= 0.0 else "partial")
        return cls(item=item, fraction=fraction, status=status, message=message, evidence=evidence)

    @classmethod
    def skipped(cls, item: str, message: str, **evidence: Any) -> "Outcome":
        return cls(item=item, fraction=0.0, status="skipped", message=message, evidence=evidence)

    @classmethod
    def inconclusive(cls, item: str, message: str, fraction: float = 0.0, **evidence: Any) -> "Outcome":
        return cls(item=item, fraction=fraction, status="inconclusive", message=message, evidence=evidence)


class ItemResult(BaseModel):
    """One scored rubric item: an Outcome with its points applied."""

    id: str
    title: str
    section: str
    points: float
    max_points: float
    status: ItemStatus
    message: str
    evidence: dict[str, Any] = Field(default_factory=dict)


class SectionResult(BaseModel):
    id: str
    title: str
    points: float
    max_points: float
    items: list[ItemResult]


class PhaseResult(BaseModel):
    """One lifecycle phase: how long it took and how it ended."""

    name: str
    status: PhaseStatus
    started_at: str
    duration_s: float
    message: str = ""
    error: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class TimelineEvent(BaseModel):
    """A point on the run's time axis: traffic phase boundaries and drift alarm observations."""

    t_s: float  # seconds since the run started
    kind: str  # e.g. "phase", "drift_poll", "rollback", "version"
    label: str
    data: dict[str, Any] = Field(default_factory=dict)


class CandidateInfo(BaseModel):
    repo: str
    commit: str | None = None
    name: str | None = None
    framework: str | None = None
    flavor: str | None = None


class SeedInfo(BaseModel):
    """Which scenario seed a run used, without the seed: where it came from and a fingerprint
    (``grader.config.seed_fingerprint``) that tells runs with different seeds apart."""

    source: Literal["environment", "config", "built-in default"]
    fingerprint: str = Field(pattern=r"^[0-9a-f]{12}$")


class GradeReport(BaseModel):
    """Everything a grading run produced. Reports in every format are rendered from this alone."""

    schema_version: str = REPORT_SCHEMA_VERSION
    run_id: str
    status: RunStatus = "completed"
    runtime: str
    candidate: CandidateInfo
    started_at: str = Field(default_factory=utcnow)
    finished_at: str | None = None
    duration_s: float | None = None
    score: float = 0.0
    max_score: float = 0.0
    sections: list[SectionResult] = Field(default_factory=list)
    phases: list[PhaseResult] = Field(default_factory=list)
    timeline: list[TimelineEvent] = Field(default_factory=list)
    latency: dict[str, Any] | None = None  # LatencyStats.to_dict() of the latency phase (spectrum for plots)
    followups: list[str] = Field(default_factory=list)
    error: str | None = None  # what broke, for broken_submission / grader_error / interrupted
    config_digest: str | None = None
    seed: SeedInfo | None = None  # the scenario seed's provenance; its value is never recorded
    grader_version: str | None = None
    #: How candidate code was isolated (sandbox, uid, limits) and every limit it hit.
    isolation: dict[str, Any] | None = None

    def section(self, section_id: str) -> SectionResult | None:
        """The section with this id, if scored."""
        return next((s for s in self.sections if s.id == section_id), None)

    def item(self, item_id: str) -> ItemResult | None:
        """Find an item by ``section.item`` id."""
        for s in self.sections:
            for i in s.items:
                if i.id == item_id:
                    return i
        return None
