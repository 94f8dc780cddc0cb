"""The calibration corpus and its expectations, without grading anything (fast), plus one e2e run.

* expected.yaml validates against the rubric and names exactly the corpus;
* every overlay still applies to its base (a base that changed under it fails here, loudly), its
  Python compiles and its takehome.yaml validates;
* the comparison flags a synthetic mismatch and passes a synthetic match; the table renders.

The full calibration (every candidate graded for real) is ``make calibrate``, not this suite.
"""

from __future__ import annotations

import io
import json
import py_compile
from pathlib import Path

import pytest
import yaml

from calibration.assemble import CORPUS_DIR, OVERLAY_FILE, Overlay, assemble, corpus_entries
from calibration.calibrate import (ExpectedFile, Expectation, Range, compare, evidence_for, interval, load_expected,
                                   render_markdown, render_table, section_bounds)
from grader.config import load_config
from grader.results import GradeReport, CandidateInfo, ItemResult, SectionResult
from harness.contract import load_contract
from reference_model.paths import ensure_artifacts

RUBRIC = load_config().rubric
OVERLAYS = [n for n in corpus_entries() if (CORPUS_DIR / n / OVERLAY_FILE).exists()]


@pytest.fixture(scope="module")
def expected() -> ExpectedFile:
    return load_expected(rubric=RUBRIC)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    return ensure_artifacts()


# --- expected.yaml ------------------------------------------------------------------------------

def test_expected_names_exactly_the_corpus(expected: ExpectedFile) -> None:
    assert sorted(expected.candidates) == corpus_entries()


def test_every_flawed_candidate_loses_something_and_every_reference_loses_nothing(expected: ExpectedFile) -> None:
    for name, exp in expected.candidates.items():
        not_full = [s for s in RUBRIC if section_bounds(exp, s, RUBRIC[s].max_points)[2] != "full"]
        if name.startswith(("reference-", "independent-")):  # full-score solutions
            assert not not_full and not exp.items, name
            assert exp.min_total is not None and exp.min_total >= 95, name
        else:
            assert not_full, f"{name} is expected to keep every section: what does it calibrate?"
            # One mistake: one section below full marks, unless the expectation explains how the
            # same mistake shows in each section it names.
            assert len(not_full) == 1 or all(s in (exp.description or "") for s in not_full), (name, not_full)


def test_overlay_descriptions_name_the_section_they_must_lose(expected: ExpectedFile) -> None:
    for name in OVERLAYS:
        overlay = Overlay.model_validate(yaml.safe_load((CORPUS_DIR / name / OVERLAY_FILE).read_text()))
        exp = expected.candidates[name]
        lost = [s for s in RUBRIC if section_bounds(exp, s, RUBRIC[s].max_points)[2] != "full"]
        assert any(s in overlay.description for s in lost), (name, lost, overlay.description)


def test_tolerances_are_strict_for_deterministic_sections(expected: ExpectedFile) -> None:
    assert expected.tol("drift") == expected.tolerance["default"] <= 0.5
    assert expected.tol("latency") > expected.tol("rollback")


@pytest.mark.parametrize("bad,message", [
    ({"candidates": {"x": {}}}, "tolerance"),
    ({"tolerance": {"default": 0.5}, "candidates": {"x": {"loses": ["rollbak"]}}}, "unknown section"),
    ({"tolerance": {"default": 0.5}, "candidates": {"x": {"items": {"rollback.fast": "zero"}}}}, "unknown item"),
    ({"tolerance": {"default": 0.5}, "candidates": {"x": {"sections": {"drift": {"min": 30}}}}}, "above the maximum"),
    ({"tolerance": {"default": 0.5}, "candidates": {"x": {"loses": ["drift"], "sections": {"drift": "full"}}}},
     "listed in loses"),
    ({"tolerance": {"default": 0.5}, "candidates": {"x": {"sections": {"drift": "most"}}}}, "drift"),
    ({"tolerance": {"default": 0.5}, "candidates": {"x": {"runtimes": ["k8s"]}}}, "runtimes"),
    ({"tolerance": {"default": 0.5}, "candidates": {"x": {"typo": 1}}}, "typo"),
])
def test_expected_file_is_strict(tmp_path: Path, bad: dict, message: str) -> None:
    path = tmp_path / "expected.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match=message):
        load_expected(path, RUBRIC)


def test_bounds() -> None:
    assert interval("full", 20) == (20, 20)
    assert interval("zero", 20) == (0, 0)
    assert interval("loses", 20) == (0, 10)
    assert interval(Range(min=14, max=14), 20) == (14, 14)
    assert interval(Range(max=5), 15) == (0, 5)
    exp = Expectation(loses=["latency"], sections={"latency": Range(min=2)})
    assert section_bounds(exp, "latency", 15)[:2] == (2, 7.5)
    assert section_bounds(exp, "drift", 25)[:2] == (25, 25)


# --- the overlays ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_assembles_and_validates(name: str, tmp_path: Path, artifacts: Path) -> None:
    repo = assemble(name, tmp_path / name, artifacts_dir=artifacts)
    load_contract(repo)  # raises ContractError on an invalid takehome.yaml
    for path in repo.rglob("*.py"):
        py_compile.compile(str(path), cfile=str(tmp_path / "pyc"), doraise=True)
    overlay = Overlay.model_validate(yaml.safe_load((CORPUS_DIR / name / OVERLAY_FILE).read_text()))
    base = assemble(overlay.base, tmp_path / "base", artifacts_dir=artifacts)
    changed = [p.relative_to(repo) for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts
               and (not (base / p.relative_to(repo)).exists()
                    or (base / p.relative_to(repo)).read_bytes() != p.read_bytes())]
    assert changed, f"{name} assembles to a copy of {overlay.base}: the mistake is missing"


def test_overlay_fails_loudly_when_its_base_changed(tmp_path: Path, artifacts: Path, monkeypatch) -> None:
    import calibration.assemble as asm

    corpus = tmp_path / "corpus"
    (corpus / "base").mkdir(parents=True)
    (corpus / "base" / "takehome.yaml").write_text("flavor: sklearn\n")
    (corpus / "base" / "app.py").write_text("x = 2\n")
    (corpus / "flawed").mkdir()
    (corpus / "flawed" / OVERLAY_FILE).write_text(yaml.safe_dump(
        {"base": "base", "description": "d", "replace": [{"path": "app.py", "old": "x = 1", "new": "x = 0"}]}))
    monkeypatch.setattr(asm, "CORPUS_DIR", corpus)
    with pytest.raises(ValueError, match="expected exactly one occurrence"):
        asm.assemble("flawed", tmp_path / "out", artifacts_dir=artifacts)


# --- comparison and rendering ------------------------------------------------------------------------

def _report(points: dict[str, float], status: str = "completed", overrides: dict[str, float] | None = None) -> GradeReport:
    """A report with each section's items scaled to ``points[section]`` (full when absent)."""
    overrides = overrides or {}
    sections = []
    for sid, sec in RUBRIC.items():
        share = points.get(sid, sec.max_points) / sec.max_points
        items = []
        for iid, it in sec.items.items():
            got = overrides.get(f"{sid}.{iid}", round(it.points * share, 2))
            items.append(ItemResult(id=f"{sid}.{iid}", title=it.title, section=sid, points=got, max_points=it.points,
                                    status="pass" if got == it.points else "fail", message=f"{sid}.{iid} said so"))
        sections.append(SectionResult(id=sid, title=sec.title, points=round(sum(i.points for i in items), 2),
                                      max_points=sec.max_points, items=items))
    score = round(sum(s.points for s in sections), 2)
    return GradeReport(run_id="synthetic", status=status, runtime="local", candidate=CandidateInfo(repo="x"),
                       score=score, max_score=100.0, sections=sections)


def _verdicts(rows) -> dict[str, str]:
    return {r.target: r.verdict for r in rows}


def test_compare_passes_a_match(expected: ExpectedFile) -> None:
    exp = expected.candidates["flawed-rollback-noop"]
    rows = compare("flawed-rollback-noop", exp, expected, RUBRIC, [_report({"rollback": 0.0, "latency": 12.0})])
    assert all(r.ok for r in rows), [(r.target, r.verdict, r.reason) for r in rows]
    assert {r.target for r in rows} == set(RUBRIC)  # one row per section


def test_compare_flags_a_mismatch(expected: ExpectedFile) -> None:
    exp = expected.candidates["flawed-rollback-noop"]
    # The flaw went unnoticed (rollback full) and an unrelated section dropped by more than the tolerance.
    rows = compare("flawed-rollback-noop", exp, expected, RUBRIC, [_report({"drift": 24.0})])
    verdicts = _verdicts(rows)
    assert verdicts["rollback"] == "MISMATCH" and verdicts["drift"] == "MISMATCH"
    assert verdicts["robustness"] == "ok"
    # Within tolerance is not a mismatch: latency's tolerance is wider than a deterministic section's.
    rows = compare("flawed-rollback-noop", exp, expected, RUBRIC, [_report({"rollback": 0.0, "drift": 24.6,
                                                                            "latency": 10.5})])
    assert all(r.ok for r in rows), [(r.target, r.reason) for r in rows]


def test_compare_checks_items_totals_and_status(expected: ExpectedFile) -> None:
    exp = expected.candidates["flawed-rollback-restart"]
    # 14 points in rollback, but lost on the wrong item: the section matches, the items do not.
    rows = compare("flawed-rollback-restart", exp, expected, RUBRIC,
                   [_report({}, overrides={"rollback.restores_v1": 2.0})])
    v = _verdicts(rows)
    assert v["rollback"] == "ok" and v["rollback.restores_v1"] == "MISMATCH"
    assert v["rollback.no_failed_requests"] == "MISMATCH"
    ref = expected.candidates["reference-fastapi"]
    rows = compare("reference-fastapi", ref, expected, RUBRIC, [_report({"latency": 11.0, "drift": 21.0}, status="grader_error")])
    v = _verdicts(rows)
    assert v["status"] == "MISMATCH" and v["total"] == "MISMATCH" and v["latency"] == "ok"  # 92 < 95


def test_repeats_report_movement(expected: ExpectedFile) -> None:
    exp = expected.candidates["reference-fastapi"]
    reports = [_report({}), _report({"latency": 12.0}), _report({"drift": 24.6})]
    rows = {r.target: r for r in compare("reference-fastapi", exp, expected, RUBRIC, reports)}
    assert rows["latency"].movement == 3.0 and rows["latency"].verdict == "ok"
    assert rows["drift"].movement == pytest.approx(0.4) and rows["drift"].verdict == "ok"
    assert rows["rollback"].movement == 0.0
    # Each run within bounds, but a deterministic section that moves by more than its tolerance is flagged.
    loose = ExpectedFile(tolerance={"default": 0.5}, candidates={"c": Expectation(sections={"drift": Range(min=20)})})
    rows = {r.target: r for r in compare("c", loose.candidates["c"], loose, RUBRIC,
                                         [_report({"drift": 21.0}), _report({"drift": 25.0})])}
    assert rows["drift"].verdict == "UNSTABLE" and rows["drift"].movement == 4.0


def test_retest_reports_each_sections_spread_and_fails_past_the_allowed_spread(tmp_path: Path, monkeypatch) -> None:
    from calibration import retest

    reports = [_report({}), _report({"latency": 12.0}), _report({"latency": 14.0})]
    rows = {sid: (pts, spread) for sid, pts, spread in retest.spread_rows(reports)}
    assert rows["latency"] == ([15.0, 12.0, 14.0], 3.0) and rows["drift"][1] == 0.0
    assert rows["total"][1] == 3.0
    md = retest.render_markdown("cand", "local", list(retest.spread_rows(reports)), [40.0, 41.0, 44.0])
    assert "| latency | 15 12 14 | 12 | 15 | 3 |" in md and "3 gradings" in md
    # The command grades n times and exits 1 when the total moved by more than --max-spread.
    queue = list(reports)
    monkeypatch.setattr("grader.lifecycle.grade", lambda request: queue.pop(0))
    argv = ["--repo", str(tmp_path), "-n", "3", "--out", str(tmp_path / "out")]
    assert retest.main([*argv, "--max-spread", "2"]) == retest.EXIT_UNSTABLE
    assert (tmp_path / "out" / "retest.md").read_text().startswith("Retest of")
    queue[:] = [_report({}), _report({})]
    assert retest.main([*argv[:3], "2", *argv[4:]]) == 0


def test_a_mismatch_is_graded_again_and_passes_only_if_the_retry_is_as_expected(tmp_path: Path, monkeypatch) -> None:
    from calibration import calibrate

    queue: list[GradeReport] = []
    monkeypatch.setattr("grader.lifecycle.grade", lambda request: queue.pop(0))
    monkeypatch.setattr("calibration.assemble.assemble", lambda name, dest, **kw: tmp_path)
    argv = ["--candidates", "reference-fastapi", "--out", str(tmp_path / "out"), "--quiet"]
    noisy, clean = _report({"latency": 4.0}), _report({})
    queue[:] = [noisy]
    assert calibrate.main(argv) == calibrate.EXIT_MISMATCH  # no retry unless asked

    queue[:] = [noisy, clean]
    assert calibrate.main([*argv, "--retry-mismatch", "1"]) == calibrate.EXIT_OK
    data = json.loads((tmp_path / "out" / "calibration.json").read_text())
    first = data["retried"]["reference-fastapi"]["first"]
    assert [r["target"] for r in first] == ["latency", "total"] and first[0]["got"] == [4.0]
    latency = next(r for r in data["rows"] if r["target"] == "latency")
    assert latency["verdict"] == "ok" and "the first grading got 4" in latency["reason"]
    assert [run.get("retry", 0) for run in data["runs"]["reference-fastapi"]] == [0, 1]
    assert (tmp_path / "out" / "reference-fastapi" / "retry-1" / "report.json").exists()

    queue[:] = [noisy, _report({"latency": 5.0})]  # the same miss twice is a regression
    assert calibrate.main([*argv, "--retry-mismatch", "1"]) == calibrate.EXIT_MISMATCH
    data = json.loads((tmp_path / "out" / "calibration.json").read_text())
    assert data["retried"]["reference-fastapi"]["retries"][0]["mismatches"]
    assert not queue


def test_table_and_markdown_render(expected: ExpectedFile) -> None:
    from rich.console import Console

    exp = expected.candidates["flawed-rollback-noop"]
    reports = [_report({"drift": 20.0})]
    rows = compare("flawed-rollback-noop", exp, expected, RUBRIC, reports)
    rows += compare("reference-fastapi", expected.candidates["reference-fastapi"], expected, RUBRIC, [_report({})])
    buf = io.StringIO()
    Console(file=buf, width=200, color_system=None).print(render_table(rows, repeat=2))
    text = buf.getvalue()
    assert "flawed-rollback-noop" in text and "MISMATCH" in text and "moved" in text
    assert "zero 0 /20 ±0.5" in text and "full 25 /25 ±0.5" in text
    details = {f"flawed-rollback-noop: {r.target}": evidence_for(r, reports) for r in rows if not r.ok}
    md = render_markdown(rows, {"runtime": "local", "repeat": 1, "jobs": 1, "graded": 2, "wall_time_s": 1.0}, details)
    assert "| flawed-rollback-noop | drift |" in md and "**MISMATCH**" in md
    assert "drift.detects_scenarios" in md  # the grader's own words are the evidence
    json.dumps([r.to_dict() for r in rows])


# --- the real thing, on two candidates --------------------------------------------------------------

@pytest.mark.e2e
def test_calibrate_two_flawed_candidates(tmp_path: Path) -> None:
    """``calibrate`` end to end on two quick flawed candidates (the whole corpus is ``make calibrate``)."""
    from calibration.calibrate import main

    out = tmp_path / "calibration"
    code = main(["--runtime", "local", "--candidates", "flawed-no-observability,flawed-rollback-noop",
                 "--out", str(out), "--quiet"])
    data = json.loads((out / "calibration.json").read_text())
    bad = [r for r in data["rows"] if r["verdict"] not in ("ok", "SKIPPED")]
    assert code == 0, bad
    assert (out / "calibration.md").exists()
    assert (out / "flawed-rollback-noop" / "report.json").exists()
