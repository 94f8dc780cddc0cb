"""Fetching a candidate's repository into a private directory the grader may write to.

A git URL is cloned (prompts disabled, so a private repo fails fast instead of hanging); a local
directory is copied as its working tree, because a candidate self-checking wants the grade of
what they see, uncommitted edits included (the report records the commit and a dirty flag).
Every failure is a SubmissionError whose message says how to fix it.

A candidate's repository is untrusted, and so is its ``.git``: its hooks, its config (fsmonitor,
filters, ``core.sshCommand``, ``include.path``...) and its submodules could otherwise make git run
commands as the grader's user. So git never runs *in* the candidate's repository: a local one is
only ever read through ``git fetch``/``git clone --no-local`` (the candidate's side is then just
``git upload-pack``, which runs no hooks and none of those commands) into a repository the grader
made, and the dirty check is ``git status`` of that repository against the candidate's working
tree. Every git command also gets settings on its command line that no repository can override
(hooks off, fsmonitor off, no submodules, only the source's own transport), no system or user
config, and an environment built from an allowlist: never the grader's secrets (cloud keys, CI
tokens, ``TAKEHOME_SCENARIO_SEED``). Refs and URLs are validated before git sees them, and
positional arguments always follow ``--end-of-options`` or ``--``.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from harness.errors import GraderFault, SubmissionError
from harness.processes import spawn_bounded
from harness.runtimes.base import clip

MAX_BYTES = 500 * 2**20
MAX_FILES = 20_000
#: Never copied from a local directory: VCS data, local envs and caches are not the submission.
EXCLUDED_DIRS = frozenset({".git", ".venv", "venv", "__pycache__", "node_modules", ".mypy_cache", ".pytest_cache"})
_GIT_URL = re.compile(r"^(?:https?|ssh|git|file)://|^[\w.-]+@[\w.-]+:")
#: ``<transport>::<address>`` runs a remote helper; ``ext::`` runs an arbitrary command.
_HELPER_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
#: Characters a ref given with ``--ref`` may use (a strict subset of what git allows).
_REF_CHARS = re.compile(r"[A-Za-z0-9._/@+-]+")

#: A git config file of the grading machine's own (e.g. with a credential helper for private
#: repos). Read only when cloning a URL; ``~/.gitconfig`` and ``/etc/gitconfig`` never are.
TRUSTED_CONFIG_ENV = "TAKEHOME_GIT_CONFIG"

#: Copied from the grader's environment for clones of a URL only: reaching the host through this
#: machine's proxy, trusting its CA, and its own ssh agent and ssh command for private repos.
NETWORK_PASSTHROUGH = (
    "http_proxy", "https_proxy", "no_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
    "GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "GIT_PROXY_SSL_CAINFO", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE",
    "SSH_AUTH_SOCK", "GIT_SSH_COMMAND",
)
_DEFAULT_SSH = ("ssh -o BatchMode=yes -o ConnectTimeout=20 -o StrictHostKeyChecking=accept-new "
                "-o ForwardAgent=no -o ClearAllForwardings=yes")

#: On the command line of every git command, so that they beat any repository's config.
SAFE_CONFIG = (
    "core.hooksPath=/dev/null",  # no hooks: not the candidate's, not even a clone's own
    "core.fsmonitor=false",
    "core.pager=cat",
    "core.editor=false",
    "sequence.editor=false",
    "submodule.recurse=false",
    "fetch.recurseSubmodules=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "advice.detachedHead=false",
    "init.defaultBranch=main",
    "color.ui=false",
    "protocol.allow=never",  # then each fetch allows its source's own transport only
)
#: Settings of the candidate's repo copied to the dirty check, so that it compares files the way
#: their git does (line endings, exec bits). Only these, and only values of these shapes.
_STATUS_CONFIG = {
    "core.autocrlf": {"true", "false", "input"},
    "core.eol": {"lf", "crlf", "native"},
    "core.filemode": {"true", "false"},
    "core.ignorecase": {"true", "false"},
    "core.symlinks": {"true", "false"},
    "core.precomposeunicode": {"true", "false"},
}

Kind = Literal["git-url", "git-dir", "dir"]


@dataclass
class FetchedRepo:
    """Where the candidate's code now is, and what exactly it is."""

    path: Path
    commit: str | None
    source: str
    kind: Kind
    dirty: bool = False
    warnings: list[str] = field(default_factory=list)


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n:,} bytes"


def validate_ref(ref: str) -> str:
    """``ref`` if it is a plain branch, tag, ref path or commit SHA; else a SubmissionError saying why.

    Stricter than ``git check-ref-format``: nothing git could read as an option, a refspec, a
    revision expression or a path outside ``refs/``."""
    why = None
    if not ref:
        why = "it is empty"
    elif ref.startswith("-"):
        why = "it starts with '-' (git would read it as an option)"
    elif any(c.isspace() or not c.isprintable() for c in ref):
        why = "it contains spaces or control characters"
    elif len(ref) > 255:
        why = "it is longer than 255 characters"
    elif not _REF_CHARS.fullmatch(ref):
        bad = sorted({c for c in ref if not _REF_CHARS.fullmatch(c)})
        why = f"it contains {' '.join(repr(c) for c in bad)} (allowed: letters, digits and . _ / - + @)"
    elif ".." in ref or "@{" in ref or ref == "@" or "//" in ref:
        why = "it contains '..', '@{' or '//' (a revision expression, not a ref)"
    elif ref.startswith(("/", "+")) or ref.endswith(("/", ".", ".lock")):
        why = "it starts with '/' or '+', or ends with '/', '.' or '.lock'"
    elif any(part.startswith(".") or part.endswith(".lock") for part in ref.split("/")):
        why = "a part of it starts with '.' or ends with '.lock'"
    if why:
        raise SubmissionError(f"invalid ref {ref!r}: {why}; pass a branch, tag or commit SHA "
                              "(e.g. main, v1.0, refs/pull/12/head, 3f2a9c1)")
    return ref


def validate_url(url: str) -> str:
    """``url`` if git may be given it as a source; else a SubmissionError saying why."""
    why = None
    if url.startswith("-"):
        why = "it starts with '-' (git would read it as an option); for a local directory use ./" + url
    elif _HELPER_URL.match(url):
        why = "remote-helper transports (ext::, fd::, <helper>::) are not accepted"
    elif any(not c.isprintable() for c in url):
        why = "it contains control characters"
    elif _GIT_URL.match(url):
        if "://" in url:
            parts = urlsplit(url)
            host = parts.hostname or ""
            user = parts.username or ""
        else:  # user@host:path
            user, _, rest = url.partition("@")
            host = rest.split(":", 1)[0]
        if host.startswith("-") or user.startswith("-"):
            why = "its host or user starts with '-'"
    if why:
        raise SubmissionError(f"invalid repository {url!r}: {why}; pass an https://, ssh:// or "
                              "git@host:owner/repo URL, a file:// URL or a local directory")
    return url


def _config_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _git_dirs(worktree: Path) -> list[Path]:
    """The git directories of a local repository (for ``safe.directory``): ``.git`` or, for a
    worktree or submodule checkout, the directory its ``.git`` file names and that one's common dir."""
    dot = worktree / ".git"
    if dot.is_dir():
        return [dot]
    try:
        line = dot.read_text(errors="replace")[:4096].strip()
    except OSError:
        return []
    if not line.startswith("gitdir:"):
        return []
    gitdir = (worktree / line.removeprefix("gitdir:").strip()).resolve()
    dirs = [gitdir]
    try:
        common = (gitdir / "commondir").read_text(errors="replace")[:4096].strip()
        if common:
            dirs.append((gitdir / common).resolve())
    except OSError:
        pass
    return dirs


class _Git:
    """git for one fetch: an allowlisted environment, an empty ``HOME``, a generated global config
    (only ``safe.directory`` for the source and the safe settings) and :data:`SAFE_CONFIG`.

    ``protocol`` is the one transport this fetch may use ("file" for a local repo); ``network``
    adds the proxy, CA and ssh variables and the trusted config of :data:`TRUSTED_CONFIG_ENV`."""

    def __init__(self, protocol: str, *, network: bool = False, source_dir: Path | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="takehome-git-"))
        home = self.root / "home"
        home.mkdir()
        config = self.root / "gitconfig"
        lines = ["[core]", "\thooksPath = /dev/null", "\tfsmonitor = false"]
        safe = [*_git_dirs(source_dir), source_dir] if source_dir is not None else []
        lines += ["[safe]", *(f"\tdirectory = {_config_quote(str(d))}" for d in safe if str(d).isprintable())]
        trusted = os.environ.get(TRUSTED_CONFIG_ENV) if network else None
        if trusted and trusted.isprintable():
            lines += ["[include]", f"\tpath = {_config_quote(str(Path(trusted).expanduser()))}"]
        config.write_text("\n".join(lines) + "\n")
        home.chmod(0o500)  # stays empty: nothing reads or writes dotfiles there
        true = shutil.which("true") or "/bin/true"
        self.env = {
            "PATH": os.environ.get("PATH") or os.defpath,
            "HOME": str(home),
            "LANG": "C",
            "LC_ALL": "C",  # English errors, to classify them
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": str(config),
            "GIT_ATTR_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": true,
            "SSH_ASKPASS": true,
            "GCM_INTERACTIVE": "never",
            "GIT_NO_REPLACE_OBJECTS": "1",
            "GIT_OPTIONAL_LOCKS": "0",
            "GIT_SSH_COMMAND": "false",  # only a URL clone may use ssh
        }
        if network:
            self.env["GIT_SSH_COMMAND"] = _DEFAULT_SSH  # unless the grader's environment has its own
            self.env.update({k: os.environ[k] for k in NETWORK_PASSTHROUGH if os.environ.get(k)})
        allowed = {"http": ("http", "https"), "https": ("https",)}.get(protocol, (protocol,))
        self.flags = [arg for item in (*SAFE_CONFIG, *(f"protocol.{p}.allow=always" for p in allowed))
                      for arg in ("-c", item)]

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "_Git":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, args: list[str], cwd: Path | None = None, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
        """A quick, local git command (never a network one: those go through :meth:`bounded`)."""
        try:
            return subprocess.run(["git", *self.flags, *args], cwd=cwd or self.root, env=self.env,
                                  capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise GraderFault("git is not installed on the grading machine (apt-get install git)") from None
        except subprocess.TimeoutExpired:
            what = next((a for a in args if not a.startswith("-") and "/" not in a), "command")
            raise SubmissionError(f"git {what} did not finish within {timeout_s:.0f}s") from None

    def bounded(self, args: list[str], cwd: Path | None, timeout_s: float, watch_dir: Path | None = None,
                max_bytes: int = MAX_BYTES) -> None:
        """Run a git command that may talk to a remote, bounded in time and (for clones) in disk use."""
        command = "git " + " ".join(args)

        def too_big() -> str | None:
            # .git plus the checkout may legitimately be about twice the working tree.
            return "size" if watch_dir is not None and _tree_bytes(watch_dir) > 2 * max_bytes else None

        with tempfile.TemporaryFile() as out:
            try:
                code, stop = spawn_bounded(["git", *self.flags, *args], cwd=cwd or self.root, env=self.env,
                                           timeout_s=timeout_s, stdout=out, stderr=subprocess.STDOUT,
                                           watch=too_big, poll_s=2.0)
            except FileNotFoundError:
                raise GraderFault("git is not installed on the grading machine (apt-get install git)") from None
            out.seek(0)
            output = clip(out.read().decode("utf-8", errors="replace"), 6000)
        if stop == "timeout":
            raise SubmissionError(f"git did not finish within {timeout_s:.0f}s: the host may be unreachable or "
                                  "the repository very large; pass a local path or raise timeouts.fetch",
                                  details=output, command=command)
        if stop == "size":
            raise SubmissionError(f"the repository is larger than {_size(max_bytes)}: keep data sets and "
                                  "environments out of it", details=output, command=command)
        if code != 0:
            raise SubmissionError(_classify_git_error(output), details=output, command=command)


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _classify_git_error(output: str) -> str:
    text = output.lower()
    if any(s in text for s in ("could not read username", "authentication failed", "permission denied",
                               "terminal prompts disabled", "could not read password")):
        return ("the repository needs credentials the grader does not have: make it readable to the grader "
                f"(public, a deploy key, or a credential helper in a git config file named by ${TRUSTED_CONFIG_ENV}) "
                "or pass a local path")
    if any(s in text for s in ("could not resolve host", "failed to connect", "connection timed out",
                               "connection refused", "network is unreachable", "proxy")):
        return "could not reach the git host: check the URL and this machine's network or proxy, or pass a local path"
    if "transport" in text and "not allowed" in text:
        return "the repository points git at another transport (a redirect?), which the grader does not follow"
    return "repository not found or not accessible: check the URL or pass a local path"


def _checkout(git: _Git, repo: Path, ref: str, timeout_s: float) -> None:
    """Check out ``ref`` (commit, tag, branch or remote branch; else fetched by name, e.g. a PR ref)."""
    at = ["--git-dir", str(repo / ".git"), "--work-tree", str(repo)]
    for candidate in (ref, f"origin/{ref}"):
        probe = git.run([*at, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{candidate}^{{commit}}"])
        if probe.returncode == 0:
            sha = probe.stdout.strip()
            break
    else:
        try:
            git.bounded([*at, "fetch", "--quiet", "--no-tags", "--no-recurse-submodules", "--end-of-options",
                         "origin", ref], cwd=repo, timeout_s=timeout_s)
        except SubmissionError:
            raise SubmissionError(f"ref {ref!r} not found in the repository: pass an existing branch, tag or "
                                  "commit") from None
        sha = git.run([*at, "rev-parse", "--verify", "--quiet", "FETCH_HEAD^{commit}"]).stdout.strip()
    if not _SHA.fullmatch(sha):
        raise SubmissionError(f"ref {ref!r} does not name a commit: pass an existing branch, tag or commit")
    done = git.run([*at, "checkout", "--quiet", "--detach", sha, "--"])
    if done.returncode != 0:
        raise SubmissionError(f"could not check out {ref!r}: {done.stderr.strip()}", command=f"git checkout {sha}")


def _git_state(git: _Git, src: Path, warnings: list[str], timeout_s: float, max_bytes: int) -> tuple[str | None, bool]:
    """HEAD commit of the candidate's repo and whether its working tree differs from it (untracked
    files included), found without running git in that repo: its HEAD commit is fetched into a
    repo of the grader's, whose ``git status`` then reads the candidate's files as its work tree."""
    probe = git.root / "probe.git"
    init = git.run(["init", "--quiet", "--bare", "--template=", "--end-of-options", str(probe)])
    if init.returncode != 0:
        raise GraderFault(f"git init failed: {init.stderr.strip()}")
    at = ["--git-dir", str(probe)]
    try:
        git.bounded([*at, "fetch", "--quiet", "--no-tags", "--no-recurse-submodules", "--depth=1",
                     "--end-of-options", str(src), "HEAD"], cwd=git.root, timeout_s=timeout_s, watch_dir=probe,
                    max_bytes=max_bytes)
        commit: str | None = git.run([*at, "rev-parse", "--verify", "--quiet", "FETCH_HEAD^{commit}"]).stdout.strip()
    except SubmissionError as exc:
        if "couldn't find remote ref head" in exc.details.lower():
            why = "no HEAD"
        else:
            why = str(exc) + (f" ({exc.details.strip().splitlines()[-1]})" if exc.details.strip() else "")
        warnings.append(f"{src} is a git repository without commits (or git refused to read it): {why}")
        return None, True
    if not commit or not _SHA.fullmatch(commit):
        warnings.append(f"{src} is a git repository whose HEAD is not a commit")
        return None, True
    for args in (["update-ref", "--no-deref", "HEAD", commit], ["read-tree", commit]):
        if git.run([*at, *args]).returncode != 0:
            warnings.append(f"could not tell whether {src} has uncommitted changes (git {args[0]} failed)")
            return commit, True
    _import_exclude(src, probe)
    status = git.run([*at, *_status_flags(git, src), "--work-tree", str(src), "status", "--porcelain",
                      "--ignore-submodules=all", "--untracked-files=normal"], timeout_s=timeout_s)
    dirty = status.returncode != 0 or bool(status.stdout.strip())
    if dirty:
        warnings.append("the working tree has uncommitted changes; they are graded as they are: commit them so "
                        "the hiring team grades the same code")
    return commit, dirty


def _status_flags(git: _Git, src: Path) -> list[str]:
    """``-c`` flags for the :data:`_STATUS_CONFIG` keys the candidate's ``.git/config`` sets,
    read as a plain file (no includes, nothing run) and kept only if the value has an expected shape."""
    config = src / ".git" / "config"
    try:
        if not stat.S_ISREG(os.lstat(config).st_mode):
            return []
    except OSError:
        return []
    pattern = "^(" + "|".join(re.escape(k) for k in _STATUS_CONFIG) + ")$"
    listed = git.run(["config", "--file", str(config), "--no-includes", "--get-regexp", pattern])
    flags: list[str] = []
    for line in listed.stdout.splitlines():
        key, _, value = line.partition(" ")
        value = value.strip().lower()
        value = {"yes": "true", "on": "true", "1": "true", "no": "false", "off": "false", "0": "false"}.get(value,
                                                                                                          value)
        if value in _STATUS_CONFIG.get(key.lower(), ()):
            flags += ["-c", f"{key.lower()}={value}"]
    return flags


def _import_exclude(src: Path, probe: Path) -> None:
    """Copy the candidate's ``.git/info/exclude`` (ignore patterns: data, never run) to ``probe``."""
    exclude = src / ".git" / "info" / "exclude"
    try:
        st = os.lstat(exclude)
        if not stat.S_ISREG(st.st_mode) or st.st_size > 2**20:
            return
        text = exclude.read_bytes()
    except OSError:
        return
    (probe / "info").mkdir(exist_ok=True)
    (probe / "info" / "exclude").write_bytes(text)


def _inside(root_real: str, path: str) -> bool:
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real + os.sep)


class _Budget:
    """Counts files and bytes against the caps, failing as soon as one is exceeded."""

    def __init__(self, max_bytes: int, max_files: int) -> None:
        self.max_bytes, self.max_files, self.bytes, self.files = max_bytes, max_files, 0, 0

    def add(self, size: int) -> None:
        self.files += 1
        self.bytes += size
        if self.files > self.max_files:
            raise SubmissionError(f"the repository has more than {self.max_files:,} files (not counting "
                                  f"{', '.join(sorted(EXCLUDED_DIRS))}): remove generated files and data sets")
        if self.bytes > self.max_bytes:
            raise SubmissionError(f"the repository is larger than {_size(self.max_bytes)} (not counting "
                                  f"{', '.join(sorted(EXCLUDED_DIRS))}): keep data sets, environments and "
                                  "large artifacts out of it")


def _copy_tree(src: Path, dest: Path, budget: _Budget, warnings: list[str]) -> None:
    """Copy the working tree, skipping EXCLUDED_DIRS; symlinks stay symlinks unless they escape."""
    root_real = os.path.realpath(src)
    for dirpath, dirnames, filenames in os.walk(src):  # followlinks=False: a linked dir is one entry
        rel = os.path.relpath(dirpath, src)
        out_dir = dest / rel if rel != "." else dest
        out_dir.mkdir(parents=True, exist_ok=True)
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDED_DIRS)
        for name in [*list(dirnames), *sorted(filenames)]:
            path = os.path.join(dirpath, name)
            shown = os.path.normpath(os.path.join(rel, name))
            try:
                st = os.lstat(path)
            except OSError:
                continue  # vanished while copying (a candidate editing during a self-check)
            if stat.S_ISLNK(st.st_mode):
                if name in dirnames:
                    dirnames.remove(name)
                target = os.readlink(path)
                if not _inside(root_real, path):
                    warnings.append(f"dropped symlink {shown} -> {target}: it points outside the repository")
                    continue
                if os.path.isabs(target):  # would point back at the original, not at the copy
                    target = os.path.relpath(os.path.realpath(path), os.path.realpath(dirpath))
                budget.add(0)
                os.symlink(target, out_dir / name)
            elif stat.S_ISDIR(st.st_mode):
                continue  # created when os.walk descends into it
            elif stat.S_ISREG(st.st_mode):
                budget.add(st.st_size)
                try:
                    shutil.copy2(path, out_dir / name, follow_symlinks=False)
                except OSError as exc:
                    raise SubmissionError(f"cannot read {shown}: {exc.strerror}: fix its permissions") from None
            else:
                warnings.append(f"skipped {shown}: not a regular file, directory or symlink")


def _check_clone(root: Path, budget: _Budget, warnings: list[str]) -> None:
    """Apply the caps and the symlink rule to a fresh clone (its .git is not counted)."""
    root_real = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not (dirpath == str(root) and d == ".git")]
        for name in [*list(dirnames), *filenames]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                if not _inside(root_real, path):
                    warnings.append(f"dropped symlink {os.path.relpath(path, root)} -> {os.readlink(path)}: "
                                    "it points outside the repository")
                    os.unlink(path)
                    if name in dirnames:
                        dirnames.remove(name)
                    continue
                budget.add(0)
            elif not stat.S_ISDIR(st.st_mode):
                budget.add(st.st_size)


def local_source_problem(source: str) -> str | None:
    """Why ``source``, when it names a local directory rather than a git URL, cannot be graded
    (it does not exist, or is a file); None for a usable directory or any git URL."""
    if _GIT_URL.match(source):
        return None
    src = Path(source).expanduser()
    if not src.exists():
        return (f"no such directory: {src}: check the path, or pass a git URL "
                "(https://..., git@host:owner/repo.git)")
    if not src.is_dir():
        return f"{src} is a file, not a directory: pass the repository's root directory"
    return None


def fetch_candidate(source: str, dest: Path, ref: str | None = None, timeout_s: float = 120, *,
                    max_bytes: int = MAX_BYTES, max_files: int = MAX_FILES) -> FetchedRepo:
    """Put the candidate's code at ``dest`` (which must not exist yet or be empty).

    ``source`` is a git URL (https://, ssh://, git@host:, file://) or a local directory. With
    ``ref``, that commit, tag or branch is checked out (a local directory is then cloned, so
    uncommitted edits are not included). Raises SubmissionError on every failure, leaving no
    partial ``dest`` behind.
    """
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise GraderFault(f"fetch destination {dest} is not empty")
    validate_url(source)
    if ref is not None:
        validate_ref(ref)
    budget, warnings = _Budget(max_bytes, max_files), list[str]()
    try:
        if _GIT_URL.match(source):
            scheme = "ssh" if "://" not in source else source.split("://", 1)[0].lower()
            local = Path(unquote(urlsplit(source).path)) if scheme == "file" else None
            with _Git(scheme, network=scheme != "file", source_dir=local) as git:
                _clone(git, source, dest, ref, timeout_s, budget, warnings)
                return FetchedRepo(dest, _head(git, dest), source, "git-url", False, warnings)
        problem = local_source_problem(source)
        if problem is not None:
            raise SubmissionError(problem)
        src = Path(source).expanduser().resolve()
        is_git = (src / ".git").exists()
        if ref is not None:
            if not is_git:
                raise SubmissionError(f"a ref ({ref!r}) was given but {src} is not a git repository: "
                                      "drop the ref to grade the directory as it is")
            with _Git("file", source_dir=src) as git:
                _clone(git, str(src), dest, ref, timeout_s, budget, warnings)
                return FetchedRepo(dest, _head(git, dest), source, "git-dir", False, warnings)
        commit, dirty = None, False
        if is_git:
            with _Git("file", source_dir=src) as git:
                commit, dirty = _git_state(git, src, warnings, timeout_s, max_bytes)
        _copy_tree(src, dest, budget, warnings)
        return FetchedRepo(dest, commit, source, "git-dir" if is_git else "dir", dirty, warnings)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _head(git: _Git, repo: Path) -> str | None:
    out = git.run(["--git-dir", str(repo / ".git"), "rev-parse", "--verify", "--quiet", "HEAD^{commit}"])
    return out.stdout.strip() if out.returncode == 0 and _SHA.fullmatch(out.stdout.strip()) else None


def _clone(git: _Git, url: str, dest: Path, ref: str | None, timeout_s: float, budget: _Budget,
           warnings: list[str]) -> None:
    """Clone ``url`` (a URL or an absolute local path) to ``dest``: ``--no-local``, so even a local
    repo is read through ``git upload-pack`` rather than by copying its ``.git``; no submodules; no
    templates (so no hooks, not even samples)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        dest.rmdir()  # empty (checked by the caller); git clone wants to create it
    args = ["clone", "--quiet", "--no-local", "--no-recurse-submodules", "--template=", "--", url, str(dest)]
    git.bounded(args, cwd=dest.parent, timeout_s=timeout_s, watch_dir=dest, max_bytes=budget.max_bytes)
    if ref is not None:
        _checkout(git, dest, ref, timeout_s)
    elif _head(git, dest) is None:
        raise SubmissionError("the repository has no commits on its default branch: push your work, or pass "
                              "a ref")
    _check_clone(dest, budget, warnings)
