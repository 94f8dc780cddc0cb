"""Runtime lookup by name. Implementations are imported lazily so that, for example, the local
runtime never imports the docker or kubernetes clients."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from harness.errors import GraderFault

if TYPE_CHECKING:  # pragma: no cover
    from harness.runtimes.base import Runtime

_IMPLEMENTATIONS: dict[str, str] = {
    "local": "harness.runtimes.local:LocalRuntime",
    "docker": "harness.runtimes.docker:DockerRuntime",
    "kind": "harness.runtimes.kind:KindRuntime",
    "kubernetes": "harness.runtimes.kubernetes:KubernetesRuntime",
}

NAMES: tuple[str, ...] = tuple(_IMPLEMENTATIONS)


def get(name: str) -> type["Runtime"]:
    """The runtime class called ``name``."""
    try:
        target = _IMPLEMENTATIONS[name]
    except KeyError:
        raise GraderFault(f"unknown runtime {name!r}; choose one of {', '.join(NAMES)}") from None
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise GraderFault(f"runtime {name!r} is not available in this installation: {exc}") from None
    return getattr(module, attr)
