"""What one check learns that a later check (or the report) needs: typed, one definition each.

A check declares the facts it reads and writes in its spec (``needs`` / ``provides``, by field
name); ``grader.checks.registry`` verifies that every need has an earlier provider.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from grader.results import LatencySummary


@dataclass
class Facts:
    """Cross-check facts of one grading run."""

    #: deployment: ``deploy v1`` was followed by v1 being served (by fingerprint).
    v1_served: bool = False
    #: deployment: the rollout to v2 was confirmed by fingerprint; rollback needs it.
    v2_served: bool = False
    #: latency: the measured window, also the report's ``latency`` block.
    latency: LatencySummary | None = None

    def mark_served(self, version: str) -> None:
        """Record that ``version`` ("v1" or "v2") was confirmed served."""
        if version not in ("v1", "v2"):
            raise ValueError(f"unknown model version {version!r}")
        setattr(self, f"{version}_served", True)


#: The names a spec may list in ``needs`` / ``provides``.
FACT_NAMES: frozenset[str] = frozenset(f.name for f in fields(Facts))
