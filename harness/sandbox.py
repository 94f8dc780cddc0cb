"""What a candidate's processes may see of this machine: a scrubbed environment, resource limits,
and an isolated virtualenv (cached by the content of the requirements that built it).

Candidate code is untrusted. It must not read the grader's secrets (cloud keys, CI tokens, the
scenario seed) from its environment, so environments are built from an allowlist, never by
copying ``os.environ`` and deleting what looks dangerous: a denylist always misses one name.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import pwd
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from harness.errors import SubmissionError
from harness.locks import exclusive_lock

#: Directories after the caller's prefix (the candidate's venv ``bin``) on ``PATH``.
SYSTEM_PATH = ["/usr/local/bin", "/usr/bin", "/bin"]

#: Copied from the grader's environment into every candidate process: locale and clock only.
_PASSTHROUGH = ("TZ",)

#: Additionally copied for the dependency install step, so pip can reach the package index
#: through this machine's proxy and trust its (possibly TLS-intercepting) CA. Proxy and index
#: URLs may embed credentials; pip needs them, which is why only the install step gets them.
BUILD_PASSTHROUGH = (
    "http_proxy", "https_proxy", "no_proxy", "all_proxy",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_CONFIG_FILE", "PIP_CONSTRAINT",
    "PIP_CERT", "PIP_FIND_LINKS", "PIP_DEFAULT_TIMEOUT", "PIP_DISABLE_PIP_VERSION_CHECK",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
)

#: Never handed to a candidate, even if a caller passes it in ``extra`` by mistake.
FORBIDDEN = frozenset({"TAKEHOME_SCENARIO_SEED"})


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid without a passwd entry (some containers)
        return str(os.getuid())


def scrubbed_env(extra: dict[str, str], path_prefix: list[str], home: Path, tmp: Path) -> dict[str, str]:
    """The whole environment of a candidate process: an allowlist plus ``extra``.

    ``HOME`` and ``TMPDIR`` point into the run's work dir so that nothing the candidate writes
    there leaks between runs, and so that tools do not read the grader user's dotfiles.
    """
    env = {
        "PATH": os.pathsep.join([*path_prefix, *SYSTEM_PATH]),
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "USER": _user_name(),
        "LOGNAME": _user_name(),
        "SHELL": "/bin/bash",
        # Unbuffered output lands in the service log at once (the grader greps it for request ids).
        "PYTHONUNBUFFERED": "1",
        # No .pyc writes: the shared cached venv must stay exactly as pip left it.
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for name in _PASSTHROUGH:
        if name in os.environ:
            env[name] = os.environ[name]
    env.update({k: v for k, v in extra.items() if k not in FORBIDDEN})
    return env


def _user_pip_config() -> str | None:
    """The grader user's own pip.conf, which pip stops finding once ``HOME`` is moved."""
    real_home = Path(os.environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    candidates = [Path(xdg) / "pip" / "pip.conf"] if xdg else []
    candidates += [real_home / ".config" / "pip" / "pip.conf", real_home / ".pip" / "pip.conf"]
    for path in candidates:
        if path.is_file():
            return str(path)
    return None


def build_env(extra: dict[str, str], path_prefix: list[str], home: Path, tmp: Path) -> dict[str, str]:
    """Environment of the dependency install step: :func:`scrubbed_env` plus what pip needs to
    reach the index (proxy, index URLs, CA bundles, pip's own settings) and nothing else."""
    env = scrubbed_env({}, path_prefix, home, tmp)
    for name in BUILD_PASSTHROUGH:
        if name in os.environ:
            env[name] = os.environ[name]
    if "PIP_CONFIG_FILE" not in env:
        # /etc/pip.conf and /etc/xdg/pip are still read by pip; the per-user file is not (HOME moved).
        user_conf = _user_pip_config()
        if user_conf:
            env["PIP_CONFIG_FILE"] = user_conf
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    env["PIP_NO_INPUT"] = "1"  # a prompt (e.g. for index credentials) would hang the build
    env.update({k: v for k, v in extra.items() if k not in FORBIDDEN})
    return env


_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
#: Variables that hold URLs which may embed the grader's credentials (user:password@host).
_URL_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
             "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")


def without_credentials(env: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """``env`` with the user:password@ part removed from proxy and index URLs, and the names of the
    variables that had one. Candidate code (``setup.py``) runs in the install step: it must see
    the way to the package index, never the grader's credentials for it."""
    out = dict(env)
    stripped = []
    for name in _URL_VARS:
        value = out.get(name)
        if not value:
            continue
        parts = [_USERINFO.sub(r"\1", part) for part in value.split()]
        cleaned = " ".join(parts)
        if cleaned != value:
            out[name] = cleaned
            stripped.append(name)
    return out, stripped


def _set_limit(which: int, value: int) -> None:
    _soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)  # an unprivileged grader cannot raise its hard limit
    resource.setrlimit(which, (value, value))


def limits_preexec(memory_mb: int, cpu_s: int, nofile: int) -> Callable[[], None]:
    """A ``preexec_fn`` that applies resource limits in the child before ``exec``.

    ``memory_mb`` caps the address space (RLIMIT_AS) and ``cpu_s`` the CPU seconds; 0 means no
    limit. Core dumps are disabled (a crashing candidate must not fill the disk). It only calls
    ``setrlimit`` (no imports, no allocation-heavy work) because it runs between fork and exec.
    """

    def apply() -> None:
        if memory_mb > 0:
            _set_limit(resource.RLIMIT_AS, memory_mb * 1024 * 1024)
        if cpu_s > 0:
            _set_limit(resource.RLIMIT_CPU, cpu_s)
        _set_limit(resource.RLIMIT_NOFILE, nofile)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


# --- the isolated virtualenv, cached by requirements --------------------------------------------

#: Bump when the layout of a cached env changes, so old entries are not reused.
CACHE_FORMAT = 1
_MARKER = ".takehome-env.json"
_INCLUDE = re.compile(r"^(?:--requirement|--constraint|-r|-c)(?:\s*=\s*|\s+|(?=\S))(\S+)$")
_LINK_OPTION = re.compile(r"^(?:--find-links|--index-url|--extra-index-url|-f|-i)(?:\s*=\s*|\s+|(?=\S))(\S+)$")
_LOCAL_REQ = re.compile(r"^(?:\.|/|~|file:)|@\s*file:|^(?:-e|--editable)\b")


def requirements_key(repo: Path, requirements: Path) -> str | None:
    """sha256 of the requirements (with the files they include via -r/-c), the Python and the platform.

    None means "do not cache": the requirements install local paths (``-e .``, ``./pkg``,
    ``file:``, a local --find-links) whose content the key cannot see, and an editable install
    would point into this run's checkout anyway. Includes must stay inside the repository.
    """
    digest = hashlib.sha256(f"{CACHE_FORMAT}\n{sys.version}\n{platform.platform()}\n{sys.executable}\n".encode())
    repo = repo.resolve()
    seen: set[Path] = set()
    todo = [requirements.resolve()]
    cacheable = True
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        if not path.is_relative_to(repo):
            raise SubmissionError(f"the requirements include {path}, which is outside the repository; "
                                  "keep every -r/-c file inside it")
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = "(unreadable)"  # pip reports the real error
        digest.update(f"\0{path.relative_to(repo).as_posix()}\0{text}".encode())
        for raw in text.splitlines():
            line = re.sub(r"(^|\s)#.*$", "", raw).strip()
            if not line:
                continue
            include, link = _INCLUDE.match(line), _LINK_OPTION.match(line)
            if include:
                todo.append((path.parent / include.group(1)).resolve())
            elif link:
                cacheable &= "://" in link.group(1) and not link.group(1).startswith("file:")
            elif _LOCAL_REQ.search(line):
                cacheable = False
    return digest.hexdigest() if cacheable else None


def _stat_records_find(root: Path) -> list[bytes] | None:
    """One ``size mtime ctime path`` record per non-directory under ``root``, from GNU find: the
    same records as ``_stat_records_walk`` in a tenth of the time (a 55,000-file env: 0.25 s against
    2.2 s). None when find is missing or did not read the whole tree."""
    find = shutil.which("find")
    if find is None:
        return None
    try:
        done = subprocess.run([find, str(root), "-mindepth", "1", "-not", "-type", "d",
                               "-printf", "%s %T@ %C@ %P\\0"], capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return [r for r in done.stdout.split(b"\0") if r and r.split(b" ", 3)[3:] != [_MARKER.encode()]]


def _ns_as_find(ns: int) -> str:
    """A timestamp in nanoseconds as find's ``%T@`` prints it: seconds, 10 decimals."""
    return f"{ns // 10**9}.{ns % 10**9:09d}0"


def _stat_records_walk(root: Path) -> list[bytes]:
    """The records of ``_stat_records_find``, by walking the tree in Python (where find is absent)."""
    records: list[bytes] = []
    base = str(root)
    stack = [base]
    while stack:
        top = stack.pop()
        try:
            entries = list(os.scandir(top))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                stack.append(entry.path)
            elif not (top == base and entry.name == _MARKER):
                rel = entry.path[len(base) + 1:]  # os.path.relpath is several times slower here
                records.append(f"{st.st_size} {_ns_as_find(st.st_mtime_ns)} {_ns_as_find(st.st_ctime_ns)} "
                               .encode() + os.fsencode(rel))
    return records


def tree_fingerprint(root: Path) -> str:
    """Hash of every path, size and change time under ``root``: reveals a cached env changed after
    its build. ctime, unlike mtime, cannot be set back by the process that changed a file."""
    records = _stat_records_find(root)
    if records is None:
        records = _stat_records_walk(root)
    digest = hashlib.sha256()
    for record in sorted(records):
        digest.update(record + b"\0")
    return digest.hexdigest()


class EnvCache:
    """A virtualenv per requirements key under ``root``, built at most once at a time.

    Virtualenvs cannot be moved after creation (console scripts and ``bin/activate`` embed the
    absolute path), so instead of building elsewhere and renaming, the env is built at its final
    path while holding a lock, and a marker written atomically last declares it complete. An env
    without a valid marker, or whose files changed since (a candidate's process may have written
    to it), is rebuilt, so one candidate can never tamper with the env another one gets.
    """

    def __init__(self, root: Path, key: str | None, fallback: Path) -> None:
        self.root, self.key, self.fallback = root, key, fallback

    def get_or_build(self, install: Callable[[Path], None], progress: Callable[[str], None],
                     deadline: float) -> tuple[Path, dict[str, object]]:
        """The env's path and build facts: ``cache`` (hit, miss, stale, disabled), ``pip_ran``, ``env_dir``."""
        if self.key is None:
            progress("creating an isolated env (not cached: the requirements install local paths) ...")
            shutil.rmtree(self.fallback, ignore_errors=True)
            install(self.fallback)
            return self.fallback, {"cache": "disabled", "pip_ran": True, "env_dir": str(self.fallback)}
        env_dir = self.root / self.key
        self.root.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.root / f"{self.key}.lock", max(0.0, deadline - time.monotonic()),
                            "building the same env"):
            marker = env_dir / _MARKER
            state = "miss"
            if marker.is_file():
                try:
                    recorded = json.loads(marker.read_text()).get("fingerprint")
                except (OSError, ValueError):
                    recorded = None
                if recorded == tree_fingerprint(env_dir):
                    progress(f"reusing cached env {self.key[:12]}")
                    return env_dir, {"cache": "hit", "pip_ran": False, "env_dir": str(env_dir)}
                state = "stale"
            progress(f"creating isolated env (cache {state}) in {env_dir} ...")
            shutil.rmtree(env_dir, ignore_errors=True)
            try:
                install(env_dir)
            except BaseException:
                shutil.rmtree(env_dir, ignore_errors=True)  # never leave a half-built env behind
                raise
            tmp = self.root / f"{self.key}.marker.tmp"  # outside the env, so the fingerprint ignores it
            tmp.write_text(json.dumps({"format": CACHE_FORMAT, "python": sys.version, "created": time.time(),
                                       "fingerprint": tree_fingerprint(env_dir)}))
            os.replace(tmp, marker)
            return env_dir, {"cache": state, "pip_ran": True, "env_dir": str(env_dir)}
