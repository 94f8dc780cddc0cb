"""Runtime lookup by name: the one list of runtimes the CLI, the lifecycle and calibrate read.

Implementations are imported lazily so that, for example, the local runtime never imports the
docker or kubernetes clients; what the command line must say before any of them is imported
(the ``--runtime`` help) is kept here, next to the import path.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.errors import GraderFault

if TYPE_CHECKING:  # pragma: no cover
    from harness.runtimes.base import Runtime


@dataclass(frozen=True)
class Entry:
    """One registered runtime, as known without importing it."""

    target: str  # "module:Class"
    #: What the ``--runtime`` help adds after the name, in parentheses ("" when the name says it all).
    note: str = ""
    #: It grades only with settings of a grader config (``--config``), so ``demo`` (which takes none) leaves it out.
    needs_config: bool = False


_ENTRIES: dict[str, Entry] = {
    "local": Entry("harness.runtimes.local:LocalRuntime"),
    "docker": Entry("harness.runtimes.docker:DockerRuntime"),
    "kind": Entry("harness.runtimes.kind:KindRuntime", note="a kind cluster it makes or reuses"),
    "kubernetes": Entry("harness.runtimes.kubernetes:KubernetesRuntime",
                        note="the cluster the grader config's kubernetes: section names", needs_config=True),
}

NAMES: tuple[str, ...] = tuple(_ENTRIES)


def names(*, without_config: bool = False) -> tuple[str, ...]:
    """Every runtime's name in registry order; ``without_config``: only those that grade on the defaults."""
    return tuple(n for n, e in _ENTRIES.items() if not (without_config and e.needs_config))


def choices_text(chosen: Iterable[str] | None = None, notes: bool = False) -> str:
    """``a, b or c``: the runtimes for a help text, each with its note when ``notes``."""
    parts = [f"{n} ({_ENTRIES[n].note})" if notes and _ENTRIES[n].note else n for n in (chosen or NAMES)]
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} or {parts[-1]}"


def get(name: str) -> type["Runtime"]:
    """The runtime class called ``name``."""
    try:
        target = _ENTRIES[name].target
    except KeyError:
        raise GraderFault(f"unknown runtime {name!r}; choose one of {', '.join(NAMES)}") from None
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise GraderFault(f"runtime {name!r} is not available in this installation: {exc}") from None
    return getattr(module, attr)


def find(name: str) -> type["Runtime"] | None:
    """The runtime class called ``name``, or None when there is none or it cannot be imported here."""
    try:
        return get(name)
    except GraderFault:
        return None


def cleanup_order() -> list[type["Runtime"]]:
    """Every runtime class, in the order ``takehome cleanup`` runs their ``cleanup_stale()``.

    Those with ``cleanup_first`` (the clusters) go first: they spare a namespace by the grading
    records that the local runtime's cleanup then removes. Imports every runtime.
    """
    classes = [get(n) for n in NAMES]
    return sorted(classes, key=lambda cls: not cls.cleanup_first)  # stable: registry order otherwise
