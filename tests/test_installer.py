"""Which installer the local runtime uses, and what it tells uv: pip's own settings, translated."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.runtimes.installer import pip_settings, plan_install, uv_binary
from harness.sandbox import build_env


def _env(tmp_path: Path, conf: str, **extra: str) -> dict[str, str]:
    path = tmp_path / "pip.conf"
    path.write_text(conf)
    env = build_env({}, [], tmp_path / "home", tmp_path)
    env.update(PIP_CONFIG_FILE=str(path), **extra)
    return env


def test_pip_settings_reads_files_and_lets_variables_win(tmp_path: Path) -> None:
    env = _env(tmp_path, "[global]\nindex-url = https://files.example/simple\ntimeout = 7\n",
               PIP_INDEX_URL="https://env.example/simple")
    settings = pip_settings(env)
    assert isinstance(settings, dict)
    assert settings["index-url"] == "https://env.example/simple"
    assert settings["timeout"] == "7"


@pytest.mark.skipif(uv_binary() is None, reason="uv is not installed beside the grader")
def test_uv_gets_the_package_choosing_settings_without_credentials(tmp_path: Path) -> None:
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("six<2\n")
    env = _env(tmp_path, f"[global]\nindex-url = https://user:secret@idx.example/simple\n"
                         f"extra-index-url = file:///opt/a file:///opt/b\nconstraint = {constraints}\n")
    plan = plan_install(tmp_path / "venv", tmp_path / "requirements.txt", env, "uv")
    assert plan.installer == "uv", plan.reason
    argv = " ".join(plan.argv)
    assert "--index-url https://idx.example/simple" in argv and "secret" not in argv
    assert "--extra-index-url file:///opt/a" in argv and "--extra-index-url file:///opt/b" in argv
    assert f"--constraint {constraints}" in argv and constraints in plan.readonly
    # Like pip: no project uv config, every index for every package, bytecode now (the env is read-only later).
    for flag in ("--no-config", "--index-strategy unsafe-best-match", "--compile-bytecode"):
        assert flag in argv
    assert plan.argv[-2:] == ["-r", str(tmp_path / "requirements.txt")]


def test_pip_runs_when_uv_cannot_mirror_a_setting_or_is_not_wanted(tmp_path: Path) -> None:
    env = _env(tmp_path, "[global]\nno-binary = :all:\n")
    plan = plan_install(tmp_path / "venv", tmp_path / "r.txt", env, "uv")
    assert plan.installer == "pip"
    assert plan.reason is not None and ("no-binary" in plan.reason or "uv is not installed" in plan.reason)
    plan = plan_install(tmp_path / "venv", tmp_path / "r.txt", _env(tmp_path, ""), "pip")
    assert plan.installer == "pip" and plan.reason is None
    assert plan.argv[1:4] == ["-m", "pip", "install"]
