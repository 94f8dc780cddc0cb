"""The grading lifecycle: fetch -> contract -> build -> start -> deployment -> correctness ->
drift -> latency -> rollback -> robustness -> observability -> teardown -> report.

Every phase has its own timeout. A phase that fails or times out scores zero for what depends
on it and the run goes on with what it can still check. Teardown always runs (crash, timeout,
Ctrl-C), after the collectors have grabbed logs, and a report is always produced.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from grader.checks.registry import SPECS
from grader.checks.spec import CheckSpec
from grader.config import GraderConfig
from grader.results import CandidateInfo, GradeReport, MachineInfo, Outcome, PhaseResult, utcnow
from grader.scoring import Missing, score_sections, total
from grader.session import INTERRUPT, Deadline, GradingSession, Interrupted, ReferenceModels, check_interrupted
from harness.cleanup import CleanupStack
from harness.contract import Contract, ContractError, load_contract
from harness.errors import GraderFault, HarnessError, PhaseTimeout, SubmissionError
from harness.fetch import fetch_candidate
from harness.isolation import records as run_records
from harness.fingerprint import Fingerprinter, representative_subset
from harness.runtimes.base import Runtime, RuntimeContext
from harness.runtimes.registry import get as runtime_class
from harness.service import ServiceClient
from harness.traffic.baseline import baseline_records

GRADER_VERSION = "0.1.0"

@dataclass
class GradeRequest:
    """What to grade, where, and how."""

    repo: str
    runtime: str = "local"
    ref: str | None = None
    config: GraderConfig | None = None
    artifacts_dir: Path | None = None
    keep: bool = False  # keep the work dir (and, for kind, the cluster) for debugging
    progress: Callable[[str], None] = lambda _m: None


@dataclass
class _Run:
    req: GradeRequest
    config: GraderConfig
    report: GradeReport
    cleanup: CleanupStack = field(default_factory=CleanupStack)
    outcomes: dict[str, list[Outcome]] = field(default_factory=dict)
    missing: dict[str, Missing] = field(default_factory=dict)
    t0: float = field(default_factory=time.monotonic)
    runtime: Runtime | None = None  # set as soon as it exists: teardown and the report need it
    notes: dict[str, str] = field(default_factory=dict)  # phase -> what its "ok" row should say

    @contextmanager
    def phase(self, name: str, timeout_s: float | None = None) -> Iterator[Deadline]:
        """Time a phase, record how it ended; SubmissionError and timeouts are recorded, not raised."""
        started = utcnow()
        start = time.monotonic()
        deadline = Deadline(timeout_s or 3600.0, name)
        check_interrupted()
        self.req.progress(f"▶ {name}")
        status, message, error = "ok", "", None
        try:
            yield deadline
        except PhaseTimeout as exc:
            status, message = "timeout", str(exc)
            raise
        except SubmissionError as exc:
            status, message, error = "failed", str(exc), exc.describe()
            raise
        except (KeyboardInterrupt, Interrupted):
            status, message = "interrupted", "interrupted"
            raise
        except HarnessError as exc:
            status, message, error = "error", str(exc), exc.describe()
            raise
        except Exception as exc:
            status, message, error = "error", f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=8)
            raise
        else:
            message = self.notes.pop(name, "")
        finally:
            took = time.monotonic() - start
            self.report.phases.append(PhaseResult(name=name, status=status, started_at=started,
                                                  duration_s=round(took, 3), message=message, error=error))
            mark = {"ok": "✓", "timeout": "⏱", "interrupted": "■"}.get(status, "✗")
            self.req.progress(f"{mark} {name} ({took:.1f}s){': ' + message if message else ''}")


def _reference_models(artifacts_dir: Path, flavor: str) -> ReferenceModels:
    from reference_model.predictors import load_predictor  # lazy: loads sklearn (and torch for that flavour)

    def predict(version: str, rows: list[dict]) -> Any:
        return load_predictor(artifacts_dir, flavor, version).predict_records(rows)

    return ReferenceModels(predict=predict)


def _fingerprinter(reference: ReferenceModels, seed: int, n_rows: int, atol: float) -> Fingerprinter:
    import numpy as np

    pool = baseline_records(max(400, n_rows * 25), seed + 1)
    v1 = np.asarray(reference.predict("v1", pool))
    v2 = np.asarray(reference.predict("v2", pool))
    # Informative rows (v1 and v2 disagree), chosen to look like ordinary traffic: they are replayed
    # often enough to fill part of the candidate's drift window.
    keep = representative_subset(pool, np.flatnonzero(Fingerprinter.informative(v1, v2, atol)), n_rows, seed + 2)
    if len(keep) < n_rows // 2:
        raise GraderFault("the reference v1 and v2 models barely differ: cannot fingerprint the live version")
    rows = [pool[i] for i in keep]
    return Fingerprinter(rows, {"v1": v1[keep], "v2": v2[keep]}, atol)


def grade(req: GradeRequest) -> GradeReport:
    """Grade one candidate repo on one runtime. Always returns a report; never raises for a bad submission."""
    from grader.config import load_config

    config = req.config or load_config()
    seed, seed_source = config.seed()
    run_id = uuid.uuid4().hex[:12]
    report = GradeReport(run_id=run_id, runtime=req.runtime, candidate=CandidateInfo(repo=req.repo),
                         config_digest=config.digest(), seed=config.seed_provenance(), grader_version=GRADER_VERSION,
                         machine=MachineInfo.here())
    run = _Run(req, config, report)
    work = Path(tempfile.mkdtemp(prefix=f"takehome-{run_id}-"))
    if not req.keep:
        # If this process is SIGKILLed, `takehome cleanup` finds the work dir by this record.
        run_records.write({"name": f"grading-{run_id}", "grader_pid": os.getpid(), "work_dir": str(work)})
        run.cleanup.push("forget the grading record", lambda: run_records.remove(f"grading-{run_id}"))
        run.cleanup.push("remove work dir", lambda: shutil.rmtree(work, ignore_errors=True))
    else:
        req.progress(f"keeping work dir {work}")
    def on_signal(signum: int, _frame: object) -> None:
        INTERRUPT.set()
        raise Interrupted(signal.Signals(signum).name)

    in_main = _in_main_thread()
    previous = {}
    INTERRUPT.clear()
    if in_main:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, on_signal)
    session: GradingSession | None = None
    runtime: Runtime | None = None
    try:
        if seed_source == "built-in default":
            req.progress("note: no scenario seed set (config scenario_seed or $TAKEHOME_SCENARIO_SEED); "
                         "using the built-in default")
        report.timeline.clear()
        with run.phase("fetch"):
            fetched = fetch_candidate(req.repo, work / "repo", ref=req.ref, timeout_s=config.timeouts.fetch)
            report.candidate.commit = fetched.commit
        with run.phase("contract"):
            contract = _load_contract(fetched.path)
            report.candidate.name = contract.candidate.name
            report.candidate.framework = contract.framework
            report.candidate.flavor = contract.flavor
            commands = contract.runtime(runtime_class(req.runtime).section_name())
        session, runtime = _bring_up(run, contract, commands, fetched.path, work, seed)
        for spec in SPECS:  # the checks, in lifecycle order (grader/checks/registry.py)
            _run_section(run, session, spec)
        if runtime is not None:
            _collect(run, runtime)
    except (SubmissionError, ContractError) as exc:
        report.status = "broken_submission"
        report.error = exc.describe() if isinstance(exc, HarnessError) else str(exc)
        if runtime is not None:
            _collect(run, runtime)
    except (KeyboardInterrupt, Interrupted) as exc:
        report.status = "interrupted"
        report.error = f"grading was interrupted ({type(exc).__name__}); teardown ran and partial results are kept"
    except Exception as exc:  # noqa: BLE001 - a grader fault: keep the traceback in the report, never lose it
        report.status = "grader_error"
        report.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=12)}"
    finally:
        # A second Ctrl-C must not cut the teardown short: ignore stop signals until it is done.
        if in_main:
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
        _teardown(run, session)
        if in_main:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return _finish(run, session)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _load_contract(path: Path) -> Contract:
    try:
        return load_contract(path)
    except ContractError as exc:
        raise SubmissionError(str(exc).splitlines()[0], details="\n".join(exc.problems)) from None


def _bring_up(run: _Run, contract: Contract, commands: Any, repo_dir: Path, work: Path,
              seed: int) -> tuple[GradingSession, Runtime]:
    """Build and start the service, set up the drift observer, and return the session."""
    req, config = run.req, run.config
    from harness.observers.factory import make_observer
    from harness.observers.webhook import WebhookReceiver

    candidate_env: dict[str, str] = {}
    receiver = None
    cls = runtime_class(req.runtime)
    ok, why = cls.is_available()
    if not ok:
        raise GraderFault(f"runtime '{req.runtime}' is not available here: {why}")
    ctx = RuntimeContext(run_id=run.report.run_id, repo_dir=repo_dir, work_dir=work, contract=contract,
                         config=config, cleanup=run.cleanup, progress=req.progress, candidate_env=candidate_env,
                         keep=req.keep)
    runtime = cls(ctx)
    run.runtime = runtime
    # The reference models load (and the probe rows are chosen) while the candidate builds and
    # starts, not after: about a second of every grading that was in no phase.
    artifacts = req.artifacts_dir or _default_artifacts()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="reference")
    run.cleanup.push("stop the reference loader", lambda: pool.shutdown(wait=True, cancel_futures=True))
    reference = _reference_models(artifacts, contract.flavor)
    probes = pool.submit(_fingerprinter, reference, seed, config.traffic.probe_rows,
                         config.thresholds.correctness_atol)
    with run.phase("build", config.timeouts.build):
        if contract.drift.signal == "webhook":
            # Before build: on kind, build() creates the namespace whose network policy and env
            # must already know the webhook URL; and grader_host() may create the cluster.
            receiver = WebhookReceiver(host=runtime.bind_host())
            receiver.start()
            run.cleanup.push("stop webhook receiver", receiver.stop)
            candidate_env["TAKEHOME_ALERT_WEBHOOK_URL"] = receiver.url_for(runtime.grader_host())
        runtime.build()
        run.notes["build"] = _build_note(getattr(runtime, "build_info", {}))
    with run.phase("start", config.timeouts.start + config.timeouts.ready):
        runtime.up()
        client = ServiceClient(runtime.endpoint(), contract.serving, timeout_s=config.load.timeout_s)
        run.cleanup.push("close control client", client.close)
        ready = client.wait_ready(config.timeouts.ready, alive=runtime.alive)
        if not ready.ok:
            raise SubmissionError(f"the service never became ready at {contract.serving.ready_path} within "
                                  f"{config.timeouts.ready:g}s (last: {ready.status or ready.error})",
                                  details=_log_tail(runtime))
        fingerprinter = probes.result()  # normally ready long before the service is
        observer = make_observer(contract.drift, runtime.endpoint(), contract.serving.metrics_path, receiver)
        observer.start()
        run.cleanup.push("stop drift observer", observer.stop)
    session = GradingSession(run_id=run.report.run_id, config=config, contract=contract, runtime=runtime,
                             client=client, reference=reference, fingerprinter=fingerprinter, observer=observer,
                             seed=seed, progress=req.progress, commands=commands, t0=run.t0)
    return session, runtime


def _build_note(info: dict[str, Any]) -> str:
    """One line on how the candidate's environment came to be (the local runtime's build facts)."""
    if info.get("cache") == "hit":
        return "cached env reused"
    if "installer" not in info:
        return ""
    return f"installed with {info['installer']}" + (f" ({info['installer_note']})" if info.get("installer_note") else "")


def _default_artifacts() -> Path:
    from reference_model.paths import ensure_artifacts

    return ensure_artifacts()


def _log_tail(runtime: Runtime, lines: int = 40) -> str:
    try:
        return "\n".join(runtime.logs().splitlines()[-lines:])
    except Exception as exc:  # noqa: BLE001 - a collector must not mask the real error
        return f"(logs unavailable: {exc})"


def _run_section(run: _Run, s: GradingSession, spec: CheckSpec) -> None:
    """Run one section's check; a failure becomes the missing outcomes' status and reason, never an abort."""
    section = spec.section
    try:
        with run.phase(section, spec.timeout_s(run.config)) as deadline:
            outcomes = spec.run(s, deadline)
            run.outcomes[section] = checked_outcomes(spec, outcomes)
    except PhaseTimeout as exc:
        run.missing[section] = Missing("timeout", f"phase timed out: {exc}")
    except SubmissionError as exc:
        run.missing[section] = Missing("skipped", f"phase failed: {exc}")
    except (KeyboardInterrupt, Interrupted):
        raise
    except Exception as exc:  # noqa: BLE001 - a check's own bug must not lose the other sections
        run.missing[section] = Missing("error", f"grader error in this phase: {type(exc).__name__}: {exc}")


def checked_outcomes(spec: CheckSpec, outcomes: list[Outcome]) -> list[Outcome]:
    """The check's outcomes, verified against its spec: declared items only, and evidence that fits
    the spec's model (normalised to JSON data). A mismatch is the grader's bug, never the candidate's."""
    from pydantic import ValidationError

    undeclared = sorted({o.item for o in outcomes} - set(spec.item_ids))
    if undeclared:
        raise GraderFault(f"check {spec.section} returned undeclared item(s) {undeclared}")
    for o in outcomes:
        try:
            o.evidence = spec.evidence.model_validate(o.evidence).dump()
        except ValidationError as exc:
            raise GraderFault(f"check {spec.section}.{o.item} wrote evidence that does not fit "
                              f"{spec.evidence.__name__}: {exc}") from None
    return outcomes


def _collect(run: _Run, runtime: Runtime) -> None:
    """Collectors: grab logs and diagnostics before anything is torn down (every run: a service
    that died quietly between phases is only explained by what it wrote before dying)."""
    try:
        alive = runtime.alive()
    except Exception:  # noqa: BLE001
        alive = False
    try:
        diag = runtime.diagnostics()
    except Exception as exc:  # noqa: BLE001
        diag = {"error": f"diagnostics failed: {exc}"}
    run.report.phases.append(PhaseResult(name="collect", status="ok", started_at=utcnow(), duration_s=0.0,
                                         message="diagnostics collected before teardown; service "
                                         + ("still running" if alive else "NOT running"),
                                         details={"diagnostics": diag, "log_tail": _log_tail(runtime, 80)}))


def _teardown(run: _Run, session: GradingSession | None) -> None:
    start = time.monotonic()
    started = utcnow()
    records = run.cleanup.run_all()
    failed = [r for r in records if not r.ok]
    run.report.phases.append(PhaseResult(
        name="teardown", status="ok" if not failed else "error", started_at=started,
        duration_s=round(time.monotonic() - start, 3),
        message=f"{len(records)} cleanup step(s), {len(failed)} failed",
        error="; ".join(f"{r.description}: {r.error}" for r in failed) or None,
        details={"steps": [{"step": r.description, "ok": r.ok, "seconds": round(r.duration_s, 3),
                            **({"error": r.error} if r.error else {})} for r in records]}))
    run.req.progress(f"✓ teardown ({len(records)} steps, {len(failed)} failed)")
    if run.runtime is not None:
        try:
            run.report.isolation = run.runtime.isolation_info()
        except Exception as exc:  # noqa: BLE001 - a collector must not lose the report
            run.report.isolation = {"error": f"isolation facts unavailable: {exc}"}
        hits: list[str] = (run.report.isolation or {}).get("limits_hit", [])  # type: ignore[assignment]
        for hit in hits:
            run.req.progress(f"! {hit}")


def _finish(run: _Run, session: GradingSession | None) -> GradeReport:
    report = run.report
    missing = dict(run.missing)
    if report.status != "completed":
        for section in run.config.rubric:
            if section not in run.outcomes:
                missing.setdefault(section, Missing("skipped", f"not checked: {report.status.replace('_', ' ')}"))
    report.sections = score_sections(run.config, run.outcomes, missing)
    report.score, report.max_score = total(report.sections)
    if session is not None:
        report.timeline = list(session.timeline)
        report.latency = session.facts.latency
    report.finished_at = utcnow()
    report.duration_s = round(time.monotonic() - run.t0, 2)
    try:
        from grader.reports.followups import followup_questions

        report.followups = followup_questions(report)
    except Exception as exc:  # noqa: BLE001 - follow-ups are a nicety; never lose the report for them
        report.followups = [f"(follow-up questions unavailable: {exc})"]
    return report
