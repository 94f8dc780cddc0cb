"""Deploy v1, then roll out v2, each with the candidate's own deploy command; confirm by fingerprint."""

from __future__ import annotations

from grader.checks.spec import CheckSpec, ItemSpec, items
from grader.evidence import DeploymentEvidence
from grader.results import Outcome
from grader.session import Deadline, GradingSession
from harness.contract import render_command
from harness.fingerprint import VersionReading

ITEMS = items("deployment",
              v1_served="v1 deployed with the candidate's deploy command and served",
              v2_rollout="v2 rolled out through the candidate's deploy step and served")
V1_SERVED, V2_ROLLOUT = ITEMS


#: When predictions match no reference version, stop waiting once they have been identical for
#: this many probes spanning at least STABLE_S seconds: the candidate's behaviour has settled.
STABLE_PROBES = 3
STABLE_S = 2.0


def wait_for_version(s: GradingSession, version: str, timeout_s: float, phase: str,
                     interval_s: float = 0.5) -> tuple[VersionReading, float, list[str]]:
    """Poll the fingerprint until ``version`` is served or the timeout passes.

    Returns the last reading, the seconds it took, and the sequence of versions seen (evidence).
    Predictions that match no reference (a preprocessing bug) cannot become ``version``; waiting
    ends once they are stable, so the caller can fingerprint by the candidate's own signature.
    """
    start = s.clock.monotonic()
    seen: list[str] = []
    reading = s.fingerprint(phase)
    seen.append(reading.version)
    stable: list[tuple[float, list[float] | None]] = [(s.clock.monotonic(), s.last_probe_predictions())]
    while reading.version != version and s.clock.monotonic() - start < timeout_s:
        last = stable[-1][1]
        if reading.version == "unknown" and last is not None:
            # The trailing run of identical predictions: enough probes, spanning enough time?
            n = 0
            for _, preds in reversed(stable):
                if preds != last:
                    break
                n += 1
            if n >= STABLE_PROBES and stable[-1][0] - stable[-n][0] >= STABLE_S:
                break
        s.clock.sleep(interval_s)
        reading = s.fingerprint(phase)
        stable.append((s.clock.monotonic(), s.last_probe_predictions() if reading.version == "unknown" else None))
        if reading.version != seen[-1]:
            seen.append(reading.version)
    return reading, s.clock.monotonic() - start, seen


def deploy(s: GradingSession, version: str, item: ItemSpec, deadline: Deadline) -> Outcome:
    """Run ``deploy <version>`` and check, from predictions alone, that ``version`` is then served."""
    command = render_command(s.commands.deploy, version)
    s.progress(f"deploy {version}: {command}")
    s.event("deploy", f"deploy {version} start")
    result = s.runtime.run_command(f"deploy {version}", command,
                                   timeout_s=min(s.config.timeouts.deploy, deadline.remaining()),
                                   env={"TAKEHOME_MODEL_VERSION": version})
    s.event("deploy", f"deploy {version} end", exit_code=result.exit_code)
    wait_s = min(s.config.thresholds.rollout_timeout_s, deadline.remaining())
    reading, took, seen = wait_for_version(s, version, wait_s, f"deploy-{version}")
    predictions = s.last_probe_predictions()
    evidence = {"deploy": result.evidence(), "fingerprint": reading.evidence(),
                "versions_seen": seen, "seconds_until_served": round(took, 2)}

    if reading.version == version:
        if version == "v1" or reading.basis == "reference":
            s.facts.mark_served(version)
            if predictions is not None:
                s.fingerprinter.learn(version, predictions)
        if not result.ok:
            return Outcome.partial(item, 0.5, f"{version} is served, but the deploy command failed "
                                   f"(exit {result.exit_code}{', timed out' if result.timed_out else ''})",
                                   **evidence)
        return Outcome.passed(item, f"{version} served {took:.1f}s after the deploy command "
                              f"(fingerprint basis: {reading.basis})", **evidence)

    # Predictions match no reference version: learn the candidate's own signature instead, so a
    # preprocessing bug is scored once (by correctness), not again here and in rollback.
    if reading.version == "unknown" and result.ok and predictions is not None:
        other = "v1" if version == "v2" else "v2"
        s.fingerprinter.learn(version, predictions)
        if version == "v1":
            s.facts.mark_served("v1")
            return Outcome.passed(item, "deploy v1 succeeded; predictions match no reference version, so v1 "
                                  "is identified from here on by the service's own responses", **evidence)
        reread = s.fingerprinter.classify(predictions)
        if other in s.fingerprinter.signatures and reread.version == version:
            s.facts.mark_served(version)
            return Outcome.passed(item, f"{version} served: responses changed from the v1 signature "
                                  "(predictions match no reference version)", **evidence)
        return Outcome.failed(item, f"deploy {version} exited 0 but the responses did not change from v1's",
                              **evidence)
    if result.ok:
        msg = (f"deploy {version} exited 0, but the live model is {reading.version} after "
               f"{took:.0f}s (decided from predictions, not from what the service claims)")
    else:
        msg = f"deploy {version} failed (exit {result.exit_code}) and {reading.version} is served"
    return Outcome.failed(item, msg, **evidence)


def _prove_deploy_v1(s: GradingSession, first: Outcome, deadline: Deadline) -> Outcome:
    """The service booted on v1, so the first ``deploy v1`` proved nothing: run it again now that
    v2 is live, then ``deploy v2`` to restore the order the rest of the grading expects."""
    s.progress("the service booted on v1: deploying v1 again from v2, to see the deploy command switch")
    again = deploy(s, "v1", V1_SERVED, deadline)
    deadline.check()
    restore = deploy(s, "v2", V2_ROLLOUT, deadline)
    evidence = {**first.evidence, "booted_on": "v1", "redeploy_v1": again.evidence,
                "restore_v2": {"status": restore.status, "message": restore.message}}
    if again.status != "pass":
        return Outcome.failed(V1_SERVED, "the service booted on v1, so the first deploy v1 showed nothing; "
                              f"run again from v2 it did not serve v1: {again.message}", **evidence)
    note = "" if restore.status == "pass" else f" (restoring v2 afterwards failed: {restore.message})"
    return Outcome.passed(V1_SERVED, "the service booted on v1; deploy v1 run again from v2 served v1 "
                          f"{again.evidence.get('seconds_until_served')}s after the command{note}", **evidence)


def run(s: GradingSession, deadline: Deadline) -> list[Outcome]:
    """Deployment section: v1 via deploy, then v2 via deploy (the rollout).

    What the service serves before any deploy is read first: a service that boots on v1 would pass
    a ``deploy v1`` that does nothing, so there ``deploy v1`` is tried again once v2 is live.
    """
    boot = s.fingerprint("boot", remember_failed=False)
    s.event("deploy", "before the first deploy", version=boot.version)
    v1 = deploy(s, "v1", V1_SERVED, deadline)
    deadline.check()
    v2 = deploy(s, "v2", V2_ROLLOUT, deadline)
    if boot.version == "v1" and boot.basis == "reference" and v1.status == "pass":
        if v2.status == "pass":
            v1 = _prove_deploy_v1(s, v1, deadline)
        else:
            v1 = Outcome.partial(V1_SERVED, 0.5, "v1 is served, but the service booted on v1 and the v2 rollout "
                                 "failed, so the deploy command was never seen switching to v1",
                                 **{**v1.evidence, "booted_on": "v1"})
    return [v1, v2]


SPEC = CheckSpec(
    section="deployment", title="Deployment and rollout", items=ITEMS, run=run, evidence=DeploymentEvidence,
    # Two deploys, each a command plus the wait until its version is served.
    timeout_s=lambda c: 2 * (c.timeouts.deploy + c.thresholds.rollout_timeout_s),
    provides=("v1_served", "v2_served"))
