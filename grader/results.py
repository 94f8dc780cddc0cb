"""The grading result tree: one model that every report format renders.

run (GradeReport) -> sections (SectionResult) -> scored items (ItemResult), plus the phases the
lifecycle went through (PhaseResult) and the raw observations plots are drawn from. A failed
check is a result that carries its evidence, never an exception; a crash becomes a report with
``status`` set and the error kept, so every run writes a report.
"""

from __future__ import annotations

import datetime as _dt
import os
from typing import TYPE_CHECKING, Any, Literal, Union

from pydantic import BaseModel, Field, field_validator

if TYPE_CHECKING:  # the specs import nothing heavy, but results stay importable on their own
    from grader.checks.spec import ItemSpec

REPORT_SCHEMA_VERSION = "1.1"  # 1.1: ``latency`` is a LatencySummary (one spelling); item status "timeout"

#: How an item ended. Set explicitly by the check (or, for an item without an outcome, by how its
#: phase ended), never guessed from a message's wording.
ItemStatus = Literal["pass", "partial", "fail", "skipped", "error", "timeout", "inconclusive"]
PhaseStatus = Literal["ok", "failed", "timeout", "skipped", "interrupted", "error"]
RunStatus = Literal["completed", "broken_submission", "grader_error", "interrupted"]


#: What a check names an item by: its spec (as checks do) or its id.
ItemRef = Union[str, "ItemSpec"]


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

    @field_validator("item", mode="before")
    @classmethod
    def _item_id(cls, value: Any) -> Any:
        # Checks pass their ItemSpec (grader.checks.spec); the outcome keeps its id.
        return getattr(value, "id", value)

    @classmethod
    def passed(cls, item: ItemRef, message: str, **evidence: Any) -> "Outcome":
        return cls(item=item, fraction=1.0, status="pass", message=message, evidence=evidence)

    @classmethod
    def failed(cls, item: ItemRef, message: str, **evidence: Any) -> "Outcome":
        return cls(item=item, fraction=0.0, status="fail", message=message, evidence=evidence)

    @classmethod
    def partial(cls, item: ItemRef, fraction: float, message: str, **evidence: Any) -> "Outcome":
        fraction = max(0.0, min(1.0, fraction))
        status: ItemStatus = "pass" if fraction >= 0.999 else ("fail" if fraction <= 0.0 else "partial")
        return cls(item=item, fraction=fraction, status=status, message=message, evidence=evidence)

    @classmethod
    def skipped(cls, item: ItemRef, message: str, **evidence: Any) -> "Outcome":
        return cls(item=item, fraction=0.0, status="skipped", message=message, evidence=evidence)

    @classmethod
    def inconclusive(cls, item: ItemRef, message: str, fraction: float = 0.0, **evidence: Any) -> "Outcome":
        return cls(item=item, fraction=fraction, status="inconclusive", message=message, evidence=evidence)


class LatencySummary(BaseModel):
    """The latency phase's numbers as the report carries them: one name per number for every
    reader (renderers, follow-ups, Gradescope, benchmarks). Times in ms, rates in requests/s."""

    rate_rps: float | None = None  # the planned open-loop rate
    scheduled_rate_rps: float | None = None
    achieved_rps: float | None = None
    count: int = 0  # requests measured (after the warm-up)
    scheduled: int = 0
    sent: int = 0
    ok: int = 0
    errors: int = 0
    error_rate: float | None = None
    error_kinds: dict[str, int] = Field(default_factory=dict)
    client_rejected: int = 0
    client_errors: int = 0
    abandoned: int = 0
    clamped: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    max_ms: float | None = None
    mean_ms: float | None = None
    send_lag_p99_ms: float | None = None
    send_lag_max_ms: float | None = None
    saturated: bool = False
    saturation_reason: str | None = None
    min_samples_for_p99: int | None = None
    slo_ms: float | None = None
    #: ``[[percentile, ms], ...]`` for the spectrum plot.
    spectrum: list[list[float | None]] = Field(default_factory=list)

    @classmethod
    def from_stats(cls, stats: dict[str, Any], slo_ms: float | None = None) -> "LatencySummary":
        """From ``harness.load.stats.LatencyStats.to_dict()``."""
        lat = stats.get("latency_ms") or {}
        lag = stats.get("send_lag_ms") or {}
        return cls(rate_rps=stats.get("planned_rate_rps"), scheduled_rate_rps=stats.get("scheduled_rate_rps"),
                   achieved_rps=stats.get("achieved_rate_rps"), count=stats.get("count", 0),
                   scheduled=stats.get("scheduled", 0), sent=stats.get("sent", 0), ok=stats.get("ok", 0),
                   errors=stats.get("errors", 0), error_rate=stats.get("error_rate"),
                   error_kinds=stats.get("error_kinds") or {}, client_rejected=stats.get("client_rejected", 0),
                   client_errors=stats.get("client_errors", 0), abandoned=stats.get("abandoned", 0),
                   clamped=stats.get("clamped", 0), p50_ms=lat.get("p50"), p95_ms=lat.get("p95"),
                   p99_ms=lat.get("p99"), p999_ms=lat.get("p99.9"), max_ms=lat.get("max"),
                   mean_ms=lat.get("mean"), send_lag_p99_ms=lag.get("p99"), send_lag_max_ms=lag.get("max"),
                   saturated=bool(stats.get("saturated")), saturation_reason=stats.get("saturation_reason"),
                   min_samples_for_p99=stats.get("min_samples_for_p99"), slo_ms=slo_ms,
                   spectrum=[list(p) for p in stats.get("spectrum_ms") or []])


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


class MachineInfo(BaseModel):
    """The machine the grading ran on, as far as it bears on latency: how many CPUs, and how many
    gradings ran on it at once (``takehome batch --jobs``)."""

    cpus: int | None = None
    concurrent_gradings: int = 1
    load_avg_1m: float | None = None  # at the start of the grading

    @classmethod
    def here(cls) -> "MachineInfo":
        """This machine now; ``TAKEHOME_CONCURRENT_GRADINGS`` is set by ``takehome batch``."""
        try:
            shared = max(1, int(os.environ.get("TAKEHOME_CONCURRENT_GRADINGS", "1")))
        except ValueError:
            shared = 1
        try:
            load = round(os.getloadavg()[0], 2)
        except OSError:
            load = None
        return cls(cpus=os.cpu_count(), concurrent_gradings=shared, load_avg_1m=load)


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
    latency: LatencySummary | None = None  # the latency phase's numbers (spectrum for plots)
    followups: list[str] = Field(default_factory=list)
    error: str | None = None  # what broke, for broken_submission / grader_error / interrupted
    config_digest: str | None = None
    seed: SeedInfo | None = None  # the scenario seed's provenance; its value is never recorded
    grader_version: str | None = None
    #: How candidate code was isolated (sandbox, uid, limits) and every limit it hit.
    isolation: dict[str, Any] | None = None
    machine: MachineInfo | None = None

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
