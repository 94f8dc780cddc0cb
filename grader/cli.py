"""The ``takehome`` command line. Each command parses, calls one library function, and maps the
outcome to an exit code. Results go to stdout; progress goes to stderr."""

from __future__ import annotations

import sys
import time
from enum import IntEnum
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from harness.runtimes import registry  # light: runtime implementations are imported on first use

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False,
                  help="Grade MLOps take-home submissions: deploy, replay drift, load, roll back, score.")
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


class Exit(IntEnum):
    """Exit codes. 0 means grading completed, whatever the score."""

    OK = 0
    BELOW_MIN_SCORE = 1
    USAGE = 2
    BROKEN_SUBMISSION = 3
    GRADER_FAULT = 4
    INTERRUPTED = 130


def _progress(start: float):
    def emit(message: str) -> None:
        err.print(f"[dim]{time.monotonic() - start:7.1f}s[/dim] {message}", markup=True, highlight=False)
    return emit


def exit_code_for(status: str, score: float, min_score: float | None) -> Exit:
    """Map a report's status and score to the process exit code."""
    if status == "broken_submission":
        return Exit.BROKEN_SUBMISSION
    if status == "grader_error":
        return Exit.GRADER_FAULT
    if status == "interrupted":
        return Exit.INTERRUPTED
    if min_score is not None and score < min_score:
        return Exit.BELOW_MIN_SCORE
    return Exit.OK


@app.command()
def grade(
    repo: str = typer.Option(..., "--repo", "-r", help="Candidate repo: a git URL or a local path."),
    runtime: str = typer.Option("local", "--runtime",
                                help=f"Where to deploy it: {registry.choices_text(notes=True)}."),
    ref: Optional[str] = typer.Option(None, "--ref", help="Commit, tag or branch to grade (default: as fetched)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Grader config YAML (overrides the "
                                          "shipped defaults key by key; see grader/defaults.yaml)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Where the reports are written (default: "
                                           "reports/<repo name>/<commit>/, so no grading overwrites another)."),
    min_score: Optional[float] = typer.Option(None, "--min-score", help="Exit 1 when the score is below this "
                                              "(for CI gating)."),
    keep: bool = typer.Option(False, "--keep", help="Keep the work dir for debugging."),
    artifacts: Optional[Path] = typer.Option(None, "--artifacts", help="Reference artifacts dir "
                                             "(default: build/artifacts, built if missing)."),
    unsafe_local: bool = typer.Option(False, "--unsafe-local", help="On the local runtime, run candidate code "
                                      "WITHOUT the bubblewrap sandbox (for machines without bwrap or user "
                                      "namespaces; only for code you trust). The report says so."),
    full: bool = typer.Option(False, "--full", help="Print the whole scorecard instead of the summary."),
    audience: str = typer.Option("team", "--audience", help="team: everything; candidate: a report a candidate "
                                 "may read (scores kept, the hidden drift scenarios withheld)."),
) -> None:
    """Grade one candidate repo and write report.json, scorecard.md, report.html, junit.xml, results.json.

    Exit codes: 0 graded (any score), 1 below --min-score, 2 usage or config error (a --repo path
    that does not exist included: no report is written), 3 broken submission (cannot be fetched,
    built or started), 4 grader fault (a runtime unavailable here included), 130 interrupted.
    """
    from grader.config import ConfigError, load_config
    from grader.lifecycle import GradeRequest, grade as run_grade
    from grader.reports.markdown import render_markdown
    from grader.reports.terminal import render_summary
    from grader.reports.write import default_report_dir, write_reports

    if runtime not in registry.NAMES:
        err.print(f"error: unknown runtime {runtime!r}; choose one of: {', '.join(registry.NAMES)}")
        raise typer.Exit(Exit.USAGE)
    _check_audience(audience)
    from grader.reports.audience import for_audience
    from harness.fetch import local_source_problem

    # A path that is not there is the operator's typo, not a broken submission: no report, no score.
    problem = local_source_problem(repo)
    if problem is not None:
        err.print(f"error: --repo {problem}", markup=False, soft_wrap=True)
        raise typer.Exit(Exit.USAGE)
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(Exit.USAGE) from None
    if unsafe_local:
        cfg = cfg.model_copy(update={"local": cfg.local.model_copy(update={"sandbox": False})})
    start = time.monotonic()
    progress = _progress(start)
    progress(f"grading {repo} on the {runtime} runtime")
    report = run_grade(GradeRequest(repo=repo, runtime=runtime, ref=ref, config=cfg, artifacts_dir=artifacts,
                                    keep=keep, progress=progress))
    report = for_audience(report, audience)  # type: ignore[arg-type]
    if out_dir is None:
        out_dir = default_report_dir(report)
    paths = write_reports(report, out_dir)
    # soft_wrap: no hard wrap at the console width when stdout is a pipe or a CI log.
    out.print(render_markdown(report) if full else render_summary(report, paths), markup=False, soft_wrap=True)
    progress(f"score {report.score:g} / {report.max_score:g} ({report.status}); reports in {out_dir}/: "
             + ", ".join(p.name for p in paths.values()))
    raise typer.Exit(exit_code_for(report.status, report.score, min_score))


def _check_audience(audience: str) -> None:
    from grader.reports.audience import AUDIENCES

    if audience not in AUDIENCES:
        err.print(f"error: unknown audience {audience!r}; choose one of: {', '.join(AUDIENCES)}")
        raise typer.Exit(Exit.USAGE)


@app.command("report")
def rerender(
    report_json: Path = typer.Argument(..., help="A report.json written by takehome grade."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Where the reports are written (not the report's "
                                 "own folder: its files would be replaced)."),
    audience: str = typer.Option("team", "--audience", help="team: everything; candidate: the hidden drift "
                                 "scenarios withheld, every score kept (a copy to send the candidate)."),
) -> None:
    """Write every report format again from a report.json, for the team or for the candidate.

    Exit codes: 0 written, 2 the report cannot be read or the folder is the report's own.
    """
    from pydantic import ValidationError

    from grader.reports.audience import for_audience
    from grader.reports.write import write_reports
    from grader.results import GradeReport

    _check_audience(audience)
    try:
        report = GradeReport.model_validate_json(report_json.read_bytes())
    except (OSError, ValidationError, ValueError) as exc:
        err.print(f"error: cannot read {report_json} as a grader report: {str(exc)[:300]}", markup=False)
        raise typer.Exit(Exit.USAGE) from None
    if out_dir.resolve() == report_json.resolve().parent:
        err.print(f"error: --out {out_dir} is the folder of {report_json.name}; choose another folder",
                  markup=False)
        raise typer.Exit(Exit.USAGE)
    paths = write_reports(for_audience(report, audience), out_dir)  # type: ignore[arg-type]
    out.print(f"{audience} reports in {out_dir}/: " + ", ".join(p.name for p in paths.values()), markup=False)


@app.command()
def validate(path: Path = typer.Argument(Path("."), help="A candidate repo or a takehome.yaml file.")) -> None:
    """Check a takehome.yaml against the submission contract; errors name the field and the line."""
    from harness.contract import CONTRACT_FILENAME, ContractError, load_contract, parse_contract

    try:
        if path.is_dir():
            contract = load_contract(path)
        else:
            contract = parse_contract(path.read_text(encoding="utf-8"), str(path))
    except ContractError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(Exit.BROKEN_SUBMISSION) from None
    except OSError as exc:
        err.print(f"error: cannot read {path}: {exc}")
        raise typer.Exit(Exit.USAGE) from None
    out.print(f"{CONTRACT_FILENAME} is valid: framework {contract.framework}, flavor {contract.flavor}, "
              f"drift signal {contract.drift.signal}, runtimes: {', '.join(contract.runtimes.declared())}")


@app.command("config")
def show_config(config: Optional[Path] = typer.Option(None, "--config", "-c", help="A config to validate "
                                                      "and show merged over the defaults.")) -> None:
    """Print the effective grader configuration (defaults merged with --config) as YAML."""
    import yaml

    from grader.config import ConfigError, load_config

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(Exit.USAGE) from None
    out.print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), markup=False)


@app.command()
def runtimes() -> None:
    """Show which runtimes can run on this machine, and why not when one cannot."""
    for name in registry.NAMES:
        try:
            ok, why = registry.get(name).is_available()
        except Exception as exc:  # noqa: BLE001 - report, don't crash
            ok, why = False, str(exc)
        out.print(f"{name:10s} {'available' if ok else 'unavailable'}: {why}", markup=False)


@app.command()
def cleanup(
    build_cache: bool = typer.Option(False, "--build-cache", help="Also remove the candidates' cached build "
                                     "results (kept between gradings so a re-grade builds fast)."),
    older_than_days: float = typer.Option(0.0, "--older-than-days", min=0, help="With --build-cache: only "
                                          "builds not used for this many days."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Grader config whose kubernetes: "
                                          "section names an existing cluster to clean too (--runtime kubernetes)."),
) -> None:
    """Remove what gradings that were killed left behind, on every runtime.

    Local (and the kind runtime's command sandboxes): the sandboxes (every process in them, their
    relays and cgroups) and the work dirs of gradings whose grader process is gone. kind (and,
    with --config, the kubernetes runtime's cluster): the namespaces of those gradings.
    Docker: every labelled container, network and image.
    Gradings still running on this host are spared. The python:3.11-slim stand-in is never
    removed. With --build-cache, the candidates' build results go too (the next grading of those
    repos builds from scratch).
    """
    from grader.config import ConfigError, load_config
    from harness.runtimes.base import StaleCleanup

    options = StaleCleanup(grader_config=(lambda: load_config(config)) if config is not None else None,
                           build_cache_dir=load_config().local.resolved_cache_dir() if build_cache else None,
                           older_than_s=older_than_days * 86400)
    try:
        for cls in registry.cleanup_order():
            for line in cls.cleanup_stale(options):
                out.print(line, markup=False)
    except ConfigError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(Exit.USAGE) from None


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("reports/demo"), "--out", "-o", help="Where the reports are written."),
    candidate: str = typer.Option("reference-fastapi", "--candidate", help="Which bundled candidate to grade."),
    runtime: str = typer.Option("local", "--runtime",
                                help=f"{registry.choices_text(registry.names(without_config=True))}."),
) -> None:
    """Build the artifacts, assemble a bundled candidate (default: the reference solution), grade it."""
    from calibration.assemble import assemble

    progress = _progress(time.monotonic())
    progress(f"assembling candidate '{candidate}' (reference artifacts + its code)")
    repo = assemble(candidate, Path("build/candidates") / candidate, progress=progress)
    unsafe = False
    runtime_cls = registry.find(runtime)
    if runtime_cls is not None and runtime_cls.service_sandboxed:
        from harness.isolation.bwrap import install_hint, probe

        ok, why = probe()
        if not ok:  # the bundled candidates are the kit's own code: grading them unsandboxed is safe
            progress(f"note: no sandbox here ({why}); the bundled candidate is graded without one. "
                     f"For candidates' code, {install_hint()}")
            unsafe = True
    grade(repo=str(repo), runtime=runtime, ref=None, config=None, out_dir=out_dir, min_score=None, keep=False,
          artifacts=None, unsafe_local=unsafe, full=False, audience="team")


@app.command()
def practice(
    repo: str = typer.Option(".", "--repo", "-r", help="Your submission: a path (default: here) or a git URL."),
    runtime: str = typer.Option("local", "--runtime", help=f"{registry.choices_text(notes=True)}."),
    out_dir: Path = typer.Option(Path("reports/practice"), "--out", "-o", help="Where the reports are written."),
    unsafe_local: bool = typer.Option(False, "--unsafe-local", help="Without the bubblewrap sandbox (your own "
                                      "code, on a machine without bwrap)."),
    full: bool = typer.Option(False, "--full", help="Print the whole scorecard instead of the summary."),
) -> None:
    """A practice grading for candidates: the real lifecycle (build, deploy, drift, latency, rollback,
    robustness, observability) with the kit's public scenarios, never a hiring team's seed.

    The report says PRACTICE at the top. Your real grade uses the same procedure on traffic from
    a seed only the hiring team has, so the drift scenarios differ; everything else is the same.
    """
    import os

    from grader.config import SEED_ENV

    if os.environ.pop(SEED_ENV, None) is not None:
        err.print(f"note: ${SEED_ENV} is ignored: a practice grading always uses the public scenarios")
    grade(repo=repo, runtime=runtime, ref=None, config=None, out_dir=out_dir, min_score=None, keep=False,
          artifacts=None, unsafe_local=unsafe_local, full=full, audience="team")


@app.command()
def batch(
    roster: Path = typer.Argument(..., help="CSV (header name,repo[,ref]) or YAML list of candidates."),
    out_dir: Path = typer.Option(Path("reports/batch"), "--out", "-o", help="The batch folder: one subfolder "
                                 "per candidate (<name>/<commit>/), batch.sqlite, cohort.csv and cohort.html."),
    runtime: str = typer.Option("local", "--runtime", help=f"Where to deploy: {registry.choices_text()}."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, max=16, help="Gradings at once. 1 keeps latency honest "
                             "on a small machine; each report says how many gradings shared it."),
    resume: bool = typer.Option(False, "--resume", help="Continue a batch in --out: finished candidates are "
                                "kept, unfinished ones graded again."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Grader config YAML for every grading."),
    cap: float = typer.Option(1800.0, "--cap", help="Wall-clock cap per grading, seconds: past it the grading "
                              "is stopped (its teardown runs) and the batch goes on."),
    artifacts: Optional[Path] = typer.Option(None, "--artifacts", help="Reference artifacts dir."),
    on_cluster: bool = typer.Option(False, "--on-cluster", help="Grade each candidate as a Kubernetes Job on "
                                    "the cluster of the config's kubernetes section (grading_jobs: image, "
                                    "namespace, resources); --jobs Jobs at a time. Roster repos must be git URLs."),
) -> None:
    """Grade a cohort: every candidate in ROSTER, each in its own process and folder, resumable.

    Exit codes: 0 every candidate graded (any score), 1 some grading did not complete (broken,
    timed out, crashed), 2 usage error (bad roster, folder holds another batch), 130 interrupted
    (run again with --resume).
    """
    import threading

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    from grader.batch.cohort import write_cohort
    from grader.batch.roster import RosterError, load_roster
    from grader.batch.runner import BatchOptions, run_batch
    from grader.batch.state import BatchState, StateError
    from grader.config import ConfigError, load_config

    if runtime not in registry.NAMES:
        err.print(f"error: unknown runtime {runtime!r}; choose one of: {', '.join(registry.NAMES)}")
        raise typer.Exit(Exit.USAGE)
    try:
        entries = load_roster(roster)
        load_config(config)  # a bad config is one error now, not one per candidate
    except (RosterError, ConfigError) as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(Exit.USAGE) from None
    state = BatchState(out_dir)
    try:
        counts = state.sync(entries, resume)
    except StateError as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(Exit.USAGE) from None
    names = [e.name for e in entries]
    todo = state.pending(names)
    err.print(f"batch: {len(entries)} candidates, {len(todo)} to grade ({counts['kept']} already done), "
              f"{jobs} at a time, into {out_dir}/", markup=False)
    opts = BatchOptions(out_dir=out_dir, runtime=runtime, jobs=jobs, config=config, cap_s=cap, artifacts=artifacts)
    grader_on_cluster = None
    if on_cluster:
        grader_on_cluster = _cluster_grader(out_dir, config)
        opts.grade_fn = grader_on_cluster
    stop = threading.Event()
    interrupted = False
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=False) as bar:
        overall = bar.add_task("cohort", total=len(todo))
        lines: dict[str, TaskID] = {}
        lock = threading.Lock()

        def progress(name: str, line: str) -> None:
            with lock:
                if name not in lines:
                    lines[name] = bar.add_task("", total=None)
                bar.update(lines[name], description=f"  {name}: {line[:90]}")

        def done(name: str) -> None:
            with lock:
                if name in lines:
                    bar.remove_task(lines.pop(name))
                bar.advance(overall)
                row = state.row(name)
                bar.console.print(f"  {name}: {row.status or row.state}"
                                  + (f", {row.score:g}/{row.max_score:g}" if row.score is not None else "")
                                  + (f" ({row.wall_s:.0f} s)" if row.wall_s else ""), markup=False)
            write_cohort(out_dir, state)

        def interrupting() -> None:
            err.print("interrupted: stopping the running gradings (their teardown runs); "
                      "run the same command with --resume to finish", markup=False)

        try:
            run_batch(state, names, opts, progress, done, stop, on_interrupt=interrupting)
        except KeyboardInterrupt:
            interrupted = True
    if grader_on_cluster is not None and not interrupted:
        grader_on_cluster.finish()
    csv_path, html_path = write_cohort(out_dir, state)
    rows = state.rows()
    state.close()
    unfinished = [r.name for r in rows if r.state != "done"]
    failed = [r.name for r in rows if r.state == "done" and r.status != "completed"]
    err.print(f"cohort: {csv_path}, {html_path}" + (f"; not completed: {', '.join(failed)}" if failed else "")
              + (f"; still to grade: {', '.join(unfinished)}" if unfinished else ""), markup=False)
    if interrupted or unfinished:
        raise typer.Exit(Exit.INTERRUPTED)
    raise typer.Exit(Exit.BELOW_MIN_SCORE if failed else Exit.OK)


def _cluster_grader(out_dir: Path, config: Optional[Path]) -> Any:
    """The Job-per-candidate grader of ``batch --on-cluster``, its Secret written; exits 2/4 on failure."""
    import hashlib

    from grader.batch.cluster_runner import ClusterError, ClusterGrader, api_from_config
    from grader.config import ConfigError, load_config

    try:
        cfg = load_config(config)
        value, source = cfg.seed()
    except ConfigError as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(Exit.USAGE) from None
    seed = None if source == "built-in default" else value  # the Jobs' graders then use their own built-in
    batch_id = hashlib.sha256(str(out_dir.resolve()).encode()).hexdigest()[:8]  # stable across --resume
    try:
        grader = ClusterGrader(api_from_config(cfg.kubernetes), cfg.grading_jobs, batch_id, seed=seed,
                               config_text=config.read_text(encoding="utf-8") if config else None)
        grader.prepare()
    except ClusterError as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(Exit.GRADER_FAULT) from None
    err.print(f"on the cluster: Jobs in namespace {cfg.grading_jobs.namespace!r}, image {cfg.grading_jobs.image}, "
              f"batch {batch_id}" + ("" if seed is not None else "; no scenario seed set: the built-in one"),
              markup=False)
    return grader


@app.command("grading-jobs-setup")
def grading_jobs_setup(config: Optional[Path] = typer.Option(None, "--config", "-c",
                                                             help="Grader config (its grading_jobs section).")) -> None:
    """Print what a cluster admin applies once for batch --on-cluster (namespace, ServiceAccount,
    its cluster-admin binding): takehome grading-jobs-setup | kubectl apply -f -"""
    import yaml

    from grader.batch.cluster_jobs import setup_objects
    from grader.config import load_config

    jobs_cfg = load_config(config).grading_jobs
    out.print(yaml.safe_dump_all(setup_objects(jobs_cfg.namespace, jobs_cfg.service_account), sort_keys=False),
              markup=False, soft_wrap=True, end="")


@app.command("job-run", hidden=True)
def job_run(
    repo: str = typer.Option(..., "--repo"),
    ref: Optional[str] = typer.Option(None, "--ref"),
    config: Optional[Path] = typer.Option(None, "--config", "-c"),
) -> None:
    """Inside a grading Job: grade on the kubernetes runtime, then print the report archive."""
    import os
    import subprocess
    import tempfile

    from grader.batch.cluster_jobs import pack_reports
    from grader.batch.in_cluster import write_in_cluster_kubeconfig
    from grader.batch.runner import TAKEHOME

    work = Path(tempfile.mkdtemp(prefix="takehome-job-"))
    env = dict(os.environ)
    if not env.get("KUBECONFIG"):
        try:
            env["KUBECONFIG"] = str(write_in_cluster_kubeconfig(work / "kubeconfig"))
        except RuntimeError as exc:
            err.print(f"error: {exc}", markup=False, soft_wrap=True)
            raise typer.Exit(Exit.USAGE) from None
    argv = [*TAKEHOME, "grade", "--repo", repo,
            "--runtime", "kubernetes", "--out", str(work / "out")]
    if ref:
        argv += ["--ref", ref]
    if config and config.is_file():
        argv += ["--config", str(config)]
    code = subprocess.call(argv, stdin=subprocess.DEVNULL, stdout=sys.stderr, env=env)
    sys.stderr.flush()
    if (work / "out").is_dir():
        print("\n".join(pack_reports(work / "out")), flush=True)
    raise typer.Exit(code)


@app.command()
def compare(
    a: Path = typer.Argument(..., help="A report.json, or the folder holding it."),
    b: Path = typer.Argument(..., help="The other one."),
) -> None:
    """Two candidates side by side: total, every section, and each item whose points differ."""
    from grader.batch.cohort import compare_table, load_report

    try:
        left, right = load_report(a), load_report(b)
    except (OSError, ValueError) as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(Exit.USAGE) from None
    out.print(compare_table(left, right), markup=False, soft_wrap=True)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(Exit.INTERRUPTED)


if __name__ == "__main__":
    main()
