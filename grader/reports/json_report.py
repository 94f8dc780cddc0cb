"""The report as JSON (``report.json``) and the JSON Schema it conforms to.

``render_json`` is the lossless format: every other report can be rebuilt from it with
``GradeReport.model_validate_json``. Keys are sorted at every level, so two runs with the same
results give byte-identical files, and non-finite floats become ``null`` (JSON has no NaN).

``grader/report.schema.json`` is ``report_json_schema()`` written to disk. After changing
``grader/results.py`` regenerate it with::

    python -m grader.reports.json_report --write-schema
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from grader.results import REPORT_SCHEMA_VERSION, GradeReport

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "report.schema.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def report_data(report: GradeReport) -> dict[str, Any]:
    """The report as plain JSON-compatible data (unknown evidence types become strings)."""
    return _finite(report.model_dump(mode="json", fallback=str))


def render_json(report: GradeReport) -> str:
    """The report as pretty, key-sorted JSON text ending in a newline."""
    return json.dumps(report_data(report), indent=2, sort_keys=True, ensure_ascii=False,
                      allow_nan=False) + "\n"


def report_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of ``report.json``, generated from ``GradeReport``."""
    schema = GradeReport.model_json_schema(mode="serialization")
    schema["$schema"] = JSON_SCHEMA_DIALECT
    schema["title"] = f"Take-home grade report, schema version {REPORT_SCHEMA_VERSION}"
    schema["$comment"] = ("Generated from grader/results.py; regenerate with "
                          "`python -m grader.reports.json_report --write-schema`.")
    return schema


def schema_text() -> str:
    """The schema exactly as stored in ``grader/report.schema.json``."""
    return json.dumps(report_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``--write-schema`` rewrites the schema file; ``--check`` fails when it is stale."""
    parser = argparse.ArgumentParser(prog="python -m grader.reports.json_report",
                                     description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write-schema", action="store_true", help=f"write {SCHEMA_PATH.name}")
    group.add_argument("--check", action="store_true", help="exit 1 if the schema file is stale")
    args = parser.parse_args(argv)
    text = schema_text()
    if args.write_schema:
        SCHEMA_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {SCHEMA_PATH}", file=sys.stderr)
        return 0
    current = SCHEMA_PATH.read_text(encoding="utf-8") if SCHEMA_PATH.exists() else ""
    if current != text:
        print(f"{SCHEMA_PATH} is stale: run python -m grader.reports.json_report --write-schema",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
