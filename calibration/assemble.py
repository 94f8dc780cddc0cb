"""Assemble a gradable candidate repo from the corpus: the candidate's own files plus exactly what
the assignment archive gives every candidate (models, reference data, samples), committed to git.

A corpus entry is either a whole candidate (it has a ``takehome.yaml``) or an *overlay*: an
``overlay.yaml`` naming a ``base`` entry, files that replace the base's, and paths to ``delete``.
Flawed candidates are overlays on the reference solution, so each differs by one reviewed mistake.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

import yaml
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # assignment.build is imported when a candidate is assembled, not before
    from assignment.build import Flavor

CORPUS_DIR = Path(__file__).parent / "candidates"
OVERLAY_FILE = "overlay.yaml"
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "state", "logs")


class Replacement(BaseModel):
    """One textual edit: ``old`` must occur in ``path`` (exactly once unless ``all``), or assembly fails."""

    model_config = ConfigDict(extra="forbid")
    path: str
    old: str
    new: str
    all: bool = False


class Overlay(BaseModel):
    """``overlay.yaml`` of a flawed candidate: its one mistake, as edits to a base candidate."""

    model_config = ConfigDict(extra="forbid")
    base: str
    description: str
    delete: list[str] = Field(default_factory=list)
    replace: list[Replacement] = Field(default_factory=list)


def _inside(dest: Path, rel: str, name: str) -> Path:
    target = (dest / rel).resolve()
    if dest.resolve() not in target.parents:
        raise ValueError(f"{name}/{OVERLAY_FILE}: path {rel!r} escapes the repo")
    return target


def _apply_replacements(dest: Path, name: str, edits: list[Replacement]) -> None:
    for edit in edits:
        target = _inside(dest, edit.path, name)
        text = target.read_text(encoding="utf-8")
        count = text.count(edit.old)
        # A base that changed under the overlay must fail loudly, not assemble a different mistake.
        if count == 0 or (count > 1 and not edit.all):
            raise ValueError(f"{name}/{OVERLAY_FILE}: expected {'at least' if edit.all else 'exactly'} one "
                             f"occurrence of {edit.old!r} in {edit.path}, found {count}")
        target.write_text(text.replace(edit.old, edit.new), encoding="utf-8")


def corpus_entries() -> list[str]:
    """Names of every candidate in the corpus."""
    return sorted(p.name for p in CORPUS_DIR.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def _copy_entry(name: str, dest: Path) -> None:
    src = CORPUS_DIR / name
    if not src.is_dir():
        raise FileNotFoundError(f"no corpus candidate named {name!r} (have: {', '.join(corpus_entries())})")
    overlay_path = src / OVERLAY_FILE
    if overlay_path.exists():
        overlay = Overlay.model_validate(yaml.safe_load(overlay_path.read_text()))
        _copy_entry(overlay.base, dest)
        shutil.copytree(src, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(OVERLAY_FILE, "__pycache__"))
        _apply_replacements(dest, name, overlay.replace)
        for rel in overlay.delete:
            target = _inside(dest, rel, name)
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    else:
        shutil.copytree(src, dest, dirs_exist_ok=True, ignore=_IGNORE)


def _flavor(dest: Path) -> Flavor:
    data = yaml.safe_load((dest / "takehome.yaml").read_text())
    return cast("Flavor", str(data.get("flavor", "sklearn")))  # materialize() refuses an unknown one


def _git_commit(dest: Path, message: str) -> None:
    env = {"GIT_AUTHOR_NAME": "takehome corpus", "GIT_AUTHOR_EMAIL": "corpus@example.invalid",
           "GIT_COMMITTER_NAME": "takehome corpus", "GIT_COMMITTER_EMAIL": "corpus@example.invalid",
           "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(dest)}
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                ["git", "commit", "-q", "-m", message]):
        subprocess.run(cmd, cwd=dest, env=env, check=True, capture_output=True, timeout=60)


def assemble(name: str, dest: Path, artifacts_dir: Path | None = None,
             progress: Callable[[str], None] = lambda _m: None) -> Path:
    """Write corpus candidate ``name`` as a git repo at ``dest`` (replacing it) and return ``dest``."""
    from assignment.build import materialize
    from reference_model.paths import ensure_artifacts

    artifacts = artifacts_dir or ensure_artifacts()
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    _copy_entry(name, dest)
    flavor = _flavor(dest)
    progress(f"adding the assignment's {flavor} artifacts to {dest}")
    # What every candidate receives; their own files win where names collide (e.g. README.md).
    staging = dest.parent / f".{dest.name}.assignment"
    if staging.exists():
        shutil.rmtree(staging)
    materialize(staging, flavor, artifacts)
    for path in sorted(staging.rglob("*")):
        rel = path.relative_to(staging)
        target = dest / rel
        if path.is_dir():
            target.mkdir(exist_ok=True)
        elif not target.exists():
            shutil.copy2(path, target)
    shutil.rmtree(staging)
    _git_commit(dest, f"candidate {name}")
    return dest
