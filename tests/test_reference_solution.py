"""The reference solution (calibration/candidates/reference-fastapi), tested for real over HTTP.

A temporary candidate repo is assembled the way the grader sees one (the solution's files plus the
assignment's models and reference data from build/artifacts), the server is started with this
interpreter (``python -m app``) on a free port, and every behaviour the grader scores is exercised:
exact predictions, deploy / rollback (twice) under traffic, strict validation, request-id logging,
Prometheus metrics, and the drift monitor on baseline, drifted and clean traffic.

The measurements (false alarms, detection delay, latency) are printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
joblib = pytest.importorskip("joblib")

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "calibration" / "candidates" / "reference-fastapi"
ARTIFACTS = Path(os.environ.get("TAKEHOME_ARTIFACTS", ROOT / "build" / "artifacts"))
PREDICT = "/v1/models/fraud:predict"

pytestmark = pytest.mark.skipif(
    not (ARTIFACTS / "manifest.json").is_file(),
    reason=f"reference artifacts missing at {ARTIFACTS}: run `python -m reference_model.build --out {ARTIFACTS}`",
)


# --- helpers ------------------------------------------------------------------------------------

#: The candidate's own interpreter: its isolated env, built from its requirements.txt by the
#: local runtime (cached by hash, exactly as when it is graded). Set by the ``repo`` fixture.
CANDIDATE_PYTHON: list[str] = [sys.executable]


def _candidate_python(repo: Path, work: Path) -> str:
    from grader.config import load_config
    from harness.cleanup import CleanupStack
    from harness.contract import load_contract
    from harness.runtimes.base import RuntimeContext
    from harness.runtimes.local import LocalRuntime

    ctx = RuntimeContext(run_id="reference-solution-tests", repo_dir=repo, work_dir=work,
                         contract=load_contract(repo), config=load_config(), cleanup=CleanupStack())
    runtime = LocalRuntime(ctx)
    runtime.build()
    return str(runtime._venv / "bin" / "python")

def _records(frame: Any) -> list[dict[str, Any]]:
    from harness.traffic.baseline import to_records

    return to_records(frame)


def _features(n: int, seed: int) -> Any:
    from reference_model.data import generate_features

    return generate_features(n, seed)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assemble_repo(dest: Path) -> Path:
    """The solution's files plus what the assignment ships, in the layout the grader grades."""
    shutil.copytree(SOLUTION, dest, ignore=shutil.ignore_patterns("__pycache__", "state", "logs", "*.pyc"))
    for version in ("v1", "v2"):
        (dest / "models" / version).mkdir(parents=True)
        shutil.copy2(ARTIFACTS / "models" / "sklearn" / version / "model.joblib", dest / "models" / version)
    (dest / "reference_data").mkdir()
    for name in ("reference_sample.csv", "schema.json", "summary.json"):
        shutil.copy2(ARTIFACTS / "profile" / name, dest / "reference_data" / name)
    return dest


class Server:
    """``python -m app`` in the assembled repo, with the environment the grader gives it."""

    def __init__(self, repo: Path, state: Path, log_path: Path) -> None:
        self.repo, self.state, self.log_path = repo, state, log_path
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(state.parent), "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "PORT": str(self.port),
            "TAKEHOME_STATE_DIR": str(state), "TAKEHOME_ENDPOINT": self.url, "TAKEHOME_RUNTIME": "local",
            "TAKEHOME_RUN_ID": "pytest",
        }
        self.proc: subprocess.Popen | None = None
        self.client = httpx.Client(base_url=self.url, timeout=30.0)

    def start(self, timeout_s: float = 120.0) -> None:
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen([CANDIDATE_PYTHON[0], "-m", "app"], cwd=self.repo, env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            try:
                if self.client.get("/healthz", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"server not ready after {timeout_s}s:\n{self.output()[-3000:]}")

    def stop(self) -> None:
        self.client.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)
        if self.proc is not None:
            try:  # the drift worker is in the same session: make sure nothing outlives the test
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
        if hasattr(self, "_log"):
            self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cli(self, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess:
        return subprocess.run([CANDIDATE_PYTHON[0], "-m", "app.registry", *args], cwd=self.repo, env=self.env,
                              capture_output=True, text=True, timeout=timeout_s)

    def predict(self, rows: list[dict], request_id: str | None = None) -> list[float]:
        headers = {"X-Request-ID": request_id} if request_id else {}
        resp = self.client.post(PREDICT, json={"instances": rows}, headers=headers)
        assert resp.status_code == 200, resp.text[:500]
        return resp.json()["predictions"]

    def version(self) -> dict[str, Any]:
        resp = self.client.get("/version")
        assert resp.status_code == 200, resp.text
        return resp.json()

    def registry(self) -> dict[str, Any]:
        return json.loads((self.state / "registry.json").read_text())


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = assemble_repo(tmp_path_factory.mktemp("candidate") / "repo")
    CANDIDATE_PYTHON[0] = _candidate_python(path, tmp_path_factory.mktemp("env"))
    return path


@pytest.fixture(scope="module")
def server(repo: Path, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("run")
    srv = Server(repo, work / "state", work / "server.log")
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


def _reference_predictions(version: str, frame: Any) -> np.ndarray:
    pipe = joblib.load(ARTIFACTS / "models" / "sklearn" / version / "model.joblib")
    return np.asarray(pipe.predict_proba(frame)[:, 1], dtype=np.float64)


def _served(srv: Server, rows: list[dict], batch: int = 25) -> np.ndarray:
    return np.asarray([p for i in range(0, len(rows), batch) for p in srv.predict(rows[i:i + batch])])


# --- contract and packaging -------------------------------------------------------------------

def test_contract_validates_and_artifacts_are_not_shipped(repo: Path) -> None:
    from harness.contract import load_contract

    contract = load_contract(repo)
    assert contract.framework == "fastapi" and contract.flavor == "sklearn"
    assert contract.serving.predict_path == PREDICT
    assert contract.runtimes.local and contract.runtimes.docker and contract.runtimes.kind
    assert contract.drift.signal == "http" and contract.drift.http_path == "/drift"
    # The assignment's files are copied in at grading time: the solution must not carry its own.
    for name in ("models", "reference_data", "state", "logs"):
        assert not (SOLUTION / name).exists(), f"{name}/ must not be part of the solution directory"
    import yaml

    for manifest in sorted((SOLUTION / "k8s").glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
        assert docs and all("kind" in d and "apiVersion" in d for d in docs), manifest
    requirements = (SOLUTION / "requirements.txt").read_text()
    assert "scikit-learn==1.9.1" in requirements and "evidently==0.7.23" in requirements
    assert "pandas==2." in requirements


# --- predictions ------------------------------------------------------------------------------

def test_predictions_equal_the_v2_pipeline(server: Server) -> None:
    assert server.version()["version"] == "v2"  # first start: the newest model
    frame = _features(300, 1234)
    assert frame["distance_from_home_km"].isna().any(), "the probe must include null distances"
    got = _served(server, _records(frame))
    want = _reference_predictions("v2", frame)
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= 1e-9
    # a single row, an unseen category (drift, not invalid) and a null distance are all valid input
    row = _records(frame.iloc[:1])[0]
    odd = {**row, "merchant_category": "crypto_exchange", "distance_from_home_km": None}
    assert len(server.predict([row])) == 1 and 0.0 <= server.predict([odd])[0] <= 1.0


# --- deploy and rollback ----------------------------------------------------------------------

class Traffic:
    """Single-row requests in a loop while a deploy or rollback runs: none may fail."""

    def __init__(self, url: str, row: dict) -> None:
        self.url, self.row = url, row
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            while not self._stop.is_set():
                try:
                    resp = client.post(PREDICT, json={"instances": [self.row]})
                    if resp.status_code == 200:
                        self.ok += 1
                    else:
                        self.failures.append(f"HTTP {resp.status_code}: {resp.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                time.sleep(0.01)

    def __enter__(self) -> "Traffic":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def test_deploy_rollback_and_second_rollback(server: Server, repo: Path) -> None:
    frame = _features(64, 99)
    rows = _records(frame)
    want = {v: _reference_predictions(v, frame) for v in ("v1", "v2")}
    assert np.max(np.abs(want["v1"] - want["v2"])) > 1e-3, "v1 and v2 must be distinguishable"

    def live() -> str:
        got = _served(server, rows)
        return next((v for v, w in want.items() if np.max(np.abs(got - w)) <= 1e-9), "unknown")

    with Traffic(server.url, rows[0]) as traffic:
        out = server.cli("deploy", "v1")
        assert out.returncode == 0, out.stderr
        version = server.version()
        assert version["version"] == "v1" and live() == "v1"
        import hashlib

        assert version["sha256"] == hashlib.sha256((repo / "models/v1/model.joblib").read_bytes()).hexdigest()

        out = server.cli("deploy", "v2")
        assert out.returncode == 0, out.stderr
        assert server.version()["version"] == "v2" and live() == "v2"
        reg = server.registry()
        assert reg["current"]["version"] == "v2" and reg["previous"]["version"] == "v1"

        started = time.monotonic()
        out = server.cli("rollback")
        rollback_s = time.monotonic() - started
        assert out.returncode == 0, out.stderr
        assert server.version()["version"] == "v1" and live() == "v1"
        reg = server.registry()
        assert reg["current"]["version"] == "v1" and reg["rolled_back_from"]["version"] == "v2"
        assert (repo / "models/v2/model.joblib").is_file(), "the bad version is kept for diagnosis"

        again = server.cli("rollback")  # harmless: v1 stays, exit 0, no flip back to v2
        assert again.returncode == 0, again.stderr
        assert "already rolled back" in again.stdout
        assert server.version()["version"] == "v1" and live() == "v1"
        assert server.registry()["current"] == reg["current"]
    assert not traffic.failures, traffic.failures[:5]
    assert traffic.ok > 20, "traffic must have flowed during the switches"
    print(f"\n[reference] rollback command took {rollback_s:.2f}s; {traffic.ok} requests during deploy/rollback, "
          "0 failed")


def test_failed_commands_exit_nonzero_and_change_nothing(server: Server, repo: Path) -> None:
    before_version = server.version()
    before_registry = (server.state / "registry.json").read_text()

    out = server.cli("deploy", "v9")
    assert out.returncode != 0 and "v9" in out.stderr
    out = server.cli("deploy", "../etc")
    assert out.returncode != 0
    broken = repo / "models" / "v3" / "model.joblib"  # exists, but is not a model: the server must refuse it
    broken.parent.mkdir()
    broken.write_bytes(b"not a pickle")
    try:
        out = server.cli("deploy", "v3")
        assert out.returncode != 0 and "cannot be loaded" in out.stderr, out.stderr
    finally:
        shutil.rmtree(broken.parent)
    assert (server.state / "registry.json").read_text() == before_registry
    assert server.version()["sha256"] == before_version["sha256"]

    # Promote v2 again, then break the last known good (v1): rollback must refuse before switching.
    assert server.cli("deploy", "v2").returncode == 0
    registry_v2 = (server.state / "registry.json").read_text()
    good = repo / "models" / "v1" / "model.joblib"
    saved = good.read_bytes()
    try:
        good.write_bytes(saved[: len(saved) // 2])  # truncated artifact: other checksum, does not load
        out = server.cli("rollback")
        assert out.returncode != 0 and "not servable" in out.stderr
        assert server.version()["version"] == "v2"
        assert (server.state / "registry.json").read_text() == registry_v2
    finally:
        good.write_bytes(saved)
    assert server.cli("rollback").returncode == 0 and server.version()["version"] == "v1"


# --- robustness -------------------------------------------------------------------------------

def _bad_bodies(row: dict) -> dict[str, bytes]:
    def mutate(**changes: Any) -> bytes:
        bad = {**row, **changes}
        return json.dumps({"instances": [{k: v for k, v in bad.items() if v is not _DROP}]}).encode()

    return {
        "malformed JSON": b'{"instances": [{"amount": 12.5,',
        "not an object": b"[1, 2, 3]",
        "empty instances": b'{"instances": []}',
        "no instances key": b'{"rows": []}',
        "string in a number": mutate(amount="twelve"),
        "bool in a number": mutate(account_age_days=True),
        "missing feature": mutate(amount=_DROP),
        "extra feature": mutate(favourite_colour=3),
        "null in a non-nullable": mutate(amount=None),
        "null category": mutate(channel=None),
        "number as category": mutate(channel=3),
        "negative amount": mutate(amount=-50.0),
        "hour out of range": mutate(hour_of_day=24),
        "fractional integer feature": mutate(transactions_last_24h=2.5),
        "NaN literal": json.dumps({"instances": [row]}).replace(str(row["amount"]), "NaN", 1).encode(),
        "huge integer": mutate(account_age_days=10 ** 400),
        "too many instances": json.dumps({"instances": [row] * 1001}).encode(),
        "deeply nested": b'{"instances": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        "not UTF-8": b'{"instances": [\xff]}',
    }


_DROP = object()


def test_bad_inputs_get_4xx_and_service_stays_healthy(server: Server) -> None:
    row = _records(_features(1, 7))[0]
    for name, body in _bad_bodies(row).items():
        resp = server.client.post(PREDICT, content=body, headers={"Content-Type": "application/json"})
        assert 400 <= resp.status_code < 500, f"{name}: HTTP {resp.status_code} {resp.text[:200]}"
        assert "error" in resp.json(), name
    # Oversized bodies: declared (Content-Length) and streamed (chunked, no length) both get a 413.
    big = json.dumps({"instances": [row] * 12_000}).encode()
    assert len(big) > 2 * 1024 * 1024
    resp = server.client.post(PREDICT, content=big, headers={"Content-Type": "application/json"})
    assert resp.status_code == 413, resp.text[:200]

    def chunks():
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]

    resp = server.client.post(PREDICT, content=chunks(), headers={"Content-Type": "application/json"})
    assert resp.status_code == 413, resp.text[:200]
    assert server.client.get("/healthz").status_code == 200
    assert len(server.predict([row])) == 1
    assert server.proc is not None and server.proc.poll() is None


# --- observability ----------------------------------------------------------------------------

def _find_log(repo: Path, request_id: str, timeout_s: float = 5.0) -> dict[str, Any]:
    path = repo / "logs" / "requests.jsonl"
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if path.exists():
            for line in path.read_text().splitlines():
                if request_id in line:
                    return json.loads(line)
        time.sleep(0.1)
    raise AssertionError(f"request id {request_id} not in {path}")


def test_request_ids_are_logged_with_what_replay_needs(server: Server, repo: Path) -> None:
    rows = _records(_features(3, 11))
    rid = f"pytest-{uuid.uuid4().hex}"
    resp = server.client.post(PREDICT, json={"instances": rows}, headers={"X-Request-ID": rid})
    assert resp.status_code == 200 and resp.headers["x-request-id"] == rid
    line = _find_log(repo, rid)
    assert line["status"] == 200 and line["n_instances"] == 3 and line["model_version"] in ("v1", "v2")
    assert line["instances"] == rows and line["predictions"] == resp.json()["predictions"]
    assert line["latency_ms"] >= 0 and line["ts"]
    assert rid in server.output(), "request log lines also go to stdout"

    bad = f"pytest-bad-{uuid.uuid4().hex}"
    resp = server.client.post(PREDICT, content=b"{nope", headers={"X-Request-ID": bad})
    assert resp.status_code == 400
    line = _find_log(repo, bad)
    assert line["status"] == 400 and line["body_excerpt"] == "{nope"

    resp = server.client.post(PREDICT, json={"instances": rows[:1]})  # no id sent: one is generated
    assert len(resp.headers["x-request-id"]) >= 16
    _find_log(repo, resp.headers["x-request-id"])


def test_replay_tool_reproduces_a_logged_request(server: Server, repo: Path) -> None:
    rid = f"pytest-replay-{uuid.uuid4().hex}"
    server.predict(_records(_features(4, 12)), request_id=rid)
    _find_log(repo, rid)
    out = subprocess.run([CANDIDATE_PYTHON[0], "-m", "app.replay", "logs/requests.jsonl", "--request-id", rid],
                         cwd=repo, env=server.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 replayed, 0 differ" in out.stdout


def test_metrics_parse_as_prometheus_text(server: Server) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    resp = server.client.get("/metrics")
    assert resp.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(resp.text)}
    for name in ("takehome_requests", "takehome_request_latency_seconds", "takehome_model_info",
                 "takehome_drift_detected", "takehome_rows", "takehome_model_reloads"):
        assert name in families, name
    info = [s for s in families["takehome_model_info"].samples if s.value == 1]
    assert len(info) == 1 and info[0].labels["version"] == server.version()["version"]
    ok = [s for s in families["takehome_requests"].samples
          if s.name == "takehome_requests_total" and s.labels == {"route": "predict", "status": "200"}]
    assert ok and ok[0].value > 0


def test_single_row_latency(server: Server, repo: Path) -> None:
    """Closed-loop, so it bounds service time only (the grader measures open-loop at 50 req/s).

    Server-side time comes from the request log: it is what the fast path and the batcher control,
    and it is not inflated by this client sharing two cores with everything else on the machine.
    """
    rows = _records(_features(420, 21))
    prefix = f"pytest-lat-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        for row in rows[:20]:  # warm-up
            client.post(PREDICT, json={"instances": [row]})
        took = []
        for i, row in enumerate(rows[20:]):
            start = time.perf_counter()
            resp = client.post(PREDICT, json={"instances": [row]}, headers={"X-Request-ID": f"{prefix}-{i}"})
            took.append((time.perf_counter() - start) * 1000)
            assert resp.status_code == 200
    _find_log(repo, f"{prefix}-{len(took) - 1}")
    server_ms = [json.loads(line)["latency_ms"] for line in (repo / "logs" / "requests.jsonl").read_text().splitlines()
                 if f'"{prefix}-' in line]
    p50, p99 = np.percentile(took, [50, 99])
    s50, s99 = np.percentile(server_ms, [50, 99])
    print(f"\n[reference] single-row latency over {len(took)} requests: client p50 {p50:.2f} ms, p99 {p99:.2f} ms;"
          f" server-side p50 {s50:.2f} ms, p99 {s99:.2f} ms")
    assert len(server_ms) == len(took)
    # The plain pipeline costs ~13 ms per call on a quiet 2-core machine; the verified fast path ~1 ms.
    version = server.version()
    assert version["fast_path"] is True and version["fast_path_max_abs_diff"] <= 1e-12, version
    assert p99 < 250.0 and s99 < 100.0


# --- drift ------------------------------------------------------------------------------------

class DriftDriver:
    """Grader-like: 10 rows per request, 4 in flight, poll /drift after every 50 rows."""

    def __init__(self, srv: Server) -> None:
        self.srv = srv
        self.pool = ThreadPoolExecutor(4)
        self.client = httpx.Client(base_url=srv.url, timeout=10.0,
                                   limits=httpx.Limits(max_connections=6, max_keepalive_connections=6))

    def close(self) -> None:
        self.pool.shutdown()
        self.client.close()

    def send(self, rows: list[dict]) -> None:
        chunks = [rows[i:i + 10] for i in range(0, len(rows), 10)]
        codes = list(self.pool.map(lambda c: self.client.post(PREDICT, json={"instances": c}).status_code, chunks))
        assert all(c == 200 for c in codes), codes

    def poll(self) -> dict[str, Any]:
        start = time.monotonic()
        resp = self.client.get("/drift", timeout=2.0)  # the grader's observer gives up after 2 s
        assert resp.status_code == 200, resp.text
        body = resp.json()
        body["_poll_s"] = time.monotonic() - start
        return body

    def phase(self, rows: list[dict], stop_when: bool | None) -> tuple[list[dict], int]:
        polls, sent = [], 0
        for i in range(0, len(rows), 50):
            self.send(rows[i:i + 50])
            sent += len(rows[i:i + 50])
            polls.append(self.poll())
            if stop_when is not None and polls[-1]["drift"] == stop_when:
                break
        return polls, sent


@pytest.fixture(scope="module")
def drift_server(repo: Path, tmp_path_factory: pytest.TempPathFactory):
    """A fresh server: the other tests send the same rows again and again (fingerprints, traffic
    during rollbacks), which is not what a drift monitor should be measured on."""
    work = tmp_path_factory.mktemp("drift")
    srv = Server(repo, work / "state", work / "server.log")
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


def test_drift_quiet_on_baseline_fires_on_amount_x100_and_clears(drift_server: Server) -> None:
    server = drift_server
    driver = DriftDriver(server)
    try:
        server.predict(_records(_features(200, 2023)))  # like the grader's correctness rows before the baseline
        baseline = _records(_features(2000, 2024))
        polls, _ = driver.phase(baseline, None)
        alarms = [p for p in polls if p["drift"]]
        evaluated = [p for p in polls if p["status"] == "ok"]
        fresh = [p for p in evaluated if p["stale_rows"] == 0]
        assert len(evaluated) >= 25, "the window must be full and evaluated for most of the baseline"
        assert not alarms, [(p["rows_seen"], p["features"]) for p in alarms]
        assert len(fresh) >= 0.5 * len(evaluated), "a poll should (mostly) see the rows it just sent"
        assert max(p["_poll_s"] for p in polls) < 2.0

        frame = _features(1500, 3030)
        frame["amount"] = np.round(np.minimum(frame["amount"] * 100.0, 1_000_000.0), 2)
        polls, delay = driver.phase(_records(frame), True)
        last = polls[-1]
        assert last["drift"], f"no alarm after {delay} rows of amount x100"
        assert delay <= 500, delay
        assert "amount" in last["features"] and len(last["features"]) <= 3, last["features"]
        assert last["details"]["amount"]["tests"]["ks"]["p_value"] < last["method"]["alpha_per_test"]

        polls, washout = driver.phase(_records(_features(1500, 4040)), False)
        assert not polls[-1]["drift"], f"alarm still on after {washout} clean rows"
    finally:
        driver.close()
    print(f"\n[reference] drift: 0 false alarms at {len(evaluated)} evaluated polls over 2000 baseline rows; "
          f"amount x100 detected after {delay} rows, named {last['features']}; cleared after {washout} clean rows")
    assert math.isfinite(last["details"]["amount"]["window"]["median"])
