"""What every runtime shares (harness/runtimes/common.py) and the capabilities the CLI, the lifecycle
and calibrate read from the runtime registry instead of testing runtime names."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from grader.config import ConfigError, load_config
from harness.cleanup import CleanupStack
from harness.contract import load_contract
from harness.errors import SubmissionError
from harness.runtimes import registry
from harness.runtimes.base import CommandResult, RuntimeContext, StaleCleanup
from harness.runtimes.common import CommonRuntime, guarded_command, read_clipped, read_tail

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_candidate"  # declares runtimes.local only


class Probe(CommonRuntime):
    """The smallest CommonRuntime: records every teardown and how many ran at once."""

    name: ClassVar[str] = "probe"
    undo_extra_s: ClassVar[float] = 7.0

    def __init__(self, ctx: RuntimeContext, teardown_s: float = 0.0) -> None:
        super().__init__(ctx)
        self.teardown_s = teardown_s
        self.running = 0
        self.most_at_once = 0
        self.teardowns = 0

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        return True, "always"

    def _undo_description(self) -> str:
        return f"probe: undo run {self.ctx.run_id}"

    def _down_locked(self) -> None:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        info = self._count_teardown()
        time.sleep(self.teardown_s)
        self.teardowns += 1
        info["seconds"] = self.teardown_s
        self.running -= 1

    # The rest of the interface is not what these tests are about.
    def build(self) -> None: ...
    def up(self) -> None: ...
    def endpoint(self) -> str: return "http://127.0.0.1:1"
    def grader_host(self) -> str: return "127.0.0.1"
    def run_command(self, name: str, command: str, timeout_s: float,
                    env: dict[str, str] | None = None) -> CommandResult:
        raise NotImplementedError
    def alive(self) -> bool: return False
    def logs(self) -> str: return ""
    def diagnostics(self) -> dict[str, str]: return {}


def context(tmp_path: Path, teardown_s: float = 30.0) -> RuntimeContext:
    config = load_config(overrides={"timeouts": {"teardown": teardown_s}})
    return RuntimeContext(run_id="r1", repo_dir=FIXTURE, work_dir=tmp_path / "work", contract=load_contract(FIXTURE),
                          config=config, cleanup=CleanupStack())


# --- the registry and the capabilities read from it ----------------------------------------------

def test_every_registered_runtime_imports_and_carries_its_registry_name() -> None:
    assert registry.NAMES == ("local", "docker", "kind", "kubernetes")
    for name in registry.NAMES:
        assert registry.get(name).name == name
    assert registry.find("nope") is None
    with pytest.raises(Exception, match="unknown runtime 'nope'; choose one of local, docker, kind, kubernetes"):
        registry.get("nope")


def test_the_cli_offers_exactly_the_registry_and_rejects_the_rest() -> None:
    import inspect

    from grader import cli

    grade_help = inspect.signature(cli.grade).parameters["runtime"].default.help
    assert grade_help == ("Where to deploy it: local, docker, kind (a kind cluster it makes or reuses) or kubernetes "
                          "(the cluster the grader config's kubernetes: section names).")
    # demo takes no --config, so it does not offer the runtime that needs one
    assert inspect.signature(cli.demo).parameters["runtime"].default.help == "local, docker or kind."
    assert registry.names(without_config=True) == ("local", "docker", "kind")
    result = CliRunner().invoke(cli.app, ["grade", "--repo", ".", "--runtime", "nope"])
    assert result.exit_code == 2
    assert "choose one of: local, docker, kind, kubernetes" in result.output


def test_choices_text_joins_like_a_sentence() -> None:
    assert registry.choices_text(["local"]) == "local"
    assert registry.choices_text(["local", "kind"]) == "local or kind"
    assert registry.choices_text(["kind", "docker"], notes=True) == "kind (a kind cluster it makes or reuses) or docker"


def test_calibrate_reads_the_registry() -> None:
    from calibration.calibrate import RUNTIMES, Expectation

    assert RUNTIMES == registry.NAMES
    for name in registry.NAMES:
        assert Expectation(runtimes=[name]).holds_on(name)
    with pytest.raises(ValueError, match="'local', 'docker', 'kind' or 'kubernetes'"):
        Expectation(runtimes=["nomad"])
    kind_only = Expectation(runtimes=["kind"])
    # kubernetes grades the candidate's kind section, so kind's expectations hold there too; not the reverse
    assert kind_only.holds_on("kubernetes") and not kind_only.holds_on("docker") and not kind_only.holds_on("local")
    assert not Expectation(runtimes=["kubernetes"]).holds_on("kind")


def test_bind_host_is_loopback_only_where_the_service_shares_it() -> None:
    hosts = {name: registry.get(name).bind_host() for name in registry.NAMES}
    assert hosts == {"local": "127.0.0.1", "docker": "0.0.0.0", "kind": "0.0.0.0", "kubernetes": "0.0.0.0"}


def test_capability_flags_and_sections() -> None:
    sections = {name: registry.get(name).section_name() for name in registry.NAMES}
    assert sections == {"local": "local", "docker": "docker", "kind": "kind", "kubernetes": "kind"}
    assert [n for n in registry.NAMES if registry.get(n).service_sandboxed] == ["local"]
    # clusters before local: kind's cleanup spares namespaces by the records local's cleanup removes
    assert [cls.name for cls in registry.cleanup_order()] == ["kind", "kubernetes", "local", "docker"]


def test_contract_lists_the_sections_it_declares() -> None:
    assert load_contract(FIXTURE).runtimes.declared() == ["local"]


# --- takehome cleanup: every runtime's cleanup_stale(), in order -------------------------------------

def test_cleanup_prints_each_runtime_in_order_and_a_bad_config_after_the_clusters(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from grader import cli

    seen: list[StaleCleanup] = []

    class First:
        @classmethod
        def cleanup_stale(cls, options: StaleCleanup) -> Iterator[str]:
            seen.append(options)
            yield "first: [bold]not markup[/bold]"

    class NeedsConfig:
        @classmethod
        def cleanup_stale(cls, options: StaleCleanup) -> Iterator[str]:
            if options.grader_config is not None:
                options.grader_config()
                yield "never"

    class Last:
        @classmethod
        def cleanup_stale(cls, options: StaleCleanup) -> Iterator[str]:
            yield "last: done"

    monkeypatch.setattr(registry, "cleanup_order", lambda: [First, NeedsConfig, Last])
    runner = CliRunner()
    ok = runner.invoke(cli.app, ["cleanup", "--build-cache", "--older-than-days", "2"])
    assert ok.exit_code == 0, ok.output
    assert ok.output.splitlines() == ["first: [bold]not markup[/bold]", "last: done"]
    assert seen[0].grader_config is None and seen[0].build_cache_dir is not None and seen[0].older_than_s == 2 * 86400

    def bad(_path: Any = None) -> Any:
        raise ConfigError("bad config")

    monkeypatch.setattr("grader.config.load_config", lambda path=None: bad() if path else load_config())
    broken = runner.invoke(cli.app, ["cleanup", "--config", "whatever.yaml"])
    assert broken.exit_code == 2
    assert "first:" in broken.output and "error: bad config" in broken.output and "last:" not in broken.output


def test_kubernetes_cleans_only_with_a_config() -> None:
    from harness.runtimes.kubernetes import KubernetesRuntime

    assert list(KubernetesRuntime.cleanup_stale(StaleCleanup())) == []


# --- CommonRuntime: section, undo, down ---------------------------------------------------------

def test_section_is_the_runtimes_own_and_its_absence_the_submissions_fault(tmp_path: Path) -> None:
    probe = Probe(context(tmp_path))
    with pytest.raises(SubmissionError, match="declares no 'probe' runtime"):
        probe._section()
    Probe.contract_section = "local"
    try:
        assert probe._section().start == "python server.py"
    finally:
        Probe.contract_section = None


def test_common_state_is_set_up(tmp_path: Path) -> None:
    probe = Probe(context(tmp_path))
    assert probe.repo_dir == FIXTURE.resolve() and probe.logs_dir == tmp_path / "work" / "logs"
    assert probe.build_info == {} and probe.teardown_info == {"calls": 0}


def test_the_undo_is_registered_once_with_the_teardown_budget(tmp_path: Path) -> None:
    probe = Probe(context(tmp_path, teardown_s=30))
    for _ in range(3):
        probe._register_undo()
    assert len(probe.ctx.cleanup) == 1
    undo = probe.ctx.cleanup._stack[0]
    assert undo.description == "probe: undo run r1" and undo.timeout_s == 37.0 and undo.fn == probe.down
    probe.ctx.cleanup.run_all()
    assert probe.teardowns == 1 and probe.ctx.cleanup.records[0].ok


def test_down_counts_every_call_and_runs_one_at_a_time(tmp_path: Path) -> None:
    probe = Probe(context(tmp_path), teardown_s=0.2)
    threads = [threading.Thread(target=probe.down) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert probe.teardowns == 3 and probe.teardown_info["calls"] == 3
    assert probe.most_at_once == 1, "two teardowns ran at once"
    probe.down()
    assert probe.teardown_info["calls"] == 4


def test_down_gives_up_when_an_earlier_one_hangs(tmp_path: Path) -> None:
    probe = Probe(context(tmp_path, teardown_s=1))
    probe._lock.acquire()  # as if a hung down() held it
    try:
        started = time.monotonic()
        probe.down()
        waited = time.monotonic() - started
    finally:
        probe._lock.release()
    assert probe.teardowns == 0 and 0.9 <= waited < 5


def test_log_command_text_appends_to_the_commands_log(tmp_path: Path) -> None:
    probe = Probe(context(tmp_path))
    probe._log_command_text("[grader] one\n")
    probe._log_command_text("[grader] two\n")
    assert (probe.logs_dir / "commands.log").read_text() == "[grader] one\n[grader] two\n"


# --- helpers ------------------------------------------------------------------------------------

def test_guarded_command_turns_an_exception_into_the_results_error(tmp_path: Path) -> None:
    class Engine(Exception):
        explanation = "the engine's words"

    def fails() -> tuple[int | None, str, str, bool]:
        raise Engine("raw")

    plain = guarded_command("deploy", "bash deploy.sh v2", tmp_path, fails)
    assert plain.error == "Engine: raw" and plain.exit_code is None and not plain.ok
    explained = guarded_command("deploy", "bash deploy.sh v2", tmp_path, fails,
                                lambda exc: getattr(exc, "explanation", str(exc)))
    assert explained.error == "Engine: the engine's words"
    good = guarded_command("rollback", "bash deploy.sh v1", tmp_path, lambda: (0, "out", "", False))
    assert good.ok and good.stdout == "out" and good.command == "bash deploy.sh v1"
    log = (tmp_path / "commands.log").read_text()
    assert log.count("deploy: bash deploy.sh v2 (Engine: raw") == 1 and "rollback: bash deploy.sh v1 (exit 0" in log


def test_read_tail_and_read_clipped(tmp_path: Path) -> None:
    path = tmp_path / "f.log"
    path.write_bytes(b"a" * 10 + b"b" * 10)
    assert read_tail(path, 5) == "bbbbb" and read_tail(tmp_path / "missing", 5) == ""
    assert read_clipped(path, 100) == "a" * 10 + "b" * 10
    clipped = read_clipped(path, 8)
    assert clipped.startswith("aaaa") and clipped.endswith("bbbb") and "12 bytes cut" in clipped
    assert read_clipped(tmp_path / "missing", 8) == ""
