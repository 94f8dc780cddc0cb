"""``takehome.schema.json``: the JSON Schema of the submission contract, generated from the model.

The committed file is ``json.dumps(contract_json_schema(), indent=2)`` plus a newline; a test keeps
it in sync with ``harness.contract``. Regenerate with ``python -m assignment.schema --write``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from assignment import ASSIGNMENT_DIR

SCHEMA_PATH: Path = ASSIGNMENT_DIR / "takehome.schema.json"


def schema_text() -> str:
    """The schema file's exact content."""
    from harness.contract import contract_json_schema

    return json.dumps(contract_json_schema(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``--write`` regenerates the schema file; ``--check`` (the default) exits 1 when it is stale."""
    parser = argparse.ArgumentParser(prog="python -m assignment.schema", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite {SCHEMA_PATH.name}")
    args = parser.parse_args(argv)
    text = schema_text()
    current = SCHEMA_PATH.read_text(encoding="utf-8") if SCHEMA_PATH.exists() else None
    if current == text:
        print(f"{SCHEMA_PATH} is up to date")
        return 0
    if args.write:
        SCHEMA_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {SCHEMA_PATH}")
        return 0
    print(f"{SCHEMA_PATH} is out of date: run python -m assignment.schema --write", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
