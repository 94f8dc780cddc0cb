"""What each check records as evidence: one typed model per section, one definition each.

A check writes its items' evidence as keyword arguments of ``Outcome``; the lifecycle validates
them against its spec's model (``CheckSpec.evidence``), so a key the model does not declare is a
grader fault found by the tests, not a key a report silently never finds. Readers (follow-up
questions, renderers) go through ``Model.of(item)`` and read attributes.

Every field is optional: one model covers all of a section's items and their variants (a pass,
a failure, a phase that could not read its signal). ``dump()`` keeps exactly the keys the check
set, so the report's JSON is what the check wrote.
"""

from __future__ import annotations

from typing import Any, Self, Union

from pydantic import BaseModel, ConfigDict, ValidationError

from grader.results import ItemResult

#: Ints stay ints and floats stay floats (a float field would turn 3 into 3.0 in the JSON).
Num = Union[int, float]


class Evidence(BaseModel):
    """Base of the evidence models: strict about keys, lenient about absent ones."""

    model_config = ConfigDict(extra="forbid")

    def dump(self) -> dict[str, Any]:
        """The keys that were set, as JSON-ready data."""
        return self.model_dump(mode="json", exclude_unset=True)

    def duration_s(self) -> float | None:
        """Seconds the item's own work took (a JUnit testcase's time), when the evidence says."""
        return None

    @classmethod
    def of(cls, item: ItemResult) -> Self:
        """An item's evidence as this model; an empty one when it was not written by this grader
        (a report from another version: readers then fall back to the item's message)."""
        try:
            return cls.model_validate(item.evidence)
        except ValidationError:
            return cls()


class _Nested(BaseModel):
    """Evidence the harness builds (``.evidence()`` of its results): extra keys are its business."""

    model_config = ConfigDict(extra="allow")


class CommandEvidence(_Nested):
    """A candidate command's run (``harness.runtimes.base.CommandResult.evidence``)."""

    command: str | None = None
    exit_code: int | None = None
    timed_out: bool | None = None
    duration_s: Num | None = None
    stdout_tail: str | None = None
    stderr_tail: str | None = None
    error: str | None = None


class FingerprintEvidence(_Nested):
    """Which version the probe predictions matched (``harness.fingerprint.VersionReading.evidence``)."""

    version: str | None = None
    basis: str | None = None
    match_share: dict[str, Num] | None = None
    error: str | None = None


class RequestEvidence(_Nested):
    """One HTTP exchange with the service (``harness.service.Response.evidence``)."""

    request: str | None = None
    status: int | None = None
    latency_ms: Num | None = None
    error: str | None = None
    response_excerpt: str | None = None


class DeploymentEvidence(Evidence):
    deploy: CommandEvidence | None = None
    fingerprint: FingerprintEvidence | None = None
    versions_seen: list[str] | None = None
    seconds_until_served: Num | None = None
    booted_on: str | None = None  # set only when the service served v1 before any deploy
    redeploy_v1: dict[str, Any] | None = None
    restore_v2: dict[str, Any] | None = None

    def duration_s(self) -> float | None:
        return None if self.deploy is None or self.deploy.duration_s is None else float(self.deploy.duration_s)


class CorrectnessEvidence(Evidence):
    rows: int | None = None
    atol: Num | None = None
    match_share: dict[str, Num] | None = None
    compared_to: str | None = None
    max_abs_error: Num | None = None
    rows_with_nulls: int | None = None
    worst_rows: list[dict[str, Any]] | None = None
    credit_ramp: dict[str, Num] | None = None
    failing_request: RequestEvidence | None = None
    rows_checked: int | None = None


class ScenarioEvidence(BaseModel):
    """What one drift scenario sent and saw."""

    model_config = ConfigDict(extra="forbid")
    scenario: str
    kind: str | None = None
    ground_truth: list[str] = []
    quiet_before: bool | None = None
    detected: bool = False
    delay_rows: int | None = None
    named: list[str] = []
    washout_rows: int | None = None
    #: per drifted feature: the grader's own test of the rows it sent (harness.traffic.shift_stats)
    shift: dict[str, dict[str, Any]] = {}


class NamedFeatures(BaseModel):
    model_config = ConfigDict(extra="forbid")
    named: list[str] = []
    truth: list[str] = []


class DriftEvidence(Evidence):
    # quiet_on_baseline
    baseline_rows: int | None = None
    polls: int | None = None
    false_alarm_polls: int | None = None
    unreadable_polls: int | None = None
    request_errors: int | None = None
    warmup: dict[str, Any] | None = None
    # detects_scenarios
    scenarios: list[ScenarioEvidence] | None = None
    # detection_delay
    delay_rows: dict[str, int | None] | None = None
    fast_rows: int | None = None
    # attribution
    named: dict[str, NamedFeatures] | None = None
    # the signal could not be read at all
    example_error: str | None = None


class LatencyEvidence(Evidence):
    p50_ms: Num | None = None
    p95_ms: Num | None = None
    p99_ms: Num | None = None
    p999_ms: Num | None = None
    max_ms: Num | None = None
    measured: int | None = None
    scheduled: int | None = None
    errors: int | None = None
    error_rate: Num | None = None
    achieved_rate_rps: Num | None = None
    send_lag_p99_ms: Num | None = None
    slo_ms: Num | None = None
    error_kinds: dict[str, int] | None = None
    server_errors: int | None = None
    p99_from_actual_send_ms: Num | None = None
    p99_interval_ms: dict[str, Num] | None = None
    generator_gc_pause_max_ms: Num | None = None
    attempts: int | None = None
    window_s: Num | None = None  # measured seconds of the last attempt
    ended_early: bool | None = None  # the window ended at load.min_duration_s: the verdict was settled


class RollbackRequest(BaseModel):
    """One request sent while the rollback ran."""

    model_config = ConfigDict(extra="forbid")
    t: Num
    ok: bool
    version: str
    error: str | None = None
    status: int | None = None


class RollbackEvidence(Evidence):
    command: CommandEvidence | None = None
    fingerprint: FingerprintEvidence | None = None  # before the rollback (skipped) or after the second run
    fingerprint_after: FingerprintEvidence | None = None
    versions_seen: list[str] | None = None
    requests: int | None = None
    failed_requests: int | None = None
    failed_examples: list[RollbackRequest] | None = None
    responses_by_version: dict[str, int] | None = None
    last_v2_response_s_after_command: Num | None = None
    switch_s: Num | None = None
    budget_s: Num | None = None

    def duration_s(self) -> float | None:
        return None if self.command is None or self.command.duration_s is None else float(self.command.duration_s)


class BadInputCase(BaseModel):
    """One malformed request and how the service answered it."""

    model_config = ConfigDict(extra="forbid")
    case: str
    status: int | None = None
    rejected_with_4xx: bool
    error: str | None = None
    response_excerpt: str | None = None


class RobustnessEvidence(Evidence):
    cases: list[BadInputCase] | None = None
    ready_after: RequestEvidence | None = None
    valid_request_after: RequestEvidence | None = None
    process_alive: bool | None = None
    server_errors_on_bad_input: list[str] | None = None


class ObservabilityEvidence(Evidence):
    # metrics_endpoint (and the failed request's own evidence)
    families: list[str] | None = None
    excerpt: str | None = None
    request: str | None = None
    status: int | None = None
    latency_ms: Num | None = None
    error: str | None = None
    response_excerpt: str | None = None
    # request_id_logged
    header: str | None = None
    looked_for: list[str] | None = None
    found: list[str] | None = None
    missing: list[str] | None = None
    log_bytes_searched: int | None = None
    # request_replay: one row per request (its id, how its inputs were read, the result)
    replayed: list[dict[str, Any]] | None = None
    atol: Num | None = None
    failing_request: dict[str, Any] | None = None
