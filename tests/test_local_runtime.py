"""The local runtime against a real (tiny, stdlib-only) candidate: real venvs, processes and signals."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from grader.config import GraderConfig, load_config
from harness import processes
from harness.cleanup import CleanupStack
from harness.contract import load_contract
from harness.errors import SubmissionError
from harness.runtimes.base import RuntimeContext
from harness.runtimes.installer import uv_binary
from harness.runtimes.local import LocalRuntime
from harness import sandbox
from harness.sandbox import build_env, requirements_key, scrubbed_env, tree_fingerprint

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_candidate"
pytestmark = pytest.mark.timeout(180)

MakeRuntime = Callable[..., LocalRuntime]


@pytest.fixture(scope="module")
def shared_config(tmp_path_factory: pytest.TempPathFactory) -> GraderConfig:
    """One env cache for the module: only the first build pays for the virtualenv."""
    return load_config(overrides={"local": {"cache_dir": str(tmp_path_factory.mktemp("envcache"))}})


@pytest.fixture
def make_runtime(tmp_path: Path, shared_config: GraderConfig) -> Iterator[MakeRuntime]:
    """Factory: a fresh copy of the tiny candidate (optionally edited) and a LocalRuntime on it."""
    made: list[LocalRuntime] = []

    def make(local: dict | None = None, logs: list[str] | None = None, requirements: str | None = None,
             config: GraderConfig | None = None) -> LocalRuntime:
        run_id = uuid.uuid4().hex[:12]
        repo = tmp_path / f"repo-{run_id}"
        shutil.copytree(FIXTURE, repo)
        contract = yaml.safe_load((repo / "takehome.yaml").read_text())
        contract["runtimes"]["local"].update(local or {})
        if logs is not None:
            contract["logs"]["paths"] = logs
        (repo / "takehome.yaml").write_text(yaml.safe_dump(contract))
        if requirements is not None:
            (repo / "requirements.txt").write_text(requirements)
        ctx = RuntimeContext(run_id=run_id, repo_dir=repo, work_dir=tmp_path / f"work-{run_id}",
                             contract=load_contract(repo), config=config or shared_config, cleanup=CleanupStack())
        runtime = LocalRuntime(ctx)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:  # whatever a test did, leave no process behind
        runtime.ctx.cleanup.run_all()
        runtime.down()


def wait_ready(runtime: LocalRuntime, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(runtime.endpoint() + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    pytest.fail("the tiny candidate did not become ready:\n" + runtime.logs())


def gone(pid: int) -> bool:
    """Dead, or a zombie nobody reaps (PID 1 in some containers never does)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# --- build -----------------------------------------------------------------------------------

def test_build_cache_miss_then_hit_then_stale(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    config = load_config(overrides={"local": {"cache_dir": str(tmp_path / "own-cache")}})
    # Two gradings of the same requirements at once: the file lock makes one build and one reuse.
    racers = [make_runtime(config=config), make_runtime(config=config)]
    threads = [threading.Thread(target=r.build) for r in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(150)
    assert sorted(str(r.build_info.get("cache")) for r in racers) == ["hit", "miss"]
    first = next(r for r in racers if r.build_info["cache"] == "miss")
    assert first.build_info["pip_ran"] is True
    assert first.build_info["installer"] == ("uv" if uv_binary() else "pip")
    env_dir = Path(str(first.build_info["env_dir"]))
    assert env_dir.is_relative_to(tmp_path / "own-cache" / "envs")
    assert (env_dir / "bin" / "python").exists()

    second = make_runtime(config=config)
    second.build()
    assert second.build_info["cache"] == "hit" and second.build_info["pip_ran"] is False
    assert second.build_info["env_dir"] == str(env_dir)
    assert float(second.build_info["seconds"]) < float(first.build_info["seconds"])  # type: ignore[arg-type]

    # A candidate process that writes into the shared env must not poison the next grading.
    (env_dir / "lib" / "planted.py").write_text("print('hi')")
    third = make_runtime(config=config)
    third.build()
    assert third.build_info["cache"] == "stale" and third.build_info["pip_ran"] is True
    assert not (env_dir / "lib" / "planted.py").exists()


def test_env_fingerprint_sees_every_change_and_reads_the_same_without_find(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "env"
    (root / "lib" / "pkg").mkdir(parents=True)
    (root / "lib" / "pkg" / "mod.py").write_text("x = 1\n")
    (root / "lib" / "odd name\nwith newline").write_text("")
    (root / "bin").mkdir()
    (root / "bin" / "python").symlink_to("/usr/bin/python3")
    # find (the fast path) and the Python walk (where find is absent) give one fingerprint.
    assert sorted(sandbox._stat_records_find(root) or []) == sorted(sandbox._stat_records_walk(root))
    before = tree_fingerprint(root)
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    assert tree_fingerprint(root) == before
    monkeypatch.undo()
    (root / sandbox._MARKER).write_text("{}")  # the marker that records the fingerprint is not part of it
    assert tree_fingerprint(root) == before
    (root / "lib" / "pkg" / "mod.py").write_text("x = 2\n")  # same size, new content: ctime moves
    changed = tree_fingerprint(root)
    assert changed != before
    (root / "lib" / "pkg" / "extra.py").write_text("")
    assert tree_fingerprint(root) != changed


def test_failed_install_reports_pip_error(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(requirements="this-package-does-not-exist-xyz==1.0\n")
    with pytest.raises(SubmissionError) as info:
        runtime.build()
    assert "this-package-does-not-exist-xyz" in info.value.details
    assert "No matching distribution" in info.value.details
    assert "pip" in (info.value.command or "")
    if uv_binary():  # uv tried first, then pip had the last word (its message is the one reported)
        log = (runtime.logs_dir / "build.log").read_text()
        assert log.index("uv pip install") < log.index("-m pip install")
    envs = runtime.ctx.config.local.resolved_cache_dir() / "envs"
    assert all((p / ".takehome-env.json").exists() for p in envs.iterdir() if p.is_dir())  # no half-built env


def test_missing_or_escaping_requirements_are_refused(make_runtime: MakeRuntime) -> None:
    with pytest.raises(SubmissionError, match="missing.txt"):
        make_runtime(local={"requirements": "missing.txt"}).build()
    with pytest.raises(SubmissionError, match="outside the repository"):
        make_runtime(local={"requirements": "../requirements.txt"}).build()


def test_setup_failure_is_a_submission_error(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(local={"setup": "echo preparing; echo broken >&2; exit 4"})
    with pytest.raises(SubmissionError, match="exited with code 4") as info:
        runtime.build()
    assert "broken" in info.value.details


def test_requirements_key_follows_includes_and_refuses_local_paths(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("requests==2.32.3\n")
    main = tmp_path / "requirements.txt"
    main.write_text("-r base.txt  # shared pins\n")
    before = requirements_key(tmp_path, main)
    (tmp_path / "base.txt").write_text("requests==2.32.4\n")
    assert before is not None and requirements_key(tmp_path, main) not in (None, before)
    main.write_text("-e .\n")
    assert requirements_key(tmp_path, main) is None
    main.write_text("-r ../elsewhere.txt\n")
    with pytest.raises(SubmissionError, match="outside the repository"):
        requirements_key(tmp_path, main)


# --- environment -----------------------------------------------------------------------------

def test_env_builders_pass_only_the_allowlist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.setenv("TAKEHOME_SCENARIO_SEED", "42")
    monkeypatch.setenv("https_proxy", "http://proxy.internal:3128")
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
    run = scrubbed_env({"TAKEHOME_SCENARIO_SEED": "1"}, ["/venv/bin"], tmp_path / "h", tmp_path / "t")
    assert run["PATH"].split(":")[0] == "/venv/bin" and run["LC_ALL"] == "C.UTF-8"
    assert run["HOME"] == str(tmp_path / "h") and run["TMPDIR"] == str(tmp_path / "t")
    assert not {"AWS_SECRET_ACCESS_KEY", "TAKEHOME_SCENARIO_SEED", "https_proxy", "SSL_CERT_FILE"} & set(run)
    build = build_env({}, [], tmp_path / "h", tmp_path / "t")
    assert build["https_proxy"] == "http://proxy.internal:3128" and "SSL_CERT_FILE" in build
    assert not {"AWS_SECRET_ACCESS_KEY", "TAKEHOME_SCENARIO_SEED"} & set(build)


def test_install_step_never_gets_the_graders_credentials() -> None:
    from harness.sandbox import without_credentials

    env, stripped = without_credentials({"https_proxy": "http://bob:s3cret@proxy:3128",
                                         "PIP_INDEX_URL": "https://token@pypi.example/simple",
                                         "PIP_EXTRA_INDEX_URL": "https://a:b@x/simple https://y/simple",
                                         "NO_PROXY": "localhost"})
    assert env == {"https_proxy": "http://proxy:3128", "PIP_INDEX_URL": "https://pypi.example/simple",
                   "PIP_EXTRA_INDEX_URL": "https://x/simple https://y/simple", "NO_PROXY": "localhost"}
    assert stripped == ["https_proxy", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"]


def test_service_env_is_scrubbed_and_tagged(make_runtime: MakeRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_example")
    monkeypatch.setenv("TAKEHOME_SCENARIO_SEED", "12345")
    runtime = make_runtime()
    runtime.ctx.candidate_env["TAKEHOME_ALERT_WEBHOOK_URL"] = "http://127.0.0.1:9/hook"
    runtime.build()
    runtime.up()
    wait_ready(runtime)
    env = httpx.get(runtime.endpoint() + "/env", timeout=5).json()
    assert not {"AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "TAKEHOME_SCENARIO_SEED"} & set(env)
    assert "s3cr3t" not in json.dumps(env) and "12345" not in json.dumps(env)
    assert env["TAKEHOME_RUN_ID"] == runtime.ctx.run_id
    assert env["PORT"] == runtime.endpoint().rsplit(":", 1)[1]
    assert env["TAKEHOME_RUNTIME"] == "local" and env["TAKEHOME_ENDPOINT"] == runtime.endpoint()
    assert Path(env["TAKEHOME_STATE_DIR"]).is_dir()
    assert env["TAKEHOME_ALERT_WEBHOOK_URL"] == "http://127.0.0.1:9/hook"
    assert env["PATH"].startswith(str(runtime.build_info["env_dir"]))
    assert runtime.grader_host() == "127.0.0.1" and runtime.alive()


# --- commands, teardown --------------------------------------------------------------------------

def test_run_command_ok_failing_and_timeout(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime()
    runtime.build()
    ok = runtime.run_command("deploy", "bash deploy.sh v2", timeout_s=20)
    assert ok.ok and "deployed v2" in ok.stdout
    assert (runtime.ctx.work_dir / "state" / "version").read_text().strip() == "v2"

    failing = runtime.run_command("rollback", "echo nope >&2; exit 3", timeout_s=20)
    assert failing.exit_code == 3 and not failing.ok and "nope" in failing.stderr

    started = time.monotonic()
    slow = runtime.run_command("slow", "sleep 31; echo never", timeout_s=1)
    assert slow.timed_out and slow.exit_code is None and not slow.ok
    assert time.monotonic() - started < 8
    time.sleep(0.2)
    leftovers = [p for p in processes.find_tagged(runtime.ctx.run_id) if "31" in " ".join(p.cmdline())]
    assert leftovers == []

    log = (runtime.ctx.work_dir / "logs" / "commands.log").read_text()
    assert "deployed v2" in log and "nope" in log and "timed out" in log


def _host_pid_of(runtime: LocalRuntime, needle: str) -> int:
    """The host pid of the candidate process whose command line contains ``needle`` (in the
    sandbox, pids the candidate writes down are its PID namespace's, not the host's)."""
    deadline = time.monotonic() + 5.0
    while True:  # a double-forked daemon may not have exec'd yet when its parent command returns
        for proc in runtime._candidate_processes():
            try:
                if needle in " ".join(proc.cmdline()):
                    return proc.pid
            except psutil.Error:
                continue  # gone or not readable between listing and reading it
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    pytest.fail(f"no candidate process runs {needle!r}: {runtime.diagnostics()['processes']}")


@pytest.mark.parametrize("sandbox", [True, False], ids=["sandboxed", "unsafe-local"])
def test_down_kills_double_forked_daemon_and_is_idempotent(make_runtime: MakeRuntime, shared_config: GraderConfig,
                                                           sandbox: bool) -> None:
    config = shared_config.model_copy(update={"local": shared_config.local.model_copy(update={"sandbox": sandbox})})
    runtime = make_runtime(config=config)
    runtime.build()
    runtime.up()
    wait_ready(runtime)
    result = runtime.run_command("daemon", "bash daemon.sh", timeout_s=20)
    assert result.ok, result.evidence()
    daemon_pid = _host_pid_of(runtime, "sleep 600")
    if not sandbox:  # unsandboxed, the pid it wrote down is the host's
        assert daemon_pid == int((runtime.ctx.work_dir / "state" / "daemon.pid").read_text())
    service_pid = runtime._proc.pid  # type: ignore[union-attr]
    assert not gone(daemon_pid)
    assert os.getpgid(daemon_pid) != os.getpgid(service_pid)  # it really left the service's group
    assert "sleep 600" in runtime.diagnostics()["processes"]

    runtime.down()
    assert gone(daemon_pid) and gone(service_pid)
    if not sandbox:  # the sandbox ends its PID namespace instead of signalling one by one
        killed = {k["pid"] for k in runtime.teardown_info["killed"]}  # type: ignore[union-attr]
        assert {daemon_pid, service_pid} <= killed
    assert not runtime.alive()
    runtime.down()  # a second time: harmless
    assert runtime.teardown_info["calls"] == 2 and runtime.teardown_info["survivors"] == []
    assert not runtime.ctx.cleanup.run_all()[0].error  # the registered undo is down() again


def test_start_that_exits_immediately(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(local={"start": "echo booting; echo 'fatal: model.pkl missing' >&2; exit 3"})
    runtime.build()
    with pytest.raises(SubmissionError, match="exited with code 3") as info:
        runtime.up()
    assert "fatal: model.pkl missing" in info.value.details and "booting" in info.value.details
    assert len(runtime.ctx.cleanup) == 1  # the undo was registered before the failure


def test_logs_service_output_declared_files_and_refused_paths(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(logs=["logs/*.log", "../../etc/passwd", "/etc/passwd"])
    (runtime.repo_dir / "logs").mkdir()
    (runtime.repo_dir / "logs" / "escape.log").symlink_to("/etc/passwd")
    runtime.build()
    runtime.up()
    wait_ready(runtime)
    httpx.get(runtime.endpoint() + "/healthz", headers={"X-Request-ID": "req-7f3a"}, timeout=5)
    runtime.run_command("deploy", "bash deploy.sh v1", timeout_s=20)
    time.sleep(0.2)
    logs = runtime.logs()
    assert "tiny-candidate listening on port" in logs and "tiny-candidate stderr line" in logs
    assert "request_id=req-7f3a" in logs  # from the declared logs/requests.log
    assert "deployed v1" in logs  # commands.log
    assert "root:x:0" not in logs
    assert "'../../etc/passwd' refused" in logs and "'/etc/passwd' refused" in logs
    assert "escape.log refused" in logs
    diag = runtime.diagnostics()
    assert "python server.py" in diag["processes"] and "accepting connections" in diag["port"]
