"""The submission contract: ``takehome.yaml`` at the root of a candidate repo.

It tells the grader how to build the candidate's service, start it, promote a model version,
roll back in one command, and read the drift signal. The JSON Schema shipped to candidates
(``assignment/takehome.schema.json``) is generated from these models, so the two never disagree.
Validation errors name the field and the line of the YAML file it came from.

The file is the candidate's, so it is read defensively: at most ``CONTRACT_MAX_BYTES``, UTF-8
text only, and without YAML anchors or aliases (a few hundred bytes of nested aliases expand to
gigabytes: the "billion laughs"). A contract never needs them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.limits import CONTRACT_MAX_BYTES, format_bytes

CONTRACT_FILENAME = "takehome.yaml"
CONTRACT_VERSION = 1
_MAX_PROBLEMS = 50  # validation problems listed; a file of a thousand typos needs only the first ones


class ContractError(Exception):
    """The contract file is missing, unparsable or invalid. ``problems`` lists each one."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []

    def __str__(self) -> str:
        if not self.problems:
            return self.args[0]
        return self.args[0] + "\n" + "\n".join(f"  - {p}" for p in self.problems)


class _Strict(BaseModel):
    # Unknown keys are almost always typos ("rolback:"), so they are errors, not silently ignored.
    # Strict types, as the shipped JSON Schema states them: "8080" is not a port, true is not 1.
    model_config = ConfigDict(extra="forbid", strict=True)


def _check_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must start with '/'")
    return value


class Serving(_Strict):
    """How the grader talks to the service."""

    port: int = Field(8080, ge=1, le=65535, description="Port the server listens on inside a container. "
                      "On the local runtime the grader chooses a free port and passes it as $PORT.")
    protocol: Literal["v1", "v2"] = Field("v1", description="v1: KServe V1 JSON ({'instances': [...]} -> "
                                           "{'predictions': [...]}); v2: Open Inference Protocol.")
    predict_path: str = Field(..., description="POST path of the prediction route, e.g. /v1/models/fraud:predict")
    ready_path: str = Field("/healthz", description="GET path that answers 200 once the model is loaded.")
    metrics_path: str | None = Field("/metrics", description="GET path of Prometheus exposition text, or null.")
    request_id_header: str = Field("X-Request-ID", description="Header carrying the grader's request id; "
                                   "the service must write it to its request log.")

    _paths = field_validator("predict_path", "ready_path")(lambda cls, v: _check_path(v))

    @field_validator("metrics_path")
    @classmethod
    def _metrics_path(cls, v: str | None) -> str | None:
        return None if v is None else _check_path(v)


class DriftSignal(_Strict):
    """Where the grader reads the drift monitor's verdict."""

    signal: Literal["http", "prometheus", "webhook"] = Field(..., description=(
        "http: the grader GETs http_path and reads a JSON object; prometheus: the grader scrapes "
        "serving.metrics_path and reads a gauge; webhook: the service POSTs alerts (Alertmanager-style or "
        "plain JSON) to the URL the grader passes in $TAKEHOME_ALERT_WEBHOOK_URL."))
    http_path: str | None = Field(None, description="http signal: GET path, e.g. /drift")
    drift_field: str = Field("drift", description="http signal: boolean field meaning 'drift detected now'")
    features_field: str = Field("features", description="http signal: list of the feature names that drifted")
    prometheus_metric: str | None = Field(None, description="prometheus signal: gauge name; a sample > 0 means firing")
    feature_label: str = Field("feature", description="prometheus/webhook: label naming the drifted feature")

    @model_validator(mode="after")
    def _needs_source(self) -> "DriftSignal":
        if self.signal == "http":
            if not self.http_path:
                raise ValueError("drift.http_path is required when drift.signal is 'http'")
            _check_path(self.http_path)
        if self.signal == "prometheus" and not self.prometheus_metric:
            raise ValueError("drift.prometheus_metric is required when drift.signal is 'prometheus'")
        return self


class Logs(_Strict):
    """Where request logs can be found, besides the service's stdout and stderr."""

    paths: list[str] = Field(default_factory=list, description="Request log files the grader also searches: "
                             "relative to the repo on local, to the image's WORKDIR on docker (not read on kind: "
                             "log to stdout there).")


_VERSION_PLACEHOLDER = "{version}"


class _Commands(_Strict):
    deploy: str = Field(..., description="Makes a model version the served one. '{version}' is replaced "
                        "by v1 or v2 (also passed as $TAKEHOME_MODEL_VERSION).")
    rollback: str = Field(..., description="One command: serve the previous version again. Must be safe to "
                          "run twice and exit non-zero when it fails.")
    setup: str | None = Field(None, description="Optional one-off command after the build (e.g. fetch nothing, "
                              "prepare a registry).")

    @field_validator("deploy")
    @classmethod
    def _deploy_takes_version(cls, v: str) -> str:
        if _VERSION_PLACEHOLDER not in v:
            # Also accepted: reading $TAKEHOME_MODEL_VERSION; but a literal placeholder is the common case.
            if "TAKEHOME_MODEL_VERSION" not in v:
                raise ValueError("must contain '{version}' or read $TAKEHOME_MODEL_VERSION")
        return v


class LocalRuntime(_Commands):
    """Local runtime: an isolated virtualenv built from the declared requirements."""

    requirements: str = Field("requirements.txt", description="pip requirements file, relative to the repo root")
    start: str = Field(..., description="Long-running command that starts the server on $PORT.")


class DockerRuntime(_Commands):
    """Docker runtime: the candidate's Dockerfile."""

    dockerfile: str = "Dockerfile"
    context: str = "."


class KindRuntime(_Commands):
    """kind runtime: the candidate's manifests (plain YAML or kustomize) and image."""

    dockerfile: str = "Dockerfile"
    context: str = "."
    manifests: str = Field("k8s/", description="Directory of manifests or a kustomization")
    image_placeholder: str = Field("takehome-candidate:latest", description="Image reference in the manifests "
                                   "that the grader replaces with the image it built.")
    service: str = Field(..., description="Name of the Service that exposes the model server.")


class Runtimes(_Strict):
    local: LocalRuntime | None = None
    docker: DockerRuntime | None = None
    kind: KindRuntime | None = None

    def declared(self) -> list[str]:
        """The sections the candidate wrote, in this model's order."""
        return [name for name in type(self).model_fields if getattr(self, name)]


class Candidate(_Strict):
    name: str | None = None
    email: str | None = None


class Contract(_Strict):
    """The whole ``takehome.yaml``."""

    version: Literal[1] = Field(1, description="Contract format version")
    candidate: Candidate = Field(default_factory=Candidate)
    framework: str = Field("other", description="Serving framework, free text (fastapi, bentoml, kserve, ...)")
    flavor: Literal["sklearn", "torch"] = Field("sklearn", description="Which model artifact flavour is served")
    serving: Serving
    drift: DriftSignal
    logs: Logs = Field(default_factory=Logs)
    runtimes: Runtimes

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_a_number(cls, v: Any) -> Any:
        if isinstance(v, bool):  # True == 1 in Python, so Literal[1] alone would take it
            raise ValueError("Input should be 1")
        return v

    @model_validator(mode="after")
    def _at_least_one_runtime(self) -> "Contract":
        if not self.runtimes.declared():
            raise ValueError(f"runtimes must declare at least one of {', '.join(Runtimes.model_fields)}")
        if self.drift.signal == "prometheus" and not self.serving.metrics_path:
            raise ValueError("drift.signal 'prometheus' needs serving.metrics_path")
        return self

    def runtime(self, name: str) -> LocalRuntime | DockerRuntime | KindRuntime:
        """Return the section for runtime ``name`` or raise ContractError if the candidate did not declare it."""
        section = getattr(self.runtimes, name, None)
        if section is None:
            declared = self.runtimes.declared()
            raise ContractError(f"takehome.yaml declares no '{name}' runtime (it declares: {', '.join(declared)})."
                                f" Add a runtimes.{name} section or grade with --runtime {declared[0]}.")
        return section


def render_command(template: str, version: str | None = None) -> str:
    """Substitute ``{version}`` in a contract command."""
    return template if version is None else template.replace(_VERSION_PLACEHOLDER, version)


# --- loading with line numbers -------------------------------------------------------------

class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that remembers the line of every mapping key, so errors can point at it,
    and refuses anchors and aliases before anything is expanded."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases (*{event.anchor}) are not allowed in {CONTRACT_FILENAME}", event.start_mark)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise yaml.composer.ComposerError(
                None, None, f"YAML anchors (&{anchor}) and aliases are not allowed in {CONTRACT_FILENAME}",
                event.start_mark)
        return super().compose_node(parent, index)


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = yaml.SafeLoader.construct_mapping(loader, node, deep=True)
    lines = {}
    for key_node, _ in node.value:
        lines[str(key_node.value)] = key_node.start_mark.line + 1
    mapping["__lines__"] = lines  # stripped before validation
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _strip_lines(data: Any, prefix: tuple[str, ...], index: dict[tuple[str, ...], int]) -> Any:
    if isinstance(data, dict):
        lines = data.pop("__lines__", {})
        for key, line in lines.items():
            index[prefix + (key,)] = line
        return {k: _strip_lines(v, prefix + (str(k),), index) for k, v in data.items()}
    if isinstance(data, list):
        return [_strip_lines(v, prefix + (str(i),), index) for i, v in enumerate(data)]
    return data


def _line_for(loc: tuple[Any, ...], index: dict[tuple[str, ...], int]) -> int | None:
    path = tuple(str(p) for p in loc)
    while path:
        if path in index:
            return index[path]
        path = path[:-1]
    return None


def _too_big(source: str, size: int) -> ContractError:
    return ContractError(f"{source} is {size} bytes; the limit is {format_bytes(CONTRACT_MAX_BYTES)} "
                         "(a contract is a couple of KiB: keep data and scripts in other files)")


def parse_contract(text: str, source: str = CONTRACT_FILENAME) -> Contract:
    """Parse and validate contract text. Raises ContractError naming field and line for each problem,
    and for text over ``CONTRACT_MAX_BYTES``, YAML anchors / aliases, or absurd nesting."""
    if len(text) > CONTRACT_MAX_BYTES or len(text.encode("utf-8", "surrogatepass")) > CONTRACT_MAX_BYTES:
        raise _too_big(source, len(text.encode("utf-8", "surrogatepass")))
    try:
        raw = yaml.load(text, Loader=_LineLoader)  # _LineLoader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ContractError(f"{source}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    except RecursionError:
        raise ContractError(f"{source}: not valid YAML: nested too deeply") from None
    except ValueError as exc:  # a constructor's own limit, e.g. an integer of 5000 digits
        raise ContractError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ContractError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    index: dict[tuple[str, ...], int] = {}
    data = _strip_lines(raw, (), index)
    try:
        return Contract.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"])
            field = ".".join(str(p) for p in loc) or "(top level)"
            line = _line_for(loc, index)
            where = f" (line {line})" if line else ""
            msg = re.sub(r"^Value error, ", "", err["msg"])
            problems.append(f"{field}{where}: {msg}")
        if len(problems) > _MAX_PROBLEMS:
            problems[_MAX_PROBLEMS:] = [f"... and {len(problems) - _MAX_PROBLEMS} more"]
        raise ContractError(f"{source}: {len(problems)} problem(s) in the submission contract", problems) from None


def load_contract(repo_dir: Path) -> Contract:
    """Read ``takehome.yaml`` from a candidate repo."""
    path = repo_dir / CONTRACT_FILENAME
    if not path.is_file():
        raise ContractError(f"no {CONTRACT_FILENAME} at the root of the candidate repo ({repo_dir}). "
                            "Copy the template from the assignment's CONTRACT.md and fill it in.")
    try:
        with path.open("rb") as fh:
            data = fh.read(CONTRACT_MAX_BYTES + 1)  # never more: the file may be huge or still growing
            size = path.stat().st_size
    except OSError as exc:
        raise ContractError(f"{CONTRACT_FILENAME}: cannot be read: {exc}") from None
    if len(data) > CONTRACT_MAX_BYTES:
        raise _too_big(CONTRACT_FILENAME, max(size, len(data)))
    return parse_contract(decode_contract(data, CONTRACT_FILENAME), CONTRACT_FILENAME)


def decode_contract(data: bytes, source: str = CONTRACT_FILENAME) -> str:
    """The contract's bytes as text; ContractError for binary or non-UTF-8 content."""
    if b"\x00" in data:
        raise ContractError(f"{source} is not a text file (it contains NUL bytes); "
                            "it must be UTF-8 YAML")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractError(f"{source} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                            "save it as UTF-8") from None


def contract_json_schema() -> dict[str, Any]:
    """The JSON Schema of the contract, as shipped in ``assignment/takehome.schema.json``.

    It holds every rule the models enforce, the validators' cross-field rules included, so a tool
    that only reads the schema (the candidate's ``selfcheck.py``) refuses what the grader refuses.
    """
    schema = Contract.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "takehome.yaml: the submission contract"
    defs = schema["$defs"]
    path = {"pattern": "^/"}  # _check_path
    for name in ("predict_path", "ready_path"):
        defs["Serving"]["properties"][name].update(path)
    for branch in defs["Serving"]["properties"]["metrics_path"]["anyOf"]:
        if branch.get("type") == "string":
            branch.update(path)
    for runtime in ("LocalRuntime", "DockerRuntime", "KindRuntime"):  # _deploy_takes_version
        defs[runtime]["properties"]["deploy"]["pattern"] = "\\{version\\}|TAKEHOME_MODEL_VERSION"
    defs["DriftSignal"]["allOf"] = [  # DriftSignal._needs_source
        {"if": {"properties": {"signal": {"const": "http"}}, "required": ["signal"]},
         "then": {"required": ["http_path"], "properties": {"http_path": {"type": "string", **path}}}},
        {"if": {"properties": {"signal": {"const": "prometheus"}}, "required": ["signal"]},
         "then": {"required": ["prometheus_metric"],
                  "properties": {"prometheus_metric": {"type": "string", "minLength": 1}}}},
    ]
    defs["Runtimes"]["anyOf"] = [{"required": [name], "properties": {name: {"type": "object"}}}
                                 for name in Runtimes.model_fields]  # Contract._at_least_one_runtime
    schema["allOf"] = [{  # Contract._at_least_one_runtime: a prometheus signal needs the metrics path
        "if": {"properties": {"drift": {"properties": {"signal": {"const": "prometheus"}}, "required": ["signal"]}},
               "required": ["drift"]},
        "then": {"properties": {"serving": {"properties": {"metrics_path": {"type": "string"}}}}},
    }]
    return schema
