"""The docker runtime against a real engine and a tiny stdlib candidate written by the test.

Skipped (saying why) without an engine: `.ci/install-docker.sh` starts one. Builds after the first hit the layer cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from grader.config import GraderConfig, load_config
from harness.cleanup import CleanupStack
from harness.contract import load_contract
from harness.errors import SubmissionError
from harness.runtimes import docker_ops
from harness.runtimes.base import RuntimeContext

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

# Tiny candidate: /healthz, /env (its own environment), /state, /drift, POST /predict.
SERVER = '''\
import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STATE = Path(os.environ.get("TAKEHOME_STATE_DIR", "/tmp")) / "version"


class Handler(BaseHTTPRequestHandler):
    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        rid = self.headers.get("X-Request-ID", "-")
        with open("logs/requests.log", "a") as fh:
            fh.write(f"request_id={rid} path={self.path}\\n")
        if self.path == "/healthz":
            self._send(200, {"ok": True})
        elif self.path == "/env":
            self._send(200, dict(os.environ))
        elif self.path == "/state":
            self._send(200, {"version": STATE.read_text().strip() if STATE.exists() else None})
        elif self.path == "/drift":
            self._send(200, {"drift": False, "features": []})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        self._send(200, {"predictions": [0.5 for _ in body.get("instances", [])]})

    def log_message(self, fmt, *args):
        print("access:", fmt % args, flush=True)


os.makedirs("logs", exist_ok=True)
server = ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler)
print("tiny-candidate listening", flush=True)
print("tiny-candidate stderr line", file=sys.stderr, flush=True)
server.serve_forever()
'''

DEPLOY = '''\
#!/bin/sh
set -e  # records the version in the state dir; the server reports it at /state
echo "$1" > "$TAKEHOME_STATE_DIR/version"
echo "deployed $1 (run $TAKEHOME_RUN_ID)"
'''

DOCKERFILE = '''\
FROM python:3.11-slim
WORKDIR /app
COPY server.py deploy.sh ./
RUN useradd --create-home app && mkdir logs && chown app logs
USER app
CMD ["python", "server.py"]
'''

CONTRACT: dict[str, Any] = {
    "version": 1, "framework": "stdlib",
    "serving": {"port": 8080, "predict_path": "/predict", "ready_path": "/healthz", "metrics_path": None},
    "drift": {"signal": "http", "http_path": "/drift"},
    "logs": {"paths": ["logs/requests.log"]},
    "runtimes": {"docker": {"deploy": "sh deploy.sh {version}", "rollback": "sh deploy.sh v1"}},
}

SECRETS = {"AWS_SECRET_ACCESS_KEY": "aws-secret-must-not-leak", "GITHUB_TOKEN": "ghp_must_not_leak",
           "TAKEHOME_SCENARIO_SEED": "424242"}


def write_candidate(repo: Path, dockerfile_text: str = DOCKERFILE, **docker_section: Any) -> Path:
    repo.mkdir(parents=True)
    (repo / "server.py").write_text(SERVER)
    (repo / "deploy.sh").write_text(DEPLOY)
    (repo / "Dockerfile").write_text(dockerfile_text)
    (repo / ".dockerignore").write_text("data/\n")
    contract = json.loads(json.dumps(CONTRACT))
    contract["runtimes"]["docker"].update(docker_section)
    (repo / "takehome.yaml").write_text(yaml.safe_dump(contract))
    return repo


MakeRuntime = Callable[..., Any]


@pytest.fixture(scope="module")
def config() -> GraderConfig:
    return load_config(overrides={"timeouts": {"build": 300, "teardown": 60}})


@pytest.fixture(scope="module")
def make_runtime(docker_engine: Any, config: GraderConfig, tmp_path_factory: pytest.TempPathFactory,
                 ) -> Iterator[MakeRuntime]:
    """Factory of DockerRuntimes on fresh candidate copies; whatever a test did is torn down."""
    from harness.runtimes.docker import DockerRuntime

    made: list[DockerRuntime] = []

    def make(dockerfile_text: str = DOCKERFILE, cfg: GraderConfig | None = None,
             **docker_section: Any) -> DockerRuntime:
        run_id = "t" + uuid.uuid4().hex[:11]
        root = tmp_path_factory.mktemp(run_id)
        repo = write_candidate(root / "repo", dockerfile_text, **docker_section)
        ctx = RuntimeContext(run_id=run_id, repo_dir=repo, work_dir=root / "work", contract=load_contract(repo),
                             config=cfg or config, cleanup=CleanupStack(), progress=lambda m: print("progress:", m))
        runtime = DockerRuntime(ctx)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.ctx.cleanup.run_all()
        runtime.down()


def wait_ready(runtime: Any, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(runtime.endpoint() + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    pytest.fail("the tiny candidate did not become ready:\n" + runtime.logs())


@pytest.fixture(scope="module")
def service(make_runtime: MakeRuntime) -> Iterator[Any]:
    """One built and running candidate, shared by the read-only tests of this module."""
    runtime = make_runtime()
    runtime.ctx.candidate_env.update({"TAKEHOME_ALERT_WEBHOOK_URL": "http://example.invalid/hook",
                                      "TAKEHOME_SCENARIO_SEED": "must-be-dropped"})
    with pytest.MonkeyPatch.context() as mp:
        for name, value in SECRETS.items():
            mp.setenv(name, value)
        runtime.build()
        runtime.up()
        wait_ready(runtime)
    yield runtime


def labelled(client: Any, run_id: str) -> dict[str, list[Any]]:
    selector = {"label": f"{docker_ops.RUN_LABEL}={run_id}"}
    return {"containers": client.containers.list(all=True, filters=selector),
            "networks": client.networks.list(filters=selector),
            "images": client.images.list(all=True, filters=selector)}


# --- a running service ----------------------------------------------------------------------------

def test_build_up_and_endpoint_answers(service: Any) -> None:
    assert service.endpoint().startswith("http://127.0.0.1:")
    assert httpx.get(service.endpoint() + "/healthz", timeout=5).json() == {"ok": True}
    info = service.build_info
    assert info["image_id"] and info["steps"] >= 5 and "COPY server.py" in str(info["log"])
    assert info["base_image"]["source"] in {"present", "cached", "imported"}
    assert service.alive()


def test_container_cannot_see_the_graders_secrets(service: Any) -> None:
    env = httpx.get(service.endpoint() + "/env", timeout=5).json()
    for name in SECRETS:
        assert name not in env, f"{name} leaked into the container"
    assert not any(v in SECRETS.values() for v in env.values())
    assert env["TAKEHOME_RUN_ID"] == service.ctx.run_id
    assert env["TAKEHOME_RUNTIME"] == "docker"
    assert env["PORT"] == "8080" and env["TAKEHOME_ENDPOINT"] == "http://127.0.0.1:8080"
    assert env["TAKEHOME_STATE_DIR"] == "/tmp/takehome-state"
    assert env["TAKEHOME_ALERT_WEBHOOK_URL"] == "http://example.invalid/hook"  # candidate_env passes


def test_container_is_locked_down(service: Any, docker_engine: Any) -> None:
    attrs = docker_engine.api.inspect_container(service.container_name)
    host = attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Memory"] == service.ctx.config.local.memory_limit_mb * 2**20
    assert host["PidsLimit"] == 256 and host["NanoCpus"] == 2_000_000_000
    assert not host.get("Privileged") and not host.get("Binds")
    assert all(m["Type"] != "bind" for m in attrs["Mounts"])
    assert "docker.sock" not in json.dumps(attrs)
    assert host["PortBindings"]["8080/tcp"][0]["HostIp"] == "127.0.0.1"
    assert attrs["Config"]["Labels"][docker_ops.RUN_LABEL] == service.ctx.run_id
    # The user the Dockerfile chose, not root.
    assert attrs["Config"]["User"] == "app"


def test_grader_host_is_the_gateway_of_the_runs_network(service: Any, docker_engine: Any) -> None:
    network = docker_engine.networks.get(f"takehome-{service.ctx.run_id}")
    gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
    assert service.grader_host() == gateway


def test_command_runs_inside_with_takehome_env_and_reaches_the_service(service: Any) -> None:
    probe = ('python -c "import os, urllib.request; '
             'print(urllib.request.urlopen(os.environ[\'TAKEHOME_ENDPOINT\'] + \'/healthz\').read().decode())"; '
             'echo "run=$TAKEHOME_RUN_ID runtime=$TAKEHOME_RUNTIME version=$TAKEHOME_MODEL_VERSION"; '
             'echo "secret=${AWS_SECRET_ACCESS_KEY:-none}"; id -un; pwd')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRETS["AWS_SECRET_ACCESS_KEY"])
        result = service.run_command("probe", probe, timeout_s=30, env={"TAKEHOME_MODEL_VERSION": "v2"})
    assert result.ok, result.evidence()
    assert '{"ok": true}' in result.stdout
    assert f"run={service.ctx.run_id} runtime=docker version=v2" in result.stdout
    assert "secret=none" in result.stdout
    assert "app\n/app" in result.stdout  # the image's USER and WORKDIR


def test_deploy_command_changes_what_the_service_sees(service: Any) -> None:
    result = service.run_command("deploy v2", "sh deploy.sh v2", timeout_s=30)
    assert result.ok and "deployed v2" in result.stdout
    assert httpx.get(service.endpoint() + "/state", timeout=5).json() == {"version": "v2"}


def test_failing_command_keeps_exit_code_and_both_streams(service: Any) -> None:
    result = service.run_command("fails", "echo out; echo err >&2; exit 7", timeout_s=30)
    assert result.exit_code == 7 and not result.timed_out and not result.ok
    assert result.stdout.strip() == "out" and result.stderr.strip() == "err"


def test_command_timeout_is_enforced(service: Any) -> None:
    started = time.monotonic()
    result = service.run_command("hangs", "echo started; sleep 60", timeout_s=2)
    assert result.timed_out and result.exit_code is None and "started" in result.stdout
    assert time.monotonic() - started < 15
    top = service.diagnostics()["processes"]
    assert "sleep 60" not in top, top  # the whole tree was killed inside the container


def test_logs_and_diagnostics(service: Any) -> None:
    rid = f"rid-{uuid.uuid4().hex[:8]}"
    httpx.get(service.endpoint() + "/drift", headers={"X-Request-ID": rid}, timeout=5)
    logs = service.logs()
    assert "tiny-candidate listening" in logs and "tiny-candidate stderr line" in logs
    assert f"request_id={rid}" in logs  # read from the declared log file inside the container
    assert "deploy v2: sh deploy.sh v2" in logs  # the commands' log
    diag = service.diagnostics()
    assert "Status=running" in diag["state"] and "OOMKilled=False" in diag["state"]
    assert "server.py" in diag["processes"] and "PidsLimit=256" in diag["limits"]


# --- build failures and limits --------------------------------------------------------------------

def test_failing_dockerfile_is_a_submission_error_with_the_log(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(dockerfile_text="FROM python:3.11-slim\nRUN echo about to fail && exit 3\n")
    with pytest.raises(SubmissionError) as err:
        runtime.build()
    text = err.value.describe()
    assert "about to fail" in text and "3" in str(err.value)
    assert err.value.command and "docker build" in err.value.command


def test_build_timeout_stops_waiting(make_runtime: MakeRuntime, config: GraderConfig, docker_engine: Any) -> None:
    quick = config.model_copy(update={"timeouts": config.timeouts.model_copy(update={"build": 4})})
    runtime = make_runtime(dockerfile_text="FROM python:3.11-slim\nRUN echo sleeping && sleep 120\n", cfg=quick)
    started = time.monotonic()
    with pytest.raises(SubmissionError, match="timeouts.build"):
        runtime.build()
    assert time.monotonic() - started < 30
    time.sleep(2)  # the engine cancels the build once its client has gone
    leftovers = [c for c in docker_engine.containers.list() if "sleep 120" in " ".join(c.attrs["Args"] or [])]
    assert not leftovers


def test_paths_outside_the_repo_and_oversized_context_are_refused(make_runtime: MakeRuntime,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for escape in ({"context": ".."}, {"dockerfile": "/etc/passwd"}):
        with pytest.raises(SubmissionError, match="outside the repository"):
            make_runtime(**escape).build()
    from harness.runtimes import docker as docker_runtime

    monkeypatch.setattr(docker_runtime, "CONTEXT_CAP_BYTES", 1024)
    runtime = make_runtime()
    (runtime.repo_dir / "data").mkdir()
    (runtime.repo_dir / "data" / "big.bin").write_bytes(b"x" * 4096)  # ignored by .dockerignore
    (runtime.repo_dir / "notes.bin").write_bytes(b"x" * 4096)
    with pytest.raises(SubmissionError, match="over 0 MB|dockerignore"):
        runtime.build()


def test_container_that_exits_at_once_is_reported_with_its_log(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(dockerfile_text='FROM python:3.11-slim\nCMD ["python", "-c", '
                                      '"import sys; print(\'boom: no model\'); sys.exit(4)"]\n')
    runtime.build()
    with pytest.raises(SubmissionError, match="exited with code 4") as err:
        runtime.up()
    assert "boom: no model" in err.value.describe()


def test_pip_install_inside_a_dockerfile_works(make_runtime: MakeRuntime, docker_engine: Any) -> None:
    """Proves the CA/proxy path: the real reference solution pip-installs its requirements."""
    bust = uuid.uuid4().hex  # a fresh step, so the install really runs (no layer cache)
    runtime = make_runtime(dockerfile_text=DOCKERFILE.replace(
        "COPY server.py", f"RUN echo {bust} && pip install --no-cache-dir six && python -c 'import six'\n"
                          "COPY server.py"))
    runtime.build()
    assert "Successfully installed six" in str(runtime.build_info["log"])
    runtime.down()  # then drop its one-off layers too: they can never be a cache hit again
    docker_engine.images.remove(str(runtime.build_info["candidate_layers_id"]), force=True)


def test_missing_base_image_is_explained(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(dockerfile_text="FROM takehome-test/no-such-image:1\nRUN true\n")
    with pytest.raises(SubmissionError, match="never pulled"):
        runtime.build()


def test_setup_runs_inside_the_container_once_it_is_up(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(setup="sh deploy.sh v1")
    runtime.build()
    runtime.up()
    wait_ready(runtime)
    assert httpx.get(runtime.endpoint() + "/state", timeout=5).json() == {"version": "v1"}
    assert runtime.build_info["setup"]["exit_code"] == 0
    failing = make_runtime(setup="echo cannot prepare >&2; exit 5")
    failing.build()
    with pytest.raises(SubmissionError, match="setup command exited with code 5") as err:
        failing.up()
    assert "cannot prepare" in err.value.describe()


# --- teardown -------------------------------------------------------------------------------------

def test_down_removes_everything_and_is_idempotent(make_runtime: MakeRuntime, docker_engine: Any) -> None:
    runtime = make_runtime()
    cold = time.monotonic()
    runtime.build()
    took = time.monotonic() - cold
    assert runtime.build_info["cache_hits"] >= 1, "an unchanged Dockerfile should hit the layer cache"
    print(f"cached build: {took:.1f}s, cache hits {runtime.build_info['cache_hits']}")
    runtime.up()
    wait_ready(runtime)
    assert all(labelled(docker_engine, runtime.ctx.run_id).values())
    runtime.down()
    assert not any(labelled(docker_engine, runtime.ctx.run_id).values())
    assert not runtime.alive()
    runtime.down()  # idempotent
    assert runtime.teardown_info["calls"] == 2
    assert docker_engine.images.get("python:3.11-slim")  # the shared base image stays


def test_cleanup_stale_removes_a_crashed_runs_leftovers(docker_engine: Any) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs: the "crashed grader"
    crashed, live = "crash" + uuid.uuid4().hex[:7], "live" + uuid.uuid4().hex[:8]
    created = []
    for run_id, pid in ((crashed, dead.pid), (live, os.getpid())):
        labels = {**docker_ops.run_labels(run_id, "service"), docker_ops.OWNER_PID_LABEL: str(pid)}
        net = docker_engine.networks.create(f"takehome-{run_id}", labels=labels)
        docker_engine.containers.create("python:3.11-slim", ["sleep", "300"], name=f"takehome-{run_id}",
                                        labels=labels, network=net.name)
        created.append(run_id)
    try:
        removed = docker_ops.cleanup_stale(docker_engine)
        assert f"takehome-{crashed}" in removed["containers"] and f"takehome-{crashed}" in removed["networks"]
        assert not any(labelled(docker_engine, crashed).values())
        assert all(labelled(docker_engine, live)[k] for k in ("containers", "networks"))  # a live run is spared
        assert docker_ops.cleanup_stale(docker_engine, older_than_s=3600, include_live=True)["containers"] == []
    finally:
        for run_id in created:
            for container in labelled(docker_engine, run_id)["containers"]:
                container.remove(force=True)
            for network in labelled(docker_engine, run_id)["networks"]:
                network.remove()


def test_build_cache_is_recorded_and_pruned_on_request(make_runtime: MakeRuntime, config: GraderConfig,
                                                        docker_engine: Any, tmp_path: Path) -> None:
    import docker.errors

    from harness.runtimes.docker_cache import prune_build_cache, recorded_builds

    cfg = config.model_copy(update={"local": config.local.model_copy(update={"cache_dir": str(tmp_path)})})
    # A layer no other test builds, so pruning it cannot slow the rest of the suite.
    runtime = make_runtime(DOCKERFILE.replace("USER app", f"RUN echo {uuid.uuid4().hex} > /tmp/unique\nUSER app"),
                           cfg=cfg)
    runtime.build()
    layers = runtime.build_info["candidate_layers_id"]
    assert layers in recorded_builds(tmp_path)
    runtime.down()
    assert docker_engine.images.get(layers)  # teardown keeps the build result: the next grading's cache
    assert prune_build_cache(docker_engine, tmp_path, older_than_s=3600)["images"] == []  # used just now
    pruned = prune_build_cache(docker_engine, tmp_path)
    assert len(pruned["images"]) == 1 and pruned["errors"] == [], pruned
    assert runtime.ctx.run_id in pruned["images"][0]  # traceable to the grading that built it
    with pytest.raises(docker.errors.ImageNotFound):
        docker_engine.images.get(layers)
    assert recorded_builds(tmp_path) == {}
    assert docker_engine.images.get("python:3.11-slim")  # the shared base image stays
