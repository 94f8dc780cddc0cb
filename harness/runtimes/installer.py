"""How the local runtime installs a candidate's requirements: uv where it can stand in for pip
exactly, pip otherwise.

uv installs the same wheels several times faster (about 15 s instead of 42 s for the reference
requirements, bytecode included), but it reads none of pip's configuration. The grader asks its
own pip for the effective settings (files and ``PIP_*`` variables, as the sandboxed pip would
see them) and passes the ones that choose packages to uv as options. A setting uv has no
equivalent for means pip runs: a faster install must never be a different one. When uv fails,
pip runs too, so a broken requirements file is reported in pip's words, as the contract says.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.sandbox import without_credentials

#: pip settings that choose which packages get installed, and the uv options that mean the same.
_MAPPED = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links",
           "constraint": "--constraint", "trusted-host": "--allow-insecure-host"}
#: pip settings that change how pip talks or prints, not what it installs (``cert`` goes to uv as
#: SSL_CERT_FILE).
_HARMLESS = {"cert", "timeout", "default-timeout", "disable-pip-version-check", "no-input", "progress-bar",
             "retries", "cache-dir", "no-cache-dir", "root-user-action", "no-color", "quiet", "verbose",
             "no-warn-script-location", "no-python-version-warning", "proxy", "config-file"}
_LINE = re.compile(r"^(?P<scope>[^.=]*)\.(?P<key>[a-z0-9-]+)='(?P<value>.*)'$")
#: Later scopes win, as in pip: config files' [global], then [install], then PIP_* variables.
_SCOPE_ORDER = {"global": 0, "install": 1, ":env:": 2}


@dataclass
class InstallPlan:
    """The install command to run, which installer it is, and why pip was chosen when it was."""

    installer: str  # "uv" or "pip"
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to the build env
    reason: str | None = None  # why pip runs although uv was asked for
    readonly: list[Path] = field(default_factory=list)  # files the sandbox must be able to read


def pip_settings(env: dict[str, str]) -> dict[str, str] | str:
    """The effective pip configuration in ``env`` (key -> value), or why it could not be read."""
    try:
        run = subprocess.run([sys.executable, "-m", "pip", "config", "list"], env=env, capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"pip config list failed: {exc}"
    if run.returncode != 0:
        return f"pip config list exited {run.returncode}"
    found: dict[str, tuple[int, str]] = {}
    for line in run.stdout.splitlines():
        m = _LINE.match(line.strip())
        if m is None:
            continue
        rank = _SCOPE_ORDER.get(m["scope"], 0)
        if m["key"] not in found or found[m["key"]][0] <= rank:
            found[m["key"]] = (rank, m["value"])
    return {key: value for key, (_rank, value) in found.items()}


def uv_binary() -> str | None:
    """The uv executable that came with the grader's environment, if any."""
    try:
        from uv import find_uv_bin
    except ImportError:
        return None
    try:
        return str(find_uv_bin())
    except FileNotFoundError:
        return None


def pip_plan(venv: Path, requirements: Path, reason: str | None = None) -> InstallPlan:
    """``pip install -r requirements`` with the venv's own pip (what the contract promises)."""
    return InstallPlan("pip", [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-input",
                               "--progress-bar", "off", "-r", str(requirements)], reason=reason)


def plan_install(venv: Path, requirements: Path, env: dict[str, str], wanted: str) -> InstallPlan:
    """uv when ``wanted`` is "uv", uv is installed and every package-choosing pip setting maps to
    a uv option; otherwise pip, with the reason."""
    if wanted != "uv":
        return pip_plan(venv, requirements)
    uv = uv_binary()
    if uv is None:
        return pip_plan(venv, requirements, "uv is not installed beside the grader")
    settings = pip_settings(env)
    if isinstance(settings, str):
        return pip_plan(venv, requirements, settings)
    unmapped = sorted(k for k in settings if k not in _MAPPED and k not in _HARMLESS)
    if unmapped:
        return pip_plan(venv, requirements, f"pip settings uv cannot mirror: {', '.join(unmapped)}")
    # No uv.toml or [tool.uv] of the candidate's, no interpreter download, and, as pip does,
    # every index considered for every package; bytecode compiled now, since the env is read-only
    # when the service runs.
    argv = [uv, "pip", "install", "--no-config", "--no-python-downloads", "--index-strategy", "unsafe-best-match",
            "--compile-bytecode", "--python", str(venv / "bin" / "python"), "-r", str(requirements)]
    readonly = [Path(uv)]
    options: list[str] = []
    for key, option in _MAPPED.items():
        for value in settings.get(key, "").split():
            if key in ("index-url", "extra-index-url", "find-links"):
                value = without_credentials({"PIP_INDEX_URL": value})[0]["PIP_INDEX_URL"]
            options += [option, value]
            if key in ("constraint", "find-links") and value.startswith("/"):
                readonly.append(Path(value))
    argv[3:3] = options
    extra = {"UV_NO_PROGRESS": "1"}
    if "cert" in settings and "SSL_CERT_FILE" not in env:
        extra["SSL_CERT_FILE"] = settings["cert"]
    if "proxy" in settings:
        extra.setdefault("HTTPS_PROXY", without_credentials({"HTTPS_PROXY": settings["proxy"]})[0]["HTTPS_PROXY"])
    return InstallPlan("uv", argv, env=extra, readonly=[p for p in readonly if p.exists()])
