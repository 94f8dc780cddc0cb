"""Render the candidate-facing documents from their single sources of truth.

* ``PROMPT.md.j2`` -> the prompt (the archive's ``README.md``): every volume, threshold, timeout
  and rubric weight comes from the grader configuration (``grader/defaults.yaml``, optionally
  merged with a hiring team's file), the feature table from ``reference_model.schema``.
* ``CONTRACT.md.j2`` -> ``CONTRACT.md``: the field tables come from the pydantic ``Contract``.

The rendered files are committed beside their templates (``PROMPT.md`` flavour-neutral, with the
default configuration) and a test keeps them in sync. Regenerate with::

    python -m assignment.docs --write      # rewrite assignment/PROMPT.md and CONTRACT.md
    python -m assignment.docs --check      # exit 1 if they are stale
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import jinja2
from pydantic import BaseModel

from assignment import ASSIGNMENT_DIR

CORPUS_DIR = ASSIGNMENT_DIR.parent / "calibration" / "candidates"

Flavor = Literal["sklearn", "torch"]

#: Candidate-facing description of each drift scenario kind the grader can play. The grader's
#: configuration lists the kinds it plays; a kind missing here is an error at render time.
SCENARIO_DESCRIPTIONS: dict[str, str] = {
    "mean_shift": "the typical value of a numeric feature moves up or down (values stay valid)",
    "unit_change": "an upstream system starts sending a numeric feature in other units "
                   "(every value multiplied by a constant factor)",
    "new_category": "a categorical feature starts receiving values never seen in training "
                    "(valid input: answer it, and let the monitor notice)",
    "category_mix": "the mix of a categorical feature's known categories changes strongly",
    "missing_spike": "the nullable feature is null far more often than in training",
    "frozen_feature": "a feature stops varying: every row carries the same value, as when an "
                      "upstream default gets stuck",
}

#: Descriptions for contract fields whose pydantic model carries none.
FIELD_NOTES: dict[str, str] = {
    "Contract.candidate": "Who you are; shown on the scorecard.",
    "Contract.serving": "How the grader talks to your service (section below).",
    "Contract.drift": "Where the grader reads your drift monitor's verdict (section below).",
    "Contract.logs": "Extra places where your request logs are written (section below).",
    "Contract.runtimes": "How to build, start, deploy and roll back on each runtime (sections below).",
    "Candidate.name": "Your name.",
    "Candidate.email": "Your email address.",
    "Runtimes.local": "The local runtime (an isolated virtualenv on the grader's machine).",
    "Runtimes.docker": "The docker runtime (your Dockerfile, one container).",
    "Runtimes.kind": "The kind runtime (your image and Kubernetes manifests in a kind cluster).",
    "DockerRuntime.dockerfile": "Path of the Dockerfile, relative to the repo root.",
    "DockerRuntime.context": "Build context directory, relative to the repo root.",
    "KindRuntime.dockerfile": "Path of the Dockerfile, relative to the repo root.",
    "KindRuntime.context": "Build context directory, relative to the repo root.",
}

#: Section introductions for contract models whose class carries no docstring.
MODEL_NOTES: dict[str, str] = {
    "Candidate": "Who submitted this repository.",
    "Runtimes": "The runtimes your submission supports; declare at least one.",
}

PROMPT_TEMPLATE = "PROMPT.md.j2"
CONTRACT_TEMPLATE = "CONTRACT.md.j2"
PROMPT_PATH = ASSIGNMENT_DIR / "PROMPT.md"
CONTRACT_PATH = ASSIGNMENT_DIR / "CONTRACT.md"


# --- formatting filters ----------------------------------------------------------------------

def num(value: float | int) -> str:
    """A number for prose: thousands separators, no trailing ``.0`` (2000 -> "2,000", 5.0 -> "5")."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.6f}".rstrip("0").rstrip(".")


def pct(value: float) -> str:
    """A share as a percentage (0.001 -> "0.1%", 0.99 -> "99%")."""
    return num(round(value * 100, 6)) + "%"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(ASSIGNMENT_DIR)),
        undefined=jinja2.StrictUndefined,  # a missing config key is an error, never a blank
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # Markdown, not HTML
    )
    env.filters["num"] = num
    env.filters["pct"] = pct
    return env


# --- prompt ----------------------------------------------------------------------------------

def grader_settings(config_path: Path | None = None) -> dict[str, Any]:
    """The grader's effective configuration as plain data (defaults merged with ``config_path``)."""
    from grader.config import load_config

    return load_config(config_path).model_dump(mode="python")


#: The smallest submission known to score full marks, and the reference, whose sizes the prompt quotes.
SMALLEST_FULL_SCORE = "independent-flask"
REFERENCE_SOLUTION = "reference-fastapi"


def code_lines(folder: Path) -> int:
    """Lines of Python under ``folder`` that are neither blank nor only a comment."""
    return sum(1 for path in sorted(folder.rglob("*.py")) for line in path.read_text(encoding="utf-8").splitlines()
               if line.strip() and not line.strip().startswith("#"))


def prompt_context(settings: dict[str, Any], flavor: Flavor | None = None) -> dict[str, Any]:
    """Everything ``PROMPT.md.j2`` reads: the configuration, rubric rows, scenarios and features."""
    from grader.config import LoadConfig
    from reference_model.schema import feature_schema

    unknown = [k for k in settings["traffic"]["scenarios"] if k not in SCENARIO_DESCRIPTIONS]
    if unknown:
        raise ValueError(f"no candidate-facing description for scenario kind(s) {unknown}: "
                         "add them to assignment.docs.SCENARIO_DESCRIPTIONS")
    sections = []
    for key, section in settings["rubric"].items():
        items = [{"key": k, "title": i["title"], "points": i["points"]} for k, i in section["items"].items()]
        sections.append({"key": key, "title": section["title"], "items": items,
                         "points": sum(i["points"] for i in items)})
    traffic = settings["traffic"]
    load = LoadConfig(**settings["load"])
    return {
        **settings,
        "flavor": flavor,
        "rubric_sections": sections,
        "rubric_total": sum(s["points"] for s in sections),
        "switch_points": sum(s["points"] for s in sections if s["key"] in ("deployment", "rollback")),
        "scenarios": [{"kind": k, "description": SCENARIO_DESCRIPTIONS[k]} for k in traffic["scenarios"]],
        "baseline_polls": traffic["baseline_rows"] // traffic["poll_every_rows"],
        # As grader/checks/latency.py runs it: the warm-up comes before the measured part, which
        # lasts measured_floor_s() when the verdict is already settled and duration_s otherwise.
        "latency_requests": int(settings["load"]["rate_rps"] * settings["load"]["duration_s"]),
        "latency_min_requests": round(settings["load"]["rate_rps"] * load.measured_floor_s()),
        "latency_total_s": settings["load"]["warmup_s"] + settings["load"]["duration_s"],
        "latency_min_total_s": round(settings["load"]["warmup_s"] + load.measured_floor_s(), 2),
        "latency_ends_early": load.ends_early(),
        "features": feature_schema()["features"],
        "smallest_solution_lines": code_lines(CORPUS_DIR / SMALLEST_FULL_SCORE),
        "reference_solution_lines": code_lines(CORPUS_DIR / REFERENCE_SOLUTION),
    }


def render_prompt(flavor: Flavor | None = None, config_path: Path | None = None) -> str:
    """The prompt as Markdown; ``flavor=None`` gives the flavour-neutral text committed as PROMPT.md."""
    context = prompt_context(grader_settings(config_path), flavor)
    return _environment().get_template(PROMPT_TEMPLATE).render(**context)


# --- contract reference ----------------------------------------------------------------------

def _type_name(annotation: Any) -> str:
    """A readable type for the field tables (``"v1" | "v2"``, ``string or null``...)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{a!r}`".replace("'", '"') for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(annotation, str(annotation))


def _default(field: Any) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        return "(see section)" if field.default_factory not in (list, dict) else "`[]`"
    if field.default is None:
        return "`null`"
    return f"`{field.default}`"


def model_rows(model: type[BaseModel]) -> list[dict[str, str]]:
    """One table row per field of ``model``: name, type, default, description."""
    rows = []
    for name, field in model.model_fields.items():
        description = field.description or FIELD_NOTES.get(f"{model.__name__}.{name}", "")
        rows.append({"name": name, "type": _type_name(field.annotation), "default": _default(field),
                     "description": " ".join(description.split()).replace("|", "\\|")})
    return rows


def contract_models() -> list[type[BaseModel]]:
    """The contract's models in the order CONTRACT.md documents them."""
    from harness.contract import (Candidate, Contract, DockerRuntime, DriftSignal, KindRuntime, LocalRuntime,
                                  Logs, Runtimes, Serving)

    return [Contract, Candidate, Serving, DriftSignal, Logs, Runtimes, LocalRuntime, DockerRuntime, KindRuntime]


def contract_context() -> dict[str, Any]:
    """Everything ``CONTRACT.md.j2`` reads."""
    from grader.checks.observability import REPLAY_REQUESTS, REPLAY_ROWS
    from harness.contract import CONTRACT_FILENAME, CONTRACT_VERSION
    from harness.limits import CONTRACT_MAX_BYTES, MAX_RESPONSE_BYTES, MiB
    from harness.observers.factory import READ_TIMEOUT_S
    from harness.protocol import V2_DATATYPES
    from harness.runtimes.local import LOG_FILE_CAP
    from reference_model.schema import FEATURES, NULLABLE_FEATURES, feature_schema

    tables = {m.__name__: {"doc": (m.__doc__ or MODEL_NOTES.get(m.__name__, "")).strip().replace("``", "`"),
                           "rows": model_rows(m)} for m in contract_models()}
    return {"tables": tables, "contract_filename": CONTRACT_FILENAME, "contract_version": CONTRACT_VERSION,
            "feature_order": FEATURES, "v2_datatypes": V2_DATATYPES, "nullable": sorted(NULLABLE_FEATURES),
            "features": feature_schema()["features"], "drift_read_timeout_s": READ_TIMEOUT_S,
            "log_search_mib": LOG_FILE_CAP // 2**20, "contract_max_kib": CONTRACT_MAX_BYTES // 1024,
            "response_max_mib": MAX_RESPONSE_BYTES // MiB, "replay_requests": REPLAY_REQUESTS,
            "replay_rows": REPLAY_ROWS}


def render_contract() -> str:
    """CONTRACT.md as Markdown."""
    return _environment().get_template(CONTRACT_TEMPLATE).render(**contract_context())


# --- CLI -------------------------------------------------------------------------------------

def rendered_documents() -> dict[Path, str]:
    """The committed rendered files and what they should contain now."""
    return {PROMPT_PATH: render_prompt(None), CONTRACT_PATH: render_contract()}


def main(argv: list[str] | None = None) -> int:
    """``--write`` regenerates the committed Markdown; ``--check`` exits 1 if any is stale."""
    parser = argparse.ArgumentParser(prog="python -m assignment.docs", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite assignment/PROMPT.md and CONTRACT.md")
    mode.add_argument("--check", action="store_true", help="exit 1 if a committed file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in rendered_documents().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.write:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        else:
            stale.append(path)
    for path in stale:
        print(f"{path} is out of date: run python -m assignment.docs --write", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
