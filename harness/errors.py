"""The harness's exception tree. SDK and subprocess errors are translated here at the boundary,
keeping the command and its output, so a report can say what went wrong without a traceback."""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the harness raises on purpose."""

    def __init__(self, message: str, *, details: str = "", command: str | None = None) -> None:
        super().__init__(message)
        self.details = details  # e.g. the tail of a build log
        self.command = command

    def describe(self) -> str:
        """Message, command and output, as shown in a report."""
        parts = [str(self)]
        if self.command:
            parts.append(f"command: {self.command}")
        if self.details:
            parts.append(self.details)
        return "\n".join(parts)


class SubmissionError(HarnessError):
    """The candidate's submission is broken: it cannot be fetched, built, started or deployed."""


class GraderFault(HarnessError):
    """The grader or its environment failed (not the candidate's fault)."""


class RuntimeUnavailable(GraderFault):
    """The requested runtime cannot run on this machine (no Docker engine, no kind CLI...)."""


class PhaseTimeout(HarnessError):
    """A lifecycle phase ran past its timeout."""
