"""The hostile-candidate corpus: submissions that attack the grader, graded for real.

Each case is a one-edit overlay of the tiny stdlib candidate (like the calibration flaws): a fork
bomb, a memory hog, a disk filler, a log flood, secret stealing, a daemon that escapes, a YAML
bomb... Each is graded through the real CLI on the local runtime (in its bubblewrap sandbox)
with small limits so the machine survives, and every case asserts the same four things:

1. a report with a clear status, within a bounded time;
2. the grader's canary secrets (environment, home files, config file, the scenario seed) appear
   nowhere the candidate could read or get back (report files, its checkout, its own output);
3. the report names the limit the candidate hit, where it hit one;
4. nothing is left behind: no process, no listening relay, no cgroup, no work dir, no record.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from harness.isolation import bwrap, cgroups

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "tiny_candidate"
CANARY = "CANARY-7f3a9b1c"
SEED = 918273645  # the hidden scenario seed: must never reach the candidate
MARKER = "hostile-marker-5e2d"  # in the command line of every process a case leaves running

SANDBOX = bwrap.probe()  # (ok, why): probed once, it starts a real bwrap
pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(not SANDBOX[0], reason=f"no sandbox here: {SANDBOX[1]}; "
                                 "run `sudo bash .ci/install-sandbox.sh`")]

#: Small limits so that every attack hits one fast and the machine survives.
FAST_CONFIG = {
    "timeouts": {"setup": 20, "start": 10, "ready": 8, "deploy": 10, "rollback": 5, "teardown": 30},
    "traffic": {"warmup_rows": 0, "baseline_rows": 100, "scenario_max_rows": 50, "washout_max_rows": 0,
                "settle_s": 0, "scenarios": ["mean_shift"]},
    "load": {"duration_s": 2, "warmup_s": 0},
    "thresholds": {"rollback_budget_s": 5},
    "local": {"memory_limit_mb": 512, "max_processes": 128, "disk_mb": 200, "tmp_mb": 64,
              "file_size_mb": 150, "log_mb": 8, "cpu_seconds": 120},
}


@dataclass
class Case:
    """One hostile submission: files written over the tiny candidate, contract edits, expectations."""

    name: str
    files: dict[str, str] = field(default_factory=dict)
    local: dict[str, str] = field(default_factory=dict)   # runtimes.local overrides in takehome.yaml
    contract_text: str | None = None                     # replaces takehome.yaml entirely
    status: str = "broken_submission"
    limit: str | None = None                             # a phrase the report's limits_hit must contain
    error: str | None = None                             # a phrase the report's error must contain
    max_s: float = 120
    docker: bool = False                                 # also graded on the docker runtime


@pytest.fixture(scope="module")
def grader_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A grader environment full of canaries: env secrets, home files, a private config file."""
    home = tmp_path_factory.mktemp("grader-home")
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_rsa").write_text(f"-----BEGIN KEY----- {CANARY}-ssh\n")
    (home / ".netrc").write_text(f"machine example.com login x password {CANARY}-netrc\n")
    config = home / "team-grader.yaml"
    config.write_text(yaml.safe_dump({**FAST_CONFIG, "scenario_seed": SEED}) + f"# {CANARY}-config\n")
    cache = tmp_path_factory.mktemp("cache")  # shared by the cases: the tiny env is built once
    env = {**os.environ, "HOME": str(home), "AWS_SECRET_ACCESS_KEY": f"{CANARY}-env",
           "TAKEHOME_SCENARIO_SEED": str(SEED), "TAKEHOME_CACHE_DIR": str(cache)}
    return {"env": env, "home": home, "config": config, "cache": cache}


def _steal_script(g: dict[str, object]) -> str:
    """Everything a candidate would try to read, printed to stdout (which the report quotes)."""
    return textwrap.dedent(f"""\
        #!/usr/bin/env bash
        for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do cat "$f" 2>/dev/null | tr '\\0' ' '; echo; done
        cat {g['home']}/.ssh/id_rsa {g['home']}/.netrc {g['config']} 2>&1
        cat ~/.ssh/id_rsa ~/.netrc /root/.ssh/id_rsa /root/.netrc 2>&1
        cat linked-secret 2>&1
        ls -la {ROOT} {g['cache']} / 2>&1
        cat {ROOT}/grader/defaults.yaml 2>&1 | head -3
        echo "pwned" > {ROOT}/PWNED 2>&1
        env
        echo "seed? $TAKEHOME_SCENARIO_SEED"
        curl -sS -m 3 https://pypi.org/simple/ -o /dev/null 2>&1 && echo "NETWORK REACHED" || echo "no network"
        """)


def _cases(g: dict[str, object]) -> list[Case]:
    return [
        Case("steal-secrets-in-setup", files={"steal.sh": _steal_script(g)},
             local={"setup": "bash steal.sh; exit 1"}, error="setup command", docker=True),
        Case("steal-secrets-in-start", files={"steal.sh": _steal_script(g)},
             local={"start": "bash steal.sh; exec python server.py"}, status="completed"),
        Case("fork-bomb-in-setup", local={"setup": "bomb() { bomb | bomb & }; bomb; sleep 30"},
             limit="process limit hit", error="setup command", docker=True),
        Case("fork-bomb-in-start", local={"start": "bomb() { bomb | bomb & }; bomb; sleep 60"},
             limit="process limit hit"),
        Case("memory-hog", files={"hog.py": textwrap.dedent("""\
                import os
                for _ in range(3):
                    if os.fork() == 0:
                        break
                blocks = []
                for _ in range(30 * 1024):  # 30 GB in 1 MB blocks, touched so the pages are real
                    blocks.append(bytearray(1 << 20))
                """)},
             local={"setup": "python hog.py; python hog.py; wait; exit 1"}, limit="memory limit hit",
             error="setup command", docker=True),
        Case("disk-filler", local={"setup": "for i in 1 2 3 4 5 6; do head -c 140M /dev/zero > fill-$i; done; "
                                            "head -c 100M /dev/zero > /tmp/fill; sleep 30"},
             limit="disk limit hit", error="setup command"),
        Case("log-flood", local={"start": "head -c 300M /dev/zero | tr '\\0' 'x'; exec python server.py"},
             limit="log limit hit", status="completed"),
        Case("escaping-daemon", files={"daemon.sh": textwrap.dedent(f"""\
                ( setsid bash -c 'trap "" TERM HUP; exec env -i bash -c "exec -a {MARKER} sleep 900"' \
                  </dev/null >/dev/null 2>&1 & )
                """)},
             local={"start": "bash daemon.sh; exec python server.py"}, status="completed", docker=True),
        Case("hanging-rollback", local={"rollback": "sleep 1000"}, status="completed", docker=True),
        Case("never-ready", files={"server.py": "import time\nwhile True:\n    time.sleep(1)\n"},
             error="never became ready", docker=True),
        Case("symlink-to-grader-files", files={"steal.sh": _steal_script(g)},
             local={"setup": "ln -sf /etc/shadow shadow; cat shadow; bash steal.sh; exit 1"}, error="setup command"),
        Case("absolute-requirements-path", local={"requirements": "/etc/passwd"}, error="outside the repository"),
        Case("traversal-requirements-path", local={"requirements": "../../../../etc/passwd"},
             error="outside the repository"),
        Case("yaml-alias-bomb", contract_text=_yaml_bomb(), error="takehome.yaml"),
        Case("non-yaml-contract", contract_text="\x00\x01\x02 not yaml {{{{ [[[[", error="takehome.yaml"),
    ]


def _yaml_bomb() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 9)}]")
    return "\n".join(lines) + "\n"


#: The docker variant: the same candidate in a container; the case's ``start`` becomes its CMD and
#: its ``setup`` runs inside it with docker exec.
DOCKERFILE = """\
FROM python:3.11-slim
WORKDIR /app
COPY . ./
RUN mkdir -p logs
CMD ["bash", "-c", "{start}"]
"""


def _make_repo(tmp: Path, case: Case, g: dict[str, object], runtime: str = "local") -> Path:
    repo = tmp / "repo"
    shutil.copytree(TINY, repo)
    for rel, text in case.files.items():
        (repo / rel).write_text(text)
    (repo / "linked-secret").symlink_to(Path(str(g["home"])) / ".ssh" / "id_rsa")
    if case.contract_text is not None:
        (repo / "takehome.yaml").write_text(case.contract_text)
    else:
        contract = yaml.safe_load((repo / "takehome.yaml").read_text())
        contract["runtimes"]["local"].update(case.local)
        if runtime == "docker":
            local = contract["runtimes"]["local"]
            (repo / "Dockerfile").write_text(DOCKERFILE.format(start=local["start"].replace('"', '\\"')))
            contract["runtimes"]["docker"] = {"dockerfile": "Dockerfile", "deploy": local["deploy"],
                                              "rollback": local["rollback"],
                                              **({"setup": local["setup"]} if local.get("setup") else {})}
        (repo / "takehome.yaml").write_text(yaml.safe_dump(contract))
    return repo


def _leftovers(run_id: str | None) -> list[str]:
    """Everything a grading might leave: processes, relays, cgroups, work dirs, records."""
    found = []
    for proc in psutil.process_iter():
        try:
            cmd = " ".join(proc.cmdline())
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        if MARKER in cmd or (run_id and run_id in cmd) or "th-relay-" in cmd:
            found.append(f"process {proc.pid}: {cmd[:120]}")
    if run_id:
        found += [f"cgroup {p}" for p in cgroups.stale({f"run-{run_id}", f"build-{run_id}"})]
        found += [f"work dir {p}" for p in Path("/tmp").glob(f"takehome-{run_id}-*")]
    return found


def _docker_leftovers(run_id: str) -> list[str]:
    import docker

    from harness.runtimes import docker_ops

    client = docker.from_env()
    selector = {"label": f"{docker_ops.RUN_LABEL}={run_id}"}
    found = [f"container {c.name}" for c in client.containers.list(all=True, filters=selector)]
    found += [f"network {n.name}" for n in client.networks.list(filters=selector)]
    found += [f"image {i.id}" for i in client.images.list(all=True, filters=selector)]
    client.close()
    return found


def _grade(repo: Path, out: Path, g: dict[str, object], timeout: float,
           runtime: str = "local") -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "grader.cli", "grade", "--repo", str(repo), "--out", str(out),
                           "--runtime", runtime, "--config", str(g["config"])], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=g["env"])  # type: ignore[arg-type]
    return proc, time.monotonic() - start


_ALL = _cases({"home": "", "config": "", "cache": ""})
CASE_IDS = [("local", c.name) for c in _ALL] + [("docker", c.name) for c in _ALL if c.docker]


@pytest.mark.parametrize(("runtime", "name"), CASE_IDS, ids=[f"{r}-{n}" for r, n in CASE_IDS])
def test_hostile_candidate(runtime: str, name: str, grader_env: dict[str, object], tmp_path: Path,
                           request: pytest.FixtureRequest) -> None:
    case = next(c for c in _cases(grader_env) if c.name == name)
    if runtime == "docker":
        request.getfixturevalue("docker_engine")  # skips, saying how to get one, without an engine
    repo = _make_repo(tmp_path, case, grader_env, runtime)
    out = tmp_path / "out"
    proc, took = _grade(repo, out, grader_env, timeout=case.max_s + 120 + (300 if runtime == "docker" else 0),
                        runtime=runtime)

    # 1. a clear status, in bounded time, never a traceback
    assert (out / "report.json").exists(), proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == case.status, (report.get("error"), proc.stderr[-3000:])
    assert took < case.max_s + (300 if runtime == "docker" else 0), f"took {took:.0f}s"
    assert "Traceback" not in proc.stderr  # the grader's own (candidate tracebacks may be quoted)
    if case.error:
        assert case.error in (report.get("error") or ""), report.get("error")
    # 2. no canary anywhere the candidate can read or get back
    returned = [p for p in [*out.rglob("*"), *repo.rglob("*")] if p.is_file() and not p.is_symlink()]
    for path in returned:
        text = path.read_text(errors="replace")
        assert CANARY not in text, f"{CANARY} leaked into {path}"
        assert str(SEED) not in text, f"the scenario seed leaked into {path}"
    assert not (ROOT / "PWNED").exists(), "candidate code wrote into the grader's checkout"
    assert "NETWORK REACHED" not in json.dumps(report)
    # 3. the limit it hit is named
    iso = report.get("isolation") or {}
    if case.contract_text is None:  # a contract that does not parse stops the grading before any runtime
        assert iso.get("sandbox") == ("bubblewrap" if runtime == "local" else runtime)
        if runtime == "docker":
            assert "capabilities dropped" in str(iso.get("detail")), iso
    if case.limit and runtime == "local":  # docker's caps are the engine's; its report names OOM kills only
        hits = " ".join(iso.get("limits_hit") or [])
        assert case.limit in hits, iso
    # 4. nothing left behind
    time.sleep(0.5)
    assert _leftovers(report["run_id"]) == []
    if runtime == "docker":
        assert _docker_leftovers(report["run_id"]) == []


def test_sigkill_of_the_grader_then_cleanup_then_a_new_grading(grader_env: dict[str, object], tmp_path: Path,
                                                               read_progress_until: Any) -> None:
    """A grader killed mid-run leaves no running candidate code; `takehome cleanup` removes the rest
    (relays, cgroups, work dir, records) and the next grading works."""
    case = next(c for c in _cases(grader_env) if c.name == "escaping-daemon")
    repo = _make_repo(tmp_path, case, grader_env)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "grader.cli", "grade", "--repo", str(repo), "--out", str(out),
                             "--config", str(grader_env["config"])], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=grader_env["env"])  # type: ignore[arg-type]
    try:
        seen = read_progress_until(proc, "▶ deployment", 120)
        assert "▶ deployment" in seen, seen
        assert any(MARKER in " ".join(p.cmdline()) for p in psutil.process_iter() if _readable(p)), \
            "the daemon should be running before the kill"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    records_dir = Path(str(grader_env["cache"])) / "sandboxes"
    assert list(records_dir.glob("run-*.json")), "the sandbox record is what cleanup works from"
    time.sleep(1)
    # bwrap --die-with-parent: the candidate's processes died with the grader
    assert not [p for p in psutil.process_iter() if _readable(p) and MARKER in " ".join(p.cmdline())]
    clean = subprocess.run([sys.executable, "-m", "grader.cli", "cleanup"], cwd=ROOT, capture_output=True,
                           text=True, timeout=120, env=grader_env["env"])  # type: ignore[arg-type]
    assert clean.returncode == 0, clean.stderr
    assert "local: run-" in clean.stdout and "work dir" in clean.stdout, clean.stdout
    assert not list(records_dir.glob("*.json"))
    run_ids = [line.split("run-")[1].split(":")[0] for line in clean.stdout.splitlines() if "local: run-" in line]
    for run_id in run_ids:
        assert _leftovers(run_id) == []
    # and a new grading runs normally
    again = next(c for c in _cases(grader_env) if c.name == "never-ready")
    proc2, _ = _grade(_make_repo(tmp_path / "again", again, grader_env), tmp_path / "out2", grader_env, 180)
    assert json.loads((tmp_path / "out2" / "report.json").read_text())["status"] == "broken_submission"


def test_git_option_injection_in_the_ref(grader_env: dict[str, object], tmp_path: Path) -> None:
    """A ref that is a git option (``--upload-pack=...`` once ran a command) is refused up front."""
    repo = _make_repo(tmp_path, Case("plain"), grader_env)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "x"],
                   cwd=repo, check=False)
    canary = tmp_path / "INJECTED"
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "grader.cli", "grade", "--repo", str(repo), "--out", str(out),
                           "--ref", f"--upload-pack=touch {canary}", "--config", str(grader_env["config"])],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, env=grader_env["env"])  # type: ignore[arg-type]
    assert not canary.exists()
    report = json.loads((out / "report.json").read_text())
    assert proc.returncode == 3 and report["status"] == "broken_submission"
    assert "ref" in (report.get("error") or "").lower()


def _readable(proc: psutil.Process) -> bool:
    try:
        proc.cmdline()
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
