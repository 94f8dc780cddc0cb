"""Hard limits on what the grader accepts from a candidate: bytes, seconds, characters.

A candidate's service and contract file are untrusted. Every read the grader makes from them is
bounded twice: in size (so a 200 MB answer cannot exhaust the grader's memory) and in wall-clock
time (so a server that sends one byte per second cannot hang a phase). The byte caps sit far above
anything an honest submission produces; they are module constants, not configuration, because no
hiring team should need a grader that buffers more. Per-phase time budgets that a team may tune
stay in ``grader/defaults.yaml``; the deadlines here are the defaults of single calls.
"""

from __future__ import annotations

MiB = 1024 * 1024

# --- responses from the candidate's service ---------------------------------------------------
#: Control-plane answers (ready, predictions of a probe batch, /metrics, the drift signal).
#: A 16-row prediction is under 1 KiB and a busy /metrics page a few hundred KiB.
MAX_RESPONSE_BYTES = 8 * MiB
#: Data-plane answers (drift replay, open-loop load): one small batch each, sent by the thousand,
#: so the cap times the requests in flight must stay small.
MAX_LOAD_RESPONSE_BYTES = 1 * MiB

#: Default total deadline of one control-plane call: connect to last body byte.
CONTROL_DEADLINE_S = 5.0
#: Default total deadline of one readiness probe.
READY_PROBE_DEADLINE_S = 2.0
#: Default total deadline of one drift-signal read (stated in CONTRACT.md).
DRIFT_READ_DEADLINE_S = 2.0
#: Default total deadline of one replayed drift-phase request.
REPLAY_DEADLINE_S = 10.0

# --- requests the candidate sends to the grader -------------------------------------------------
#: Largest alert payload the webhook receiver accepts (Alertmanager batches are a few KiB).
WEBHOOK_MAX_BODY_BYTES = 1 * MiB
#: Seconds a webhook sender gets to deliver one whole request (headers and body).
WEBHOOK_REQUEST_DEADLINE_S = 10.0

# --- the contract file ------------------------------------------------------------------------
#: Largest ``takehome.yaml`` the grader parses; a real one is about 2 KiB.
CONTRACT_MAX_BYTES = 256 * 1024

# --- candidate text quoted in reports -------------------------------------------------------------
#: Characters of any one string kept in report evidence, phase details or errors: command output,
#: response and log excerpts. Runtimes clip earlier and tighter; this is the backstop.
EVIDENCE_MAX_CHARS = 32_000


def format_bytes(n: int) -> str:
    """``8388608`` -> ``"8 MiB"``; ``262144`` -> ``"256 KiB"``; odd sizes stay in bytes."""
    for unit, size in (("MiB", MiB), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"
