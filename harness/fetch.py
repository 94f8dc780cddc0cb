"""Fetching a candidate's repository into a private directory the grader may write to.

A git URL is cloned (prompts disabled, so a private repo fails fast instead of hanging); a local
directory is copied as its working tree, because a candidate self-checking wants the grade of
what they see, uncommitted edits included (the report records the commit and a dirty flag).
Every failure is a SubmissionError whose message says how to fix it.
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

from harness.errors import GraderFault, SubmissionError
from harness.processes import spawn_bounded
from harness.runtimes.base import clip

MAX_BYTES = 500 * 2**20
MAX_FILES = 20_000
#: Never copied from a local directory: VCS data, local envs and caches are not the submission.
EXCLUDED_DIRS = frozenset({".git", ".venv", "venv", "__pycache__", "node_modules", ".mypy_cache", ".pytest_cache"})
_GIT_URL = re.compile(r"^(?:https?|ssh|git|file)://|^[\w.-]+@[\w.-]+:")

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


def _git_env() -> dict[str, str]:
    env = dict(os.environ)  # the grader's own credentials may legitimately open a private repo
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/true", "SSH_ASKPASS": "/bin/true",
                "GCM_INTERACTIVE": "never", "LC_ALL": "C"})  # LC_ALL=C: English errors to classify
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=20 -o StrictHostKeyChecking=accept-new")
    return env


def _git(args: list[str], cwd: Path | None = None, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
    """A quick, local git command (never a network one: those go through :func:`_run_network_git`)."""
    try:
        return subprocess.run(["git", *args], cwd=cwd, env=_git_env(), capture_output=True, text=True,
                              timeout=timeout_s, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise GraderFault("git is not installed on the grading machine (apt-get install git)") from None
    except subprocess.TimeoutExpired:
        raise SubmissionError(f"git {args[0]} did not finish within {timeout_s:.0f}s") from None


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
                "(public, a deploy key or a credential helper) or pass a local path")
    if any(s in text for s in ("could not resolve host", "failed to connect", "connection timed out",
                               "connection refused", "network is unreachable", "proxy")):
        return "could not reach the git host: check the URL and this machine's network or proxy, or pass a local path"
    return "repository not found or not accessible: check the URL or pass a local path"


def _run_network_git(args: list[str], cwd: Path | None, timeout_s: float, watch_dir: Path | None = None,
                     max_bytes: int = MAX_BYTES) -> None:
    """Run a git command that may talk to a remote, bounded in time and (for clones) in disk use."""
    command = "git " + " ".join(args)

    def too_big() -> str | None:
        # .git plus the checkout may legitimately be about twice the working tree.
        return "size" if watch_dir is not None and _tree_bytes(watch_dir) > 2 * max_bytes else None

    with tempfile.TemporaryFile() as out:
        try:
            code, stop = spawn_bounded(["git", *args], cwd=cwd or Path.cwd(), env=_git_env(), timeout_s=timeout_s,
                                       stdout=out, stderr=subprocess.STDOUT, watch=too_big, poll_s=2.0)
        except FileNotFoundError:
            raise GraderFault("git is not installed on the grading machine (apt-get install git)") from None
        out.seek(0)
        output = clip(out.read().decode("utf-8", errors="replace"), 6000)
    if stop == "timeout":
        raise SubmissionError(f"git did not finish within {timeout_s:.0f}s: the host may be unreachable or the "
                              "repository very large; pass a local path or raise timeouts.fetch",
                              details=output, command=command)
    if stop == "size":
        raise SubmissionError(f"the repository is larger than {_size(max_bytes)}: keep data sets and "
                              "environments out of it", details=output, command=command)
    if code != 0:
        raise SubmissionError(_classify_git_error(output), details=output, command=command)


def _checkout(repo: Path, ref: str, timeout_s: float) -> None:
    """Check out ``ref`` (commit, tag, branch or remote branch; else fetched by name, e.g. a PR ref)."""
    for candidate in (ref, f"origin/{ref}"):
        probe = _git(["rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}"], cwd=repo)
        if probe.returncode == 0:
            sha = probe.stdout.strip()
            break
    else:
        try:
            _run_network_git(["fetch", "--quiet", "origin", ref], cwd=repo, timeout_s=timeout_s)
        except SubmissionError:
            raise SubmissionError(f"ref {ref!r} not found in the repository: pass an existing branch, tag or "
                                  "commit") from None
        sha = _git(["rev-parse", "FETCH_HEAD^{commit}"], cwd=repo).stdout.strip()
    done = _git(["-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", sha], cwd=repo)
    if done.returncode != 0:
        raise SubmissionError(f"could not check out {ref!r}: {done.stderr.strip()}", command=f"git checkout {sha}")


def _safe_git_flags(repo: Path) -> list[str]:
    """``-c`` flags disabling what a repo's own config could make ``git status`` execute
    (fsmonitor hooks, clean/smudge filters): a local candidate directory is untrusted too."""
    listed = _git(["config", "--local", "--includes", "--list", "--name-only"], cwd=repo)
    flags = ["-c", "core.fsmonitor=false"]
    for name in listed.stdout.split():
        if re.fullmatch(r"filter\..+\.(clean|smudge|process)", name, flags=re.IGNORECASE):
            flags += ["-c", f"{name}="]
    return flags


def _git_state(repo: Path, warnings: list[str]) -> tuple[str | None, bool]:
    """HEAD commit and whether the working tree differs from it (untracked files included)."""
    flags = _safe_git_flags(repo)
    head = _git([*flags, "rev-parse", "--verify", "--quiet", "HEAD"], cwd=repo)
    commit = head.stdout.strip() if head.returncode == 0 else None
    if commit is None:
        warnings.append(f"{repo} is a git repository without commits (or git refused to read it): "
                        f"{head.stderr.strip() or 'no HEAD'}")
    status = _git([*flags, "status", "--porcelain", "--ignore-submodules=all", "--untracked-files=normal"], cwd=repo)
    dirty = status.returncode != 0 or bool(status.stdout.strip())
    if dirty and commit:
        warnings.append("the working tree has uncommitted changes; they are graded as they are: commit them so "
                        "the hiring team grades the same code")
    return commit, dirty


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
    budget, warnings = _Budget(max_bytes, max_files), []
    try:
        if _GIT_URL.match(source):
            _clone(source, dest, ref, timeout_s, budget, warnings)
            return FetchedRepo(dest, _git(["rev-parse", "HEAD"], cwd=dest).stdout.strip() or None,
                               source, "git-url", False, warnings)
        src = Path(source).expanduser()
        if not src.exists():
            raise SubmissionError(f"no such directory: {src}: check the path, or pass a git URL "
                                  "(https://..., git@host:owner/repo.git)")
        if not src.is_dir():
            raise SubmissionError(f"{src} is a file, not a directory: pass the repository's root directory")
        src = src.resolve()
        is_git = (src / ".git").exists()
        if ref is not None:
            if not is_git:
                raise SubmissionError(f"a ref ({ref!r}) was given but {src} is not a git repository: "
                                      "drop the ref to grade the directory as it is")
            _clone(str(src), dest, ref, timeout_s, budget, warnings)
            commit = _git(["rev-parse", "HEAD"], cwd=dest).stdout.strip() or None
            return FetchedRepo(dest, commit, source, "git-dir", False, warnings)
        commit, dirty = _git_state(src, warnings) if is_git else (None, False)
        _copy_tree(src, dest, budget, warnings)
        return FetchedRepo(dest, commit, source, "git-dir" if is_git else "dir", dirty, warnings)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _clone(url: str, dest: Path, ref: str | None, timeout_s: float, budget: _Budget, warnings: list[str]) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        dest.rmdir()  # empty (checked by the caller); git clone wants to create it
    args = ["-c", "protocol.ext.allow=never", "clone", "--quiet", "--no-recurse-submodules", "--", url, str(dest)]
    _run_network_git(args, cwd=dest.parent, timeout_s=timeout_s, watch_dir=dest, max_bytes=budget.max_bytes)
    if ref is not None:
        _checkout(dest, ref, timeout_s)
    elif not _git(["rev-parse", "--verify", "--quiet", "HEAD"], cwd=dest).stdout.strip():
        raise SubmissionError("the repository has no commits on its default branch: push your work, or pass "
                              "a ref")
    _check_clone(dest, budget, warnings)
