"""The candidate's archive: contents, secrets, checksums, determinism, docs in sync, the stdlib self-check."""

from __future__ import annotations

import ast
import copy
import hashlib
import importlib.metadata
import importlib.util
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from assignment import ASSIGNMENT_DIR, docs
from assignment.build import ArchiveError, build_archive, check_nothing_hidden, main as build_main, materialize
from assignment.schema import SCHEMA_PATH
from fakes import Received, StubService
from grader.checks import latency
from grader.config import FALLBACK_SEED, LoadConfig
from harness.contract import contract_json_schema, parse_contract
from harness.protocol import encode_request
from harness.traffic.baseline import baseline_records
from reference_model.paths import available_flavors, ensure_artifacts

REPO = ASSIGNMENT_DIR.parent
# The effective defaults, not the raw YAML: rubric titles live in the check specs, not in defaults.yaml.
DEFAULTS = docs.grader_settings()
COMMON = {
    "README.md", "CONTRACT.md", "MANIFEST.json", "takehome.schema.json", "takehome.example.yaml", "selfcheck.py",
    "requirements-model.txt", "examples/fastapi/takehome.yaml", "examples/fastapi/README.md",
    "examples/bentoml/takehome.yaml", "examples/bentoml/README.md", "examples/kserve/takehome.yaml",
    "examples/kserve/README.md", "reference_data/reference_sample.csv", "reference_data/schema.json",
    "reference_data/summary.json", "samples/request.json", "public_traffic/README.md",
    "public_traffic/baseline.jsonl", "public_traffic/drift_mean_shift.jsonl", "public_traffic/scenarios.json",
}
EXPECTED = {
    "sklearn": COMMON | {"models/v1/model.joblib", "models/v2/model.joblib", "samples/response_v2_sklearn.json"},
    "torch": COMMON | {"models/v1/model.pt2", "models/v1/preprocessing.json", "models/v2/model.pt2",
                       "models/v2/preprocessing.json", "samples/response_v2_torch.json"},
}
FLAVORS = ["sklearn", pytest.param("torch", marks=pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="torch is not installed, so no torch artifacts"))]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def g(value: float) -> str:
    """A number as the prompt writes it (2000 -> '2,000', 5.0 -> '5', 0.0001 -> '0.0001')."""
    return f"{value:,g}"


@pytest.fixture(scope="module")
def artifacts() -> Path:
    return ensure_artifacts()  # built once (about a minute) and shared with the other suites


@pytest.fixture(scope="module")
def archives(artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    return {f: build_archive(f, out, artifacts) for f in available_flavors()}


@pytest.fixture(scope="module")
def extracted(archives: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("extracted")
    for archive in archives.values():
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(out, filter="data")
    return {f: out / f"takehome-{f}" for f in archives}


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# --- contents -------------------------------------------------------------------------------
@pytest.mark.parametrize("flavor", FLAVORS)
def test_archive_holds_exactly_the_expected_files(flavor: str, archives: dict[str, Path]) -> None:
    with tarfile.open(archives[flavor], "r:gz") as tar:
        members = tar.getmembers()
    top = f"takehome-{flavor}"
    assert all(m.name == top or m.name.startswith(top + "/") for m in members)
    assert {m.name.split("/", 1)[1] for m in members if m.isfile()} == EXPECTED[flavor]
    assert all(m.mtime == members[0].mtime and m.uid == 0 and m.gid == 0 and not m.uname for m in members)
    modes = {m.name.split("/", 1)[1]: m.mode for m in members if m.isfile()}
    assert modes.pop("selfcheck.py") == 0o755 and set(modes.values()) == {0o644}


@pytest.mark.parametrize("flavor", FLAVORS)
def test_archive_ships_nothing_the_grader_keeps(flavor: str, extracted: dict[str, Path]) -> None:
    root = extracted[flavor]
    names = files_under(root)
    assert not [n for n in names if any(w in n for w in ("calibration", "defaults.yaml", "probe", "grader", "eval"))]
    private = {sha256(p) for d in ("grader", "calibration") for p in (REPO / d).rglob("*")
               if p.is_file() and p.stat().st_size and "__pycache__" not in p.parts}
    private.add(sha256(REPO / "harness" / "traffic" / "scenarios.py"))
    assert not [n for n in names if sha256(root / n) in private]
    needles = (str(FALLBACK_SEED), f"{FALLBACK_SEED:_}", f"{FALLBACK_SEED:,}", "scenario_seed", "FALLBACK_SEED")
    assert not [(n, w) for n in names for w in needles if w.encode() in (root / n).read_bytes()]
    truth = json.loads((root / "public_traffic" / "scenarios.json").read_text())  # only the public scenario
    assert truth["seed"] != FALLBACK_SEED and [s["kind"] for s in truth["scenarios"]] == ["mean_shift"]


def test_public_traffic_readme_names_exactly_the_kinds_the_grader_plays(extracted: dict[str, Path]) -> None:
    from harness.traffic.scenarios import SCENARIO_KINDS

    text = (extracted["sklearn"] / "public_traffic" / "README.md").read_text()
    played = set(DEFAULTS["traffic"]["scenarios"])
    named = {k for k in SCENARIO_KINDS if f"`{k}`" in text.split("The grader replays")[1]}
    assert named == played and set(SCENARIO_KINDS) - played  # a known kind is left out, so this can fail


def test_public_traffic_shares_no_row_with_scored_traffic(extracted: dict[str, Path]) -> None:
    root = next(iter(extracted.values())) / "public_traffic"
    public = {ln for f in ("baseline.jsonl", "drift_mean_shift.jsonl") for ln in (root / f).read_text().splitlines()}
    public = {json.dumps(json.loads(line), sort_keys=True) for line in public if line}
    scored = baseline_records(300, FALLBACK_SEED + 101)  # the drift phase's baseline with the built-in seed
    assert not public & {json.dumps(r, sort_keys=True) for r in scored}


def test_guard_refuses_grader_material_and_stale_folders(artifacts: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    materialize(dest, "sklearn", artifacts)
    check_nothing_hidden(dest)  # clean as built
    (dest / "notes.yaml").write_bytes((REPO / "grader" / "defaults.yaml").read_bytes())
    with pytest.raises(ArchiveError, match="grader/defaults.yaml"):
        check_nothing_hidden(dest)
    (dest / "notes.yaml").write_text(f"seed: {FALLBACK_SEED}\n")
    with pytest.raises(ArchiveError, match="fallback seed"):
        check_nothing_hidden(dest)
    with pytest.raises(ArchiveError, match="not empty"):  # never mixes a new build with stale files
        materialize(dest, "sklearn", artifacts)
    with pytest.raises(ArchiveError, match="unknown flavor"):
        materialize(tmp_path / "new", "onnx", artifacts)  # type: ignore[arg-type]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_manifest_checksums_and_model_info(flavor: str, extracted: dict[str, Path], artifacts: Path) -> None:
    root = extracted[flavor]
    manifest = json.loads((root / "MANIFEST.json").read_text())
    assert set(manifest["files"]) == files_under(root) - {"MANIFEST.json"}
    for name, entry in manifest["files"].items():
        assert entry == {"sha256": sha256(root / name), "bytes": (root / name).stat().st_size}, name
    model = manifest["model"]
    assert model["flavor"] == flavor and model["versions"] == ["v1", "v2"] and model["previous_version"] == "v1"
    source = json.loads((artifacts / "manifest.json").read_text())["files"]
    for version, paths in model["files"].items():
        for path in paths:
            assert sha256(root / path) == source[f"models/{flavor}/{version}/{Path(path).name}"]["sha256"]
    library = "scikit-learn" if flavor == "sklearn" else "torch"
    pin = f"{library}=={importlib.metadata.version(library).split('+')[0]}"
    assert pin in (root / "requirements-model.txt").read_text().splitlines()
    assert model["libraries"][library] == importlib.metadata.version(library)


def test_builds_are_byte_identical_and_cli_reports(archives: dict[str, Path], artifacts: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    for flavor, first in archives.items():  # a second build, through the CLI, must not differ by one byte
        assert build_main(["--flavor", flavor, "--out", str(tmp_path), "--artifacts", str(artifacts)]) == 0
        again = tmp_path / first.name
        assert again.read_bytes() == first.read_bytes(), flavor
        out = capsys.readouterr().out
        assert f"{again}  {again.stat().st_size:,} bytes  {len(EXPECTED[flavor])} files" in out


# --- documents ------------------------------------------------------------------------------
def test_examples_and_template_validate() -> None:
    contracts = {p.parent.name: parse_contract(p.read_text(), str(p))
                 for p in sorted((ASSIGNMENT_DIR / "examples").glob("*/takehome.yaml"))}
    assert set(contracts) == {"fastapi", "bentoml", "kserve"}
    assert all(c.framework == name for name, c in contracts.items())
    assert all((ASSIGNMENT_DIR / "examples" / n / "README.md").stat().st_size > 500 for n in contracts)
    bento, kserve = contracts["bentoml"], contracts["kserve"]
    assert (bento.serving.predict_path, bento.serving.ready_path) == ("/v1/models/fraud:predict", "/readyz")
    assert bento.runtimes.local and bento.runtimes.local.start.startswith("bentoml serve")
    bento_readme = (ASSIGNMENT_DIR / "examples" / "bentoml" / "README.md").read_text()
    assert '@bentoml.api(route="/v1/models/fraud:predict")' in bento_readme
    assert (kserve.serving.protocol, kserve.serving.predict_path, kserve.serving.ready_path, kserve.drift.signal) == (
        "v2", "/v2/models/fraud/infer", "/v2/models/fraud/ready", "webhook")
    assert "kserve.ModelServer" in (ASSIGNMENT_DIR / "examples/kserve/README.md").read_text()
    runtimes = parse_contract((ASSIGNMENT_DIR / "takehome.example.yaml").read_text(), "takehome.example.yaml").runtimes
    assert runtimes.kind and runtimes.docker and runtimes.local


def test_generated_files_in_sync(extracted: dict[str, Path]) -> None:
    expected = json.dumps(contract_json_schema(), indent=2) + "\n"
    assert SCHEMA_PATH.read_text() == expected
    assert all((root / "takehome.schema.json").read_text() == expected for root in extracted.values())
    run = subprocess.run([sys.executable, "-m", "assignment.schema"], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    for path, text in docs.rendered_documents().items():
        assert path.read_text() == text, f"{path.name} is stale: run python -m assignment.docs --write"
    assert docs.main(["--check"]) == 0


def prompt_phrases(cfg: dict[str, Any]) -> list[str]:
    """Every number the prompt must state, as it must read (whitespace-normalised)."""
    t, ld, th = cfg["traffic"], cfg["load"], cfg["thresholds"]
    plan = latency.plan_for(LoadConfig(**ld), seed=0)  # the window the latency check really runs
    phrases = [
        f"{g(t['baseline_rows'])} rows drawn from the training distribution",
        f"First {g(t['warmup_rows'])} warm-up rows", "a window of up to that many rows",
        f"after every {g(t['poll_every_rows'])} rows ({g(t['baseline_rows'] // t['poll_every_rows'])} reads)",
        f"for {g(t['settle_s'])} s after the last row", f"{len(t['scenarios'])} scenarios",
        f"at most {g(t['scenario_max_rows'])} drifted rows", f"up to {g(t['washout_max_rows'])} clean rows",
        f"requests carry {g(t['rows_per_request'])} rows each", f"up to {g(t['concurrency'])} requests are in flight",
        f"probes of {g(t['probe_rows'])} known rows",
        f"{g(ld['rate_rps'])} requests/s with {ld['schedule']} arrivals for {g(plan.duration_s)} s",
        f"the first {g(ld['warmup_s'])} s are a warm-up, not counted",
        f"about {g(int(plan.rate_rps * (plan.duration_s - plan.warmup_s)))} requests are measured",
        *([f"The window ends after {g(plan.settle_from_s)} s",
           f"(about {g(round(plan.rate_rps * (plan.settle_from_s - plan.warmup_s)))} requests measured)"]
          if plan.settle_from_s is not None else []),
        f"within {g(ld['timeout_s'])} s)", f"none at {g(th['correctness_zero_share'] * 100)}%",
        f"While {g(ld['rollback_rate_rps'])} requests/s keep flowing",
        f"under {g(th['latency_p99_ms'])} ms", f"under {g(th['latency_error_rate'] * 100)}%",
        f"at least {g(th['correctness_min_match'] * 100)}%", f"absolute tolerance of {g(th['correctness_atol'])}",
        f"within {g(th['rollback_budget_s'])} s (command plus switch)", f"served within {g(th['rollout_timeout_s'])} s",
        f"within {g(th['detection_fast_rows'])} drifted rows",
        f"no more than {g(th['attribution_max_features'])} features",
        f"a {g(th['oversized_body_mb'])} MB body", f"limited to {g(cfg['local']['memory_limit_mb'])} MB",
        "four hours", "kind", "docker", "local", "Kubernetes manifests", "takehome.yaml",
    ]
    phrases += [f"{name} {g(s)} s" for name, s in cfg["timeouts"].items()]
    phrases += [f"`{kind}`" for kind in t["scenarios"]]
    items = [i for s in cfg["rubric"].values() for i in s["items"].values()]
    phrases += [s["title"] for s in cfg["rubric"].values()] + [f"| {i['title']} | {g(i['points'])} |" for i in items]
    return phrases + [f"| **Total** | | **{g(sum(i['points'] for i in items))}** |"]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_prompt_states_the_grader_numbers(flavor: str, extracted: dict[str, Path]) -> None:
    for text in ((extracted[flavor] / "README.md").read_text(), (ASSIGNMENT_DIR / "PROMPT.md").read_text()):
        flat = " ".join(text.split())
        missing = [p for p in prompt_phrases(DEFAULTS) if " ".join(p.split()) not in flat]
        assert not missing, missing
    readme = (extracted[flavor] / "README.md").read_text()
    own, other = ("model.joblib", "model.pt2") if flavor == "sklearn" else ("model.pt2", "model.joblib")
    assert own in readme and other not in readme


def test_prompt_follows_a_hiring_teams_config(tmp_path: Path) -> None:
    team = {"traffic": {"baseline_rows": 3000, "scenarios": ["unit_change", "missing_spike"]},
            "thresholds": {"latency_p99_ms": 250}, "rubric": {"latency": {"items": {"p99_under_slo": {"points": 20}}}}}
    path = tmp_path / "team.yaml"
    path.write_text(yaml.safe_dump(team))
    merged = copy.deepcopy(DEFAULTS)
    for key in ("traffic", "thresholds"):
        merged[key].update(team[key])
    merged["rubric"]["latency"]["items"]["p99_under_slo"]["points"] = 20
    flat = " ".join(docs.render_prompt("sklearn", path).split())
    missing = [p for p in prompt_phrases(merged) if " ".join(p.split()) not in flat]
    assert not missing, missing
    assert "2,000 rows drawn" not in flat and "`mean_shift`" not in flat and "**110**" in flat


def test_contract_doc_covers_every_field_and_rule() -> None:
    text = (ASSIGNMENT_DIR / "CONTRACT.md").read_text()
    sections = {chunk.split("\n", 1)[0].strip(): chunk.split("\n## ")[0] for chunk in text.split("\n### ")[1:]}
    for model in docs.contract_models():
        rows = [line for line in sections[model.__name__].splitlines() if line.startswith("| `")]
        assert [r.split("`")[1] for r in rows] == list(model.model_fields), model.__name__
        assert all(r.rstrip(" |").rsplit("|", 1)[1].strip() for r in rows), f"{model.__name__}: empty description"
    for needle in ("PORT", "TAKEHOME_STATE_DIR", "TAKEHOME_ENDPOINT", "TAKEHOME_RUNTIME", "TAKEHOME_RUN_ID", "4xx",
                   "TAKEHOME_MODEL_VERSION", "TAKEHOME_ALERT_WEBHOOK_URL", "signal: http", "signal: prometheus",
                   "signal: webhook", '"status": "resolved"', '"drift": false', '{"instances": [', "X-Request-ID",
                   '"predictions"', "outputs[0].data", "FP64", "INT64", "BYTES", "run twice", "non-zero"):
        assert needle in text, needle


# --- the self-check -------------------------------------------------------------------------
def load_selfcheck(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("selfcheck_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_selfcheck_imports_only_the_standard_library() -> None:
    tree = ast.parse((ASSIGNMENT_DIR / "selfcheck.py").read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]  # no relative imports
    assert {n for n in names if n not in sys.stdlib_module_names} == {"yaml"}
    assert "yaml" not in {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}  # optional


def test_selfcheck_constants_match_the_grader() -> None:
    sc = load_selfcheck(ASSIGNMENT_DIR / "selfcheck.py")
    t, th = DEFAULTS["traffic"], DEFAULTS["thresholds"]
    assert (sc.POLL_EVERY_ROWS, sc.ROWS_PER_REQUEST, sc.SETTLE_S, sc.WASHOUT_MAX_ROWS, sc.WARMUP_ROWS) == (
        t["poll_every_rows"], t["rows_per_request"], t["settle_s"], t["washout_max_rows"], t["warmup_rows"])
    assert (sc.ATTRIBUTION_MAX_FEATURES, sc.DETECTION_FAST_ROWS, sc.OVERSIZED_BODY_MB) == (
        th["attribution_max_features"], th["detection_fast_rows"], th["oversized_body_mb"])
    for path in [ASSIGNMENT_DIR / "takehome.example.yaml", *(ASSIGNMENT_DIR / "examples").glob("*/takehome.yaml")]:
        tiny, full = sc.tiny_yaml(text := path.read_text()), yaml.safe_load(text)
        assert (tiny["serving"], tiny["drift"]) == (full["serving"], full["drift"]), path


_ODD_VALUES: list[Any] = ["8080", 3, -1, 70000, 1.5, True, None, "", "no-slash", [], {}, ["x"], {"k": "v"}]


def _mutations(data: dict[str, Any], rng: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Contracts one mistake away from ``data``: every key deleted, misspelt or joined by an
    unknown sibling, and every value replaced by odd values of other types."""
    def paths(node: Any, prefix: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield prefix + (key,)
                yield from paths(value, prefix + (key,))

    def edit(path: tuple[str, ...], fn: Any) -> dict[str, Any]:
        out = copy.deepcopy(data)
        node = out
        for key in path[:-1]:
            node = node[key]
        fn(node, path[-1])
        return out

    for path in list(paths(data, ())):
        name = ".".join(path)
        yield f"delete {name}", edit(path, lambda n, k: n.pop(k))
        key = path[-1]
        typo = key[:-1] if len(key) > 2 else key + "x"
        cut = rng.randrange(1, len(key)) if len(key) > 1 else 0
        doubled = key[:cut] + key[cut - 1] + key[cut:] if cut else key + key
        for wrong in {typo, doubled} - {key}:
            yield f"misspell {name} as {wrong}", edit(path, lambda n, k, w=wrong: n.__setitem__(w, n.pop(k)))
        yield f"unknown key beside {name}", edit(path, lambda n, k: n.__setitem__(k + "_extra", 1))
        for value in rng.sample(_ODD_VALUES, 6):
            yield f"{name} = {value!r}", edit(path, lambda n, k, v=value: n.__setitem__(k, copy.deepcopy(v)))
    for name, value in (("drift.signal", "https"), ("serving.protocol", "v3"), ("flavor", "tf"), ("version", 2)):
        yield f"{name} = {value!r}", edit(tuple(name.split(".")), lambda n, k, v=value: n.__setitem__(k, v))


def test_selfcheck_refuses_exactly_the_contracts_the_grader_refuses(extracted: dict[str, Path], tmp_path: Path) -> None:
    import random

    from harness.contract import ContractError, parse_contract

    sc = load_selfcheck(extracted["sklearn"] / "selfcheck.py")
    schema = json.loads((extracted["sklearn"] / "takehome.schema.json").read_text())
    bases = [ASSIGNMENT_DIR / "takehome.example.yaml", *(ASSIGNMENT_DIR / "examples").glob("*/takehome.yaml")]
    rng = random.Random(5)
    disagree, verdicts = [], {True: 0, False: 0}
    for base in bases:
        for what, data in _mutations(yaml.safe_load(base.read_text()), rng):
            text = yaml.safe_dump(data, sort_keys=False)
            try:
                parse_contract(text)
                grader_ok, grader_says = True, ""
            except ContractError as exc:
                grader_ok, grader_says = False, "; ".join(exc.problems) or str(exc)
            problems = sc.schema_problems(yaml.safe_load(text), schema, schema)
            verdicts[grader_ok] += 1
            if grader_ok != (not problems):
                disagree.append(f"{base.parent.name}: {what}: grader {grader_says or 'accepts'}; selfcheck "
                                f"{problems or 'accepts'}")
            elif problems:  # both refuse: the selfcheck names the field the grader names
                field = problems[0].split(":")[0].split(" ")[0]
                assert field.split(".")[0] in grader_says, (what, problems, grader_says)
    assert not disagree, "\n".join(disagree[:30])
    print(f"{sum(verdicts.values())} mutated contracts: {verdicts}")
    assert sum(verdicts.values()) >= 200 and verdicts[True] >= 20 and verdicts[False] >= 150, verdicts
    # And the command itself refuses a misspelt contract before sending anything, with the field.
    bad = yaml.safe_load((ASSIGNMENT_DIR / "takehome.example.yaml").read_text())
    bad["drift"]["signal"] = "https"
    (tmp_path / "takehome.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(SystemExit) as refused:
        sc.load_settings(sc.parse_args(["--url", "http://127.0.0.1:9", "--contract", str(tmp_path / "takehome.yaml")]))
    assert "drift.signal" in str(refused.value) and "the grader refuses it too" in str(refused.value)


def test_selfcheck_reads_signals_and_encodes_like_the_grader(extracted: dict[str, Path]) -> None:
    sc = load_selfcheck(extracted["sklearn"] / "selfcheck.py")
    text = 'd{feature="amount"} 1\nd{feature="channel"} 0.0\nd{feature="hour_of_day"} NaN\nd_total 5\n'
    assert sc.prometheus_gauge(text, "d", "feature") == (True, {"amount"})
    assert sc.prometheus_gauge("d 0\n", "d", "feature") == (False, set())
    hook = sc.Webhook.__new__(sc.Webhook)  # the payload logic only, no listening socket
    hook.firing, alert = {}, {"labels": {"alertname": "Drift", "feature": "amount"}}
    seen = []
    for payload in ({"status": "firing", "alerts": [alert]}, {"status": "resolved", "alerts": [alert]},
                    {"drift": True, "features": ["channel"]}, {"drift": False}):
        hook.apply(payload, "feature")
        seen.append(sorted(f for fs in hook.firing.values() for f in fs) if hook.firing else None)
    assert seen == [["amount"], None, ["channel"], None]
    rows = baseline_records(5, 1)
    for protocol in ("v1", "v2"):
        svc = sc.Service("http://x", {**sc.DEFAULTS, "protocol": protocol, "predict_path": "/p"})
        assert json.loads(svc.encode(rows)) == json.loads(encode_request(rows, protocol)), protocol


def test_selfcheck_help_runs_without_the_project(extracted: dict[str, Path], tmp_path: Path) -> None:
    script = next(iter(extracted.values())) / "selfcheck.py"
    run = subprocess.run([sys.executable, "-I", "-S", str(script), "--help"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and all(w in run.stdout for w in ("--url", "--contract", "Not your grade")), run.stderr


def fake_candidate(root: Path, noisy: bool, young: int = 0) -> StubService:
    """A tiny candidate service: validates like the contract says; drift = most of the last 50 rows
    come from the public drift file. ``noisy`` makes the monitor fire all the time; ``young`` fires
    until it has seen that many rows (a window judged before it is full: the warm-up's business)."""
    truth = json.loads((root / "public_traffic" / "scenarios.json").read_text())["scenarios"][0]
    drifted = {json.dumps(json.loads(line), sort_keys=True)
               for line in (root / "public_traffic" / truth["file"]).read_text().splitlines() if line}
    stub = StubService(version=lambda rows: [0.1] * len(rows))

    def drift(req: Received) -> dict[str, Any]:
        window = stub.rows[-50:]
        firing = noisy or len(stub.rows) < young or sum(json.dumps(r, sort_keys=True) in drifted
                                                         for r in window) > len(window) // 2
        return {"drift": firing, "features": [truth["features"][0]] if firing else []}

    stub.routes[("GET", "/drift")] = drift
    return stub


_CONTRACT = ("version: 1\nserving:\n  predict_path: /predict\n  ready_path: /healthz\ndrift:\n  signal: http\n"
             "  http_path: /drift\nruntimes:\n  local:\n    start: x $PORT\n    deploy: d {version}\n    rollback: r\n")


def test_selfcheck_warms_up_like_the_grader_and_finds_the_kit_from_anywhere(extracted: dict[str, Path],
                                                                           tmp_path: Path) -> None:
    """A monitor that fires until its window is full is quiet after the grader's unscored warm-up, so
    the selfcheck warms up too; copied out of the archive, it finds the kit from the current folder
    or --kit, and says how when it cannot (no traceback)."""
    root = extracted["sklearn"]
    (tmp_path / "elsewhere").mkdir()
    script = tmp_path / "elsewhere" / "selfcheck.py"
    script.write_bytes((root / "selfcheck.py").read_bytes())
    (contract := tmp_path / "takehome.yaml").write_text(_CONTRACT)
    sc = load_selfcheck(ASSIGNMENT_DIR / "selfcheck.py")
    with fake_candidate(root, noisy=False, young=sc.WARMUP_ROWS - 100) as server:
        args = ["--contract", str(contract), "--url", server.url, "--settle", "0.2"]
        from_root = subprocess.run([sys.executable, "-I", "-S", str(script), *args], cwd=root / "samples",
                                   capture_output=True, text=True, timeout=180)
        lost = subprocess.run([sys.executable, "-I", "-S", str(script), *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        wrong_kit = subprocess.run([sys.executable, "-I", "-S", str(script), *args, "--kit", str(tmp_path)],
                                   cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert from_root.returncode == 0, from_root.stdout + from_root.stderr
    assert f"[INFO] warm-up: {sc.WARMUP_ROWS} unscored" in from_root.stdout
    assert "[PASS] quiet on baseline" in from_root.stdout
    assert lost.returncode != 0 and "pass --kit PATH" in lost.stderr and "Traceback" not in lost.stderr, lost.stderr
    assert wrong_kit.returncode != 0 and "--kit" in wrong_kit.stderr and "Traceback" not in wrong_kit.stderr


@pytest.mark.parametrize("noisy", [False, True], ids=["good-monitor", "always-firing"])
def test_selfcheck_against_a_live_service(noisy: bool, extracted: dict[str, Path], tmp_path: Path) -> None:
    root = extracted["sklearn"]
    contract = tmp_path / "takehome.yaml"
    contract.write_text("version: 1\nserving:\n  predict_path: /predict   # comment\n  ready_path: /healthz\n"
                        "drift:\n  signal: http\n  http_path: \"/drift\"\nruntimes:\n  local:\n    start: x $PORT\n"
                        "    deploy: d {version}\n    rollback: r\n")
    parse_contract(contract.read_text())
    with fake_candidate(root, noisy) as server:
        run = subprocess.run([sys.executable, "-I", "-S", str(root / "selfcheck.py"), "--contract", str(contract),
                              "--url", server.url, "--settle", "0.2"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=180)
    if noisy:
        assert run.returncode == 1 and "[FAIL] quiet on baseline: FALSE ALARM" in run.stdout, run.stdout
    else:
        assert run.returncode == 0, run.stdout + run.stderr
        assert "[PASS] detects mean_shift" in run.stdout and "[PASS] clears on clean rows" in run.stdout
        mb = g(DEFAULTS["thresholds"]["oversized_body_mb"])
        assert f"[PASS] rejects {mb} MB body" in run.stdout and "[PASS] rejects extra feature" in run.stdout
    assert "NOT your grade" in run.stdout
