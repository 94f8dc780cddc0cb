"""The sandbox's parts at their seams: relays, records and recovery, the sandbox itself on this machine."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.isolation import bwrap, records
from harness.isolation.logcap import CappedSink
from harness.isolation.relay import INSIDE_DIR, Relays

SANDBOX = bwrap.probe()  # (ok, why): probed once, it starts a real bwrap
needs_sandbox = pytest.mark.skipif(not SANDBOX[0], reason=f"no sandbox here: {SANDBOX[1]}; "
                                   "run `sudo bash .ci/install-sandbox.sh`")


def test_relays_cross_only_the_named_ports(tmp_path: Path) -> None:
    relays = Relays(inbound=(8123,), outbound=(9001,))
    script = relays.inside_script()
    assert f"UNIX-LISTEN:{INSIDE_DIR}/in-8123.sock" in script and "TCP:127.0.0.1:8123,nodelay" in script
    assert "TCP-LISTEN:9001,bind=127.0.0.1" in script and script.endswith("wait")
    host = relays.host_commands(tmp_path)
    assert [c[1].split(":")[0] for c in host] == ["TCP-LISTEN", "UNIX-LISTEN"]
    assert "bind=127.0.0.1" in host[0][1], "the grader side never listens beyond loopback"
    assert Relays().inside_script().endswith("exec sleep infinity")


def test_recover_ends_what_a_dead_grader_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAKEHOME_CACHE_DIR", str(tmp_path / "cache"))
    orphan = subprocess.Popen(["sleep", "300"], start_new_session=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    work = tmp_path / "work"
    (work / "repo").mkdir(parents=True)
    records.write({"name": "run-dead", "grader_pid": dead.pid, "init_pid": orphan.pid,
                   "init_ctime": psutil.Process(orphan.pid).create_time(), "relay_pids": [], "cgroups": [],
                   "relay_dir": None, "work_dir": str(work)})
    records.write({"name": "run-alive", "grader_pid": os.getpid(), "work_dir": str(tmp_path / "keep")})
    (tmp_path / "keep").mkdir()
    done = records.recover()
    assert [d["name"] for d in done] == ["run-dead"]
    assert orphan.wait(timeout=10) == -9
    assert not work.exists() and (tmp_path / "keep").exists(), "a live grading's work dir is spared"
    assert sorted(p.name for p in records.records_dir().glob("*.json")) == ["run-alive.json"]


def test_recover_never_kills_a_reused_pid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAKEHOME_CACHE_DIR", str(tmp_path / "cache"))
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        records.write({"name": "run-old", "grader_pid": 0, "init_pid": bystander.pid, "init_ctime": 1.0})
        records.recover()
        assert bystander.poll() is None, "the pid now belongs to another process: it must live"
    finally:
        bystander.kill()
        bystander.wait()


def test_capped_sink_keeps_the_cap_and_counts_the_rest(tmp_path: Path) -> None:
    sink = CappedSink(tmp_path / "out.log", cap_bytes=1000)
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdout.write('x' * 50000)"], stdout=sink.fd)
    sink.child_started()
    proc.wait()
    sink.wait(5)
    text = (tmp_path / "out.log").read_text()
    assert text.startswith("x" * 1000) and "output cap" in text and text.count("x") == 1000
    assert sink.written == 1000 and sink.dropped == 49000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@needs_sandbox
def test_sandbox_hides_the_machine_and_ends_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAKEHOME_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "GRADER-CANARY")
    writable = tmp_path / "repo"
    writable.mkdir()
    port = _free_port()
    box = bwrap.Sandbox(f"test-{os.getpid()}", writable=[writable], readonly=bwrap.grader_python_dirs(),
                        relays=Relays(inbound=(port,)), chdir=writable)
    box.start()
    try:
        assert list(records.records_dir().glob(f"{box.name}.json"))
        probe = ("id -u; ls /root /home 2>&1 | head -3; cat /proc/1/environ 2>&1 | head -c 80; echo;"
                 f" touch {Path(__file__).resolve()} 2>&1; echo ok > mine;"
                 " (setsid bash -c 'trap \"\" TERM; exec sleep 600' </dev/null >/dev/null 2>&1 &);"
                 f" {sys.base_prefix}/bin/python3 -m http.server {port} --bind 127.0.0.1 >/dev/null 2>&1 &"
                 " sleep 1; echo started")
        out = subprocess.run(box.wrap(["bash", "-c", probe], writable), env={"PATH": "/usr/bin:/bin"},
                             preexec_fn=box.preexec(), capture_output=True, text=True, timeout=30)
        assert "started" in out.stdout, out.stderr
        if os.geteuid() == 0:
            assert out.stdout.splitlines()[0] == str(box.uid) != "0"
        assert "GRADER-CANARY" not in out.stdout + out.stderr, "the grader's environment leaked"
        assert "cannot touch" in out.stdout, "the grader's checkout must not be writable (or visible)"
        assert (writable / "mine").read_text() == "ok\n"
        import httpx

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail("the relayed service never answered")
        cmdlines = [" ".join(p.cmdline()) for p in box.members()]
        assert any("sleep 600" in c for c in cmdlines) and any("http.server" in c for c in cmdlines), cmdlines
    finally:
        result = box.stop(grace_s=1)
    assert box.members() == [] and result["survivors"] == []
    assert not list(records.records_dir().glob(f"{box.name}.json"))
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the relay is gone with the sandbox"
    assert json.dumps(result["usage"])  # serialisable for the report


def test_record_stop_adds_to_what_the_runtime_recorded() -> None:
    """A runtime's own limits hit and notes (e.g. kind's Pod Security check) survive the sandbox's
    teardown report, and a second teardown call adds nothing twice."""
    from types import SimpleNamespace

    from harness.isolation import policy

    box = SimpleNamespace(uid=420001, disk_peak_mb=1.5, notes=["no cgroup here"],
                          limits_hit=lambda usage: ["memory limit hit: 1 process(es) killed"])
    isolation: dict[str, object] = {"limits_hit": ["Pod Security baseline broken"], "notes": ["Kubernetes 1.20"]}
    for _ in range(2):
        policy.record_stop(box, {"usage": {"memory_peak_mb": 10}}, isolation, ["build: pids limit hit"])  # type: ignore[arg-type]
    assert isolation["limits_hit"] == ["Pod Security baseline broken", "build: pids limit hit",
                                       "memory limit hit: 1 process(es) killed"]
    assert isolation["notes"] == ["Kubernetes 1.20", "no cgroup here"] and isolation["uid"] == 420001
