"""Grader configuration: validated YAML with shipped defaults (``grader/defaults.yaml``).

A hiring team's file is merged over the defaults key by key, so it only needs the values it
changes. Unknown keys are errors: a misspelt threshold must not silently keep its default.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULTS_PATH = Path(__file__).with_name("defaults.yaml")
SEED_ENV = "TAKEHOME_SCENARIO_SEED"
#: Used only when the hiring team set no seed; the report says so.
FALLBACK_SEED = 7_700_417
#: Where a run's scenario seed came from, as :meth:`GraderConfig.seed` and reports name it.
SeedSource = Literal["environment", "config", "built-in default"]
_SEED_SALT = b"takehome scenario seed fingerprint v1"


def seed_fingerprint(seed: int) -> str:
    """A short, stable tag of ``seed`` that tells two runs' seeds apart without revealing either.

    Never a plain hash: a seed is an integer a person picked, and sha256 of every integer up to
    2**32 takes minutes, so scrypt (about 16 MB and tens of ms per try) makes guessing expensive.
    A seed of a few digits can still be guessed from it: use a large random one
    (``python -c 'import secrets; print(secrets.randbits(62))'``).
    """
    key = hashlib.scrypt(str(int(seed)).encode(), salt=_SEED_SALT, n=2**14, r=8, p=1, dklen=16)
    return key.hex()[:12]


class ConfigError(Exception):
    """The grader configuration is invalid; the message says which key and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrafficConfig(_Strict):
    warmup_rows: int = Field(ge=0)
    baseline_rows: int = Field(ge=100)
    scenario_max_rows: int = Field(ge=50)
    washout_max_rows: int = Field(ge=0)
    rows_per_request: int = Field(ge=1, le=500)
    poll_every_rows: int = Field(ge=1)
    settle_s: float = Field(ge=0)
    concurrency: int = Field(ge=1, le=64)
    scenarios: list[str] = Field(min_length=1)
    probe_rows: int = Field(ge=4, le=500)


class LoadConfig(_Strict):
    rate_rps: float = Field(gt=0, le=20_000)
    duration_s: float = Field(gt=0)
    #: The window may end once this much is measured and the verdict is settled (and never before
    #: the requests a p99 claim needs: see measured_floor_s); at or above duration_s it never ends early.
    min_duration_s: float = Field(gt=0)
    warmup_s: float = Field(ge=0)
    schedule: Literal["poisson", "fixed"]
    timeout_s: float = Field(gt=0)
    rollback_rate_rps: float = Field(gt=0)
    #: Responses seen on each side of a rollback switch (before the command, once v1 is back,
    #: after the second run): a condition to wait for, not a fixed sleep.
    rollback_steady_requests: int = Field(ge=1, le=10_000)
    max_send_lag_ms: float = Field(gt=0)
    connections: int = Field(ge=1, le=4096)

    def measured_floor_s(self) -> float:
        """Measured seconds before the latency window may end early: ``min_duration_s``, or as long
        as the rate needs to collect the requests any p99 claim needs, whichever is longer."""
        from harness.load.stats import MIN_SAMPLES_FOR_P99  # the load package is heavy; only when asked

        return max(self.min_duration_s, MIN_SAMPLES_FOR_P99 / self.rate_rps)

    def ends_early(self) -> bool:
        """Whether a settled verdict can end the window before ``duration_s``."""
        return self.measured_floor_s() < self.duration_s


class Thresholds(_Strict):
    latency_p99_ms: float = Field(gt=0)
    latency_error_rate: float = Field(ge=0, le=1)
    correctness_atol: float = Field(gt=0)
    correctness_min_match: float = Field(gt=0, le=1)
    correctness_zero_share: float = Field(ge=0, lt=1)
    rollback_budget_s: float = Field(gt=0)
    rollout_timeout_s: float = Field(gt=0)
    detection_fast_rows: int = Field(ge=1)
    attribution_max_features: int = Field(ge=1)
    oversized_body_mb: float = Field(gt=0)

    @model_validator(mode="after")
    def _correctness_ramp(self) -> Thresholds:
        if self.correctness_zero_share >= self.correctness_min_match:
            raise ValueError("thresholds.correctness_zero_share must be below correctness_min_match "
                             "(credit rises from the one to the other)")
        return self


class Timeouts(_Strict):
    fetch: float
    build: float
    setup: float
    start: float
    ready: float
    deploy: float
    correctness: float
    drift: float
    latency: float
    rollback: float
    robustness: float
    teardown: float


class LocalConfig(_Strict):
    memory_limit_mb: int = Field(ge=0)
    cpu_seconds: int = Field(ge=0)
    max_open_files: int = Field(ge=64)
    cache_dir: str | None = None
    #: Candidate code runs in a bubblewrap sandbox; False (``--unsafe-local``) runs it unsandboxed.
    sandbox: bool = True
    max_processes: int = Field(512, ge=16)
    tmp_mb: int = Field(1024, ge=16)
    disk_mb: int = Field(4096, ge=64)
    file_size_mb: int = Field(2048, ge=1)
    log_mb: int = Field(64, ge=1)
    #: uv installs the requirements where it mirrors pip's settings exactly; "pip" always uses pip.
    installer: Literal["uv", "pip"] = "uv"

    def resolved_cache_dir(self) -> Path:
        """Where isolated environments and clones are cached between runs."""
        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        return Path(os.environ.get("TAKEHOME_CACHE_DIR", "~/.cache/takehome")).expanduser()


class KubernetesConfig(_Strict):
    """The existing cluster the ``kubernetes`` runtime grades on (kind makes its own; see k8s/README.md)."""

    #: Kubeconfig file; None: $KUBECONFIG, else ~/.kube/config.
    kubeconfig: str | None = None
    #: Context in it; None: its current context.
    context: str | None = None
    #: Registry the candidate image is pushed to (e.g. ``registry.example.com/takehome``); the
    #: nodes must be able to pull from it. One of ``registry`` and ``load_command`` is required.
    registry: str | None = None
    #: Instead of a registry: a command that makes a local image available on the nodes, with
    #: ``{image}`` for the ref (e.g. ``kind load docker-image {image} --name dev`` or
    #: ``minikube image load {image}``). Runs on the grader's host with its environment.
    load_command: str | None = None
    #: Where the grader reaches a NodePort; None: the first node's InternalIP.
    node_address: str | None = None
    #: NodePorts the grader may give candidates' Services (one per concurrent grading).
    node_ports: list[int] = Field(default_factory=lambda: list(range(30080, 30090)), min_length=1)
    #: Address pods reach the grader at (the drift webhook); None: this host's address on the
    #: route to the node address.
    grader_host: str | None = None

    @model_validator(mode="after")
    def _ports_in_range(self) -> "KubernetesConfig":
        bad = [p for p in self.node_ports if not 30000 <= p <= 32767]
        if bad:
            raise ValueError(f"kubernetes.node_ports: {bad} outside the NodePort range 30000-32767")
        return self


class GradingJobsConfig(_Strict):
    """``takehome batch --on-cluster``: the Jobs that grade a cohort on the team's cluster."""

    #: Namespace the Jobs and the seed Secret go in (``takehome grading-jobs-setup`` creates it).
    namespace: str = "takehome-grading"
    #: The grader image (``make grader-image``), pushed where the nodes pull from.
    image: str = "takehome-grader:latest"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    #: Bound to cluster-admin by the setup objects: the grader grants each candidate a Role.
    service_account: str = "takehome-grader"
    cpu: str = "2"
    memory: str = "4Gi"
    #: Docker engine the grader builds candidates' images with: ``tcp://builder:2376``; or, when
    #: unset, the node's socket at ``docker_socket`` (mounted); both null: none.
    docker_host: str | None = None
    docker_socket: str | None = "/var/run/docker.sock"
    node_selector: dict[str, str] = Field(default_factory=dict)
    #: The pod's teardown after SIGTERM (batch interrupted, Job deleted) before SIGKILL.
    termination_grace_s: float = Field(90.0, ge=1)
    #: How often the batch reads each Job's status and log.
    poll_s: float = Field(2.0, gt=0)


class RubricItem(_Strict):
    points: float = Field(ge=0)
    title: str | None = None  # default: the title in the item's check spec (grader/checks)


class RubricSection(_Strict):
    title: str | None = None  # default: the section title in its check spec
    items: dict[str, RubricItem] = Field(min_length=1)

    @property
    def max_points(self) -> float:
        return sum(i.points for i in self.items.values())


class GraderConfig(_Strict):
    scenario_seed: int | None = None
    traffic: TrafficConfig
    load: LoadConfig
    thresholds: Thresholds
    timeouts: Timeouts
    local: LocalConfig
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)
    grading_jobs: GradingJobsConfig = Field(default_factory=GradingJobsConfig)
    rubric: dict[str, RubricSection]

    @model_validator(mode="after")
    def _rubric_matches_checks(self) -> "GraderConfig":
        # The sections and items the checks declare (grader/checks/*.py SPEC): the rubric may
        # re-weight or re-title them, not rename them. Local import: the checks import this module.
        from grader.checks.registry import item_spec, known_items, spec

        known = known_items()
        for section, rubric_section in self.rubric.items():
            if section not in known:
                raise ValueError(f"rubric.{section}: unknown section (known: {', '.join(known)})")
            unknown = set(rubric_section.items) - set(known[section])
            if unknown:
                raise ValueError(f"rubric.{section}: unknown item(s) {sorted(unknown)} "
                                 f"(known: {sorted(known[section])})")
            if rubric_section.title is None:
                rubric_section.title = spec(section).title
            for item_id, item in rubric_section.items.items():
                if item.title is None:
                    item.title = item_spec(section, item_id).title
        from harness.traffic.scenarios import SCENARIO_KINDS  # local import: keeps config import light

        bad = [s for s in self.traffic.scenarios if s not in SCENARIO_KINDS]
        if bad:
            raise ValueError(f"traffic.scenarios: unknown scenario(s) {bad} (known: {sorted(SCENARIO_KINDS)})")
        return self

    @property
    def max_score(self) -> float:
        return sum(s.max_points for s in self.rubric.values())

    def seed(self) -> tuple[int, SeedSource]:
        """The scenario seed and where it came from ("environment", "config" or "built-in default").

        The value is secret: it goes to the traffic generators only. Reports get
        :meth:`seed_provenance`."""
        env = os.environ.get(SEED_ENV)
        if env:
            try:
                return int(env), "environment"
            except ValueError:  # the value itself is not echoed: it may be the seed with a typo
                raise ConfigError(f"${SEED_ENV} must be an integer (it is set, to something else)") from None
        if self.scenario_seed is not None:
            return self.scenario_seed, "config"
        return FALLBACK_SEED, "built-in default"

    def seed_provenance(self) -> dict[str, str]:
        """What a report may say about the seed: ``{"source": ..., "fingerprint": ...}``, never the value."""
        seed, source = self.seed()
        return {"source": source, "fingerprint": seed_fingerprint(seed)}

    def digest(self) -> str:
        """A short hash of the effective configuration, recorded in every report.

        The seed is left out: a hash of a config whose other values are public would let anyone try
        every seed against it (the report has :meth:`seed_provenance` for that)."""
        blob = json.dumps(self.model_dump(mode="json", exclude={"scenario_seed"}), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "items":
            out[key] = _merge(out[key], value)
        elif key == "items" and isinstance(value, dict) and isinstance(out.get(key), dict):
            # Rubric items merge per item too, so a team can change one weight.
            merged = dict(out[key])
            for k, v in value.items():
                merged[k] = _merge(merged.get(k, {}), v) if isinstance(v, dict) else v
            out[key] = merged
        else:
            out[key] = value
    return out


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> GraderConfig:
    """Load the defaults, merge the hiring team's file and any overrides, and validate."""
    data = yaml.safe_load(DEFAULTS_PATH.read_text())
    if path is not None:
        try:
            user = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config {path} is not valid YAML: {exc}") from None
        if not isinstance(user, dict):
            raise ConfigError(f"config {path}: expected a mapping at the top level")
        data = _merge(data, user)
    if overrides:
        data = _merge(data, overrides)
    try:
        return GraderConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"  - {loc or '(top level)'}: {err['msg'].removeprefix('Value error, ')}")
        source = str(path) if path else "defaults"
        raise ConfigError(f"invalid grader config ({source}):\n" + "\n".join(lines)) from None
