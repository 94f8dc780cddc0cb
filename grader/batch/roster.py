"""The roster a hiring team hands ``takehome batch``: who to grade, from where, at which ref.

CSV with a header (``name,repo[,ref]``) or YAML (a list of mappings, or ``{candidates: [...]}``).
Names become folder names, so they are checked here rather than discovered as odd paths later.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


class RosterError(ValueError):
    """The roster cannot be read: says which line or entry, and how to fix it."""


class RosterEntry(BaseModel):
    """One candidate: a folder-safe name, a git URL or local path, and an optional ref."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    repo: str = Field(min_length=1)
    ref: str | None = None

    @field_validator("name")
    @classmethod
    def _folder_safe(cls, value: str) -> str:
        if not _NAME.match(value) or value in (".", ".."):
            raise ValueError(f"{value!r} is not a usable name: letters, digits, '.', '_' and '-' only "
                             "(it names the candidate's report folder), at most 80 characters")
        return value

    @field_validator("ref")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None


def parse_roster(text: str, source: str = "roster") -> list[RosterEntry]:
    """Entries of a CSV or YAML roster (YAML when it does not look like a CSV header line)."""
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    rows: list[object]
    if "," in first and not first.startswith(("-", "candidates:", "{", "[")):
        reader = csv.DictReader(io.StringIO(text))
        missing = {"name", "repo"} - set(reader.fieldnames or [])
        if missing:
            raise RosterError(f"{source}: the CSV header must name the columns name,repo[,ref]; "
                              f"missing: {', '.join(sorted(missing))}")
        rows = [{k: (v or "").strip() for k, v in row.items() if k} for row in reader
                if any((v or "").strip() for v in row.values() if isinstance(v, str))]
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RosterError(f"{source} is neither a CSV with a name,repo header nor valid YAML: {exc}") from None
        if isinstance(data, dict) and "candidates" in data:
            data = data["candidates"]
        if not isinstance(data, list):
            raise RosterError(f"{source}: expected a list of candidates (name, repo, optional ref)")
        rows = data
    entries: list[RosterEntry] = []
    for n, row in enumerate(rows, start=1):
        try:
            entries.append(RosterEntry.model_validate(row))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in exc.errors())
            raise RosterError(f"{source}: candidate {n}: {problems}") from None
    if not entries:
        raise RosterError(f"{source} lists no candidates")
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            raise RosterError(f"{source}: the name {entry.name!r} appears twice; names must be unique "
                              "(each names a report folder)")
        seen.add(entry.name)
    return entries


def load_roster(path: Path) -> list[RosterEntry]:
    """Read and validate a roster file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise RosterError(f"cannot read the roster {path}: {exc.strerror or exc}") from None
    return parse_roster(text, str(path))
