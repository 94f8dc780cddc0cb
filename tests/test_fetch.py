"""Fetching candidate repos: local copies, local git repos, file:// clones, refs, caps, failures."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes import StubService, reply
from harness.errors import GraderFault, SubmissionError
from harness.fetch import fetch_candidate

pytestmark = pytest.mark.timeout(60)

GIT_ENV = {"GIT_AUTHOR_NAME": "Cand", "GIT_AUTHOR_EMAIL": "c@example.com", "GIT_COMMITTER_NAME": "Cand",
           "GIT_COMMITTER_EMAIL": "c@example.com", "GIT_CONFIG_GLOBAL": "/dev/null"}


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path: Path) -> Path:
    """A git repo with two commits (tag v1 on the first) and a side branch."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "app.py").write_text("VERSION = 1\n")
    git(path, "add", ".")
    git(path, "commit", "-qm", "first")
    git(path, "tag", "v1")
    git(path, "checkout", "-qb", "feature")
    (path / "feature.txt").write_text("side\n")
    git(path, "add", ".")
    git(path, "commit", "-qm", "feature")
    git(path, "checkout", "-q", "main")
    (path / "app.py").write_text("VERSION = 2\n")
    git(path, "commit", "-qam", "second")
    return path


def test_local_dir_copy_excludes_envs_and_caches(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for rel in [".venv/bin/python", "venv/lib/x.py", "node_modules/a/index.js", "__pycache__/a.pyc",
                "pkg/__pycache__/b.pyc", ".pytest_cache/v", ".mypy_cache/m", "pkg/mod.py", "README.md"]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)
    fetched = fetch_candidate(str(src), tmp_path / "dest")
    files = sorted(str(p.relative_to(fetched.path)) for p in fetched.path.rglob("*") if p.is_file())
    assert files == ["README.md", "pkg/mod.py"]
    assert fetched.kind == "dir" and fetched.commit is None and not fetched.dirty


def test_local_git_repo_reports_commit_and_dirty_flag(tmp_path: Path) -> None:
    src = make_repo(tmp_path / "src")
    head = git(src, "rev-parse", "HEAD")
    clean = fetch_candidate(str(src), tmp_path / "clean")
    assert (clean.kind, clean.commit, clean.dirty) == ("git-dir", head, False)
    assert not (clean.path / ".git").exists()

    (src / "app.py").write_text("VERSION = 3  # not committed\n")
    dirty = fetch_candidate(str(src), tmp_path / "dirty")
    assert dirty.dirty and dirty.commit == head
    assert "VERSION = 3" in (dirty.path / "app.py").read_text()  # the working tree is what is graded
    assert any("uncommitted" in w for w in dirty.warnings)


def test_local_git_status_does_not_run_repo_configured_commands(tmp_path: Path) -> None:
    src = make_repo(tmp_path / "src")
    (src / ".gitattributes").write_text("*.py filter=evil\n")
    pwned = tmp_path / "pwned"
    git(src, "config", "filter.evil.clean", f"touch {pwned}; cat")
    git(src, "config", "core.fsmonitor", f"touch {pwned}; false")
    (src / "app.py").touch()
    fetch_candidate(str(src), tmp_path / "dest")
    assert not pwned.exists()


def test_file_url_clone_and_refs(tmp_path: Path) -> None:
    src = make_repo(tmp_path / "src")
    url = f"file://{src}"
    fetched = fetch_candidate(url, tmp_path / "head")
    assert fetched.kind == "git-url" and fetched.commit == git(src, "rev-parse", "HEAD")
    assert (fetched.path / "app.py").read_text() == "VERSION = 2\n" and (fetched.path / ".git").is_dir()

    tagged = fetch_candidate(url, tmp_path / "tag", ref="v1")
    assert tagged.commit == git(src, "rev-parse", "v1^{commit}")
    assert (tagged.path / "app.py").read_text() == "VERSION = 1\n"

    branch = fetch_candidate(url, tmp_path / "branch", ref="feature")  # only origin/feature in the clone
    assert (branch.path / "feature.txt").exists()

    (src / "app.py").write_text("uncommitted\n")
    local_ref = fetch_candidate(str(src), tmp_path / "local-ref", ref="main")
    assert local_ref.kind == "git-dir" and (local_ref.path / "app.py").read_text() == "VERSION = 2\n"

    with pytest.raises(SubmissionError, match="not found"):
        fetch_candidate(url, tmp_path / "bad-ref", ref="no-such-ref")
    assert not (tmp_path / "bad-ref").exists()


def test_nonexistent_path_and_bad_urls_fail_fast(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(SubmissionError, match="no such directory"):
        fetch_candidate(str(tmp_path / "nope"), tmp_path / "d1")
    with pytest.raises(SubmissionError, match="repository not found or not accessible"):
        fetch_candidate(f"file://{tmp_path}/missing.git", tmp_path / "d2")
    with pytest.raises(SubmissionError, match="could not reach"):
        fetch_candidate("http://127.0.0.1:9/candidate.git", tmp_path / "d3")  # port 9: connection refused
    with pytest.raises(SubmissionError, match="a ref"):
        (tmp_path / "plain").mkdir()
        fetch_candidate(str(tmp_path / "plain"), tmp_path / "d4", ref="main")
    assert time.monotonic() - started < 20
    assert not any((tmp_path / d).exists() for d in ("d1", "d2", "d3", "d4"))


@pytest.fixture
def auth_server() -> Iterator[str]:
    """An HTTP git host that demands credentials for everything."""
    with StubService() as server:
        server.add_hook(lambda req: reply(401, headers={"WWW-Authenticate": 'Basic realm="git"'}))
        yield f"{server.url}/private/repo.git"


def test_private_repo_fails_instead_of_prompting(tmp_path: Path, auth_server: str) -> None:
    started = time.monotonic()
    with pytest.raises(SubmissionError, match="credentials"):
        fetch_candidate(auth_server, tmp_path / "dest", timeout_s=30)
    assert time.monotonic() - started < 15


def test_symlinks_kept_inside_dropped_outside(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "models").mkdir(parents=True)
    (src / "models" / "v1.pkl").write_text("model")
    (src / "current.pkl").symlink_to("models/v1.pkl")
    (src / "absolute.pkl").symlink_to(src / "models" / "v1.pkl")
    (src / "models_link").symlink_to("models")
    (src / "secret").symlink_to("/etc/passwd")
    (src / "up").symlink_to("../..")
    fetched = fetch_candidate(str(src), tmp_path / "dest")
    dest = fetched.path
    assert (dest / "current.pkl").is_symlink() and (dest / "current.pkl").read_text() == "model"
    assert (dest / "models_link").is_symlink() and (dest / "models_link" / "v1.pkl").exists()
    assert (dest / "absolute.pkl").resolve().is_relative_to(dest.resolve())  # re-pointed into the copy
    assert not (dest / "secret").exists() and not (dest / "secret").is_symlink()
    assert not (dest / "up").is_symlink()
    assert sum("points outside the repository" in w for w in fetched.warnings) == 2


def test_symlink_escaping_a_cloned_repo_is_dropped(tmp_path: Path) -> None:
    src = make_repo(tmp_path / "src")
    (src / "secret").symlink_to("/etc/passwd")
    git(src, "add", "secret")
    git(src, "commit", "-qm", "link")
    fetched = fetch_candidate(f"file://{src}", tmp_path / "dest")
    assert not (fetched.path / "secret").is_symlink()
    assert any("secret" in w for w in fetched.warnings)


def test_caps_on_files_and_bytes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(10):
        (src / f"f{i}.txt").write_text("x" * 1000)
    with pytest.raises(SubmissionError, match="more than 5 files"):
        fetch_candidate(str(src), tmp_path / "d1", max_files=5)
    with pytest.raises(SubmissionError, match="larger than"):
        fetch_candidate(str(src), tmp_path / "d2", max_bytes=5000)
    assert not (tmp_path / "d1").exists() and not (tmp_path / "d2").exists()
    fetch_candidate(str(src), tmp_path / "d3", max_files=10, max_bytes=10_000)  # exactly at the caps: fine


def test_non_empty_destination_is_a_grader_fault(tmp_path: Path) -> None:
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "keep.txt").write_text("mine")
    with pytest.raises(GraderFault):
        fetch_candidate(str(tmp_path), tmp_path / "dest")
    assert (tmp_path / "dest" / "keep.txt").exists()


# --- a hostile candidate's .git: hooks, config, refs, URLs, environment ---------------------------

#: Every hook git knows of (githooks(5)); each one, if it ever ran, would append its name to a canary.
HOOKS = ("applypatch-msg", "pre-applypatch", "post-applypatch", "pre-commit", "pre-merge-commit",
         "prepare-commit-msg", "commit-msg", "post-commit", "pre-rebase", "post-checkout", "post-merge",
         "pre-push", "pre-receive", "update", "proc-receive", "post-receive", "post-update",
         "reference-transaction", "push-to-checkout", "pre-auto-gc", "post-rewrite", "sendemail-validate",
         "fsmonitor-watchman", "p4-changelist", "p4-prepare-changelist", "p4-post-changelist", "p4-pre-submit",
         "post-index-change", "pre-upload-pack", "upload-pack")


def canary_script(path: Path, canary: Path, name: str) -> str:
    """An executable that appends ``name`` to ``canary`` (and behaves like a no-op filter/hook)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {name} >> '{canary}'\ncat 2>/dev/null\nexit 0\n")
    path.chmod(0o755)
    return str(path)


def arm_hooks(hooks_dir: Path, canary: Path) -> None:
    for name in HOOKS:
        canary_script(hooks_dir / name, canary, f"hook:{name}")


def hostile_repo(tmp_path: Path) -> tuple[Path, Path]:
    """A candidate repo whose hooks and config would each run a command that writes the canary."""
    src = make_repo(tmp_path / "src")
    git(src, "update-ref", "refs/pull/1/head", "feature")
    canary = tmp_path / "canary.log"
    (src / ".gitattributes").write_text("* filter=evil diff=evil\n")
    git(src, "add", ".gitattributes")
    git(src, "commit", "-qm", "attributes")
    bin_dir = tmp_path / "evil-bin"
    run = {name: canary_script(bin_dir / name, canary, f"config:{name}") for name in (
        "fsmonitor", "ssh", "pager", "editor", "packhook", "altrefs", "askpass", "credential", "clean", "smudge",
        "process", "textconv", "external", "gitproxy", "gpg", "included-fsmonitor", "uploadpack")}
    included = tmp_path / "included.cfg"
    included.write_text(f"[core]\n\tfsmonitor = {run['included-fsmonitor']}\n")
    settings = {
        "core.fsmonitor": run["fsmonitor"], "core.sshCommand": run["ssh"], "core.pager": run["pager"],
        "core.editor": run["editor"], "sequence.editor": run["editor"], "uploadpack.packObjectsHook": run["packhook"],
        "core.alternateRefsCommand": run["altrefs"], "core.askPass": run["askpass"],
        "credential.helper": "!" + run["credential"], "filter.evil.clean": run["clean"],
        "filter.evil.smudge": run["smudge"], "filter.evil.process": run["process"],
        "diff.evil.textconv": run["textconv"], "diff.external": run["external"], "core.gitProxy": run["gitproxy"],
        "gpg.program": run["gpg"], "remote.origin.uploadpack": run["uploadpack"],
        "core.hooksPath": str(tmp_path / "evil-hooks"), "include.path": str(included),
    }
    for key, value in settings.items():
        git(src, "config", key, value)
    arm_hooks(src / ".git" / "hooks", canary)
    arm_hooks(tmp_path / "evil-hooks", canary)
    return src, canary


def test_hostile_repo_fixture_really_runs_commands_under_plain_git(tmp_path: Path) -> None:
    """The fixture is armed: a grader running plain ``git status`` in it would have been owned."""
    src, canary = hostile_repo(tmp_path)
    later = time.time() + 60
    os.utime(src / ".gitattributes", (later, later))
    old_grader_flags = ["-c", "core.fsmonitor=false", "-c", "filter.evil.clean=", "-c", "filter.evil.smudge=",
                        "-c", "filter.evil.process="]
    subprocess.run(["git", *old_grader_flags, "status", "--porcelain"], cwd=src, env={**os.environ, **GIT_ENV},
                   capture_output=True, check=False)
    assert "hook:post-index-change" in canary.read_text()  # fsmonitor and filters off did not stop hooks
    canary.unlink()
    subprocess.run(["git", "status", "--porcelain"], cwd=src, env={**os.environ, **GIT_ENV}, capture_output=True,
                   check=False)
    assert "fsmonitor" in canary.read_text()


@pytest.mark.parametrize("how", ["path", "path+ref", "file-url", "file-url+ref", "file-url+pr-ref"])
def test_candidate_hooks_and_config_never_run(tmp_path: Path, how: str) -> None:
    src, canary = hostile_repo(tmp_path)
    later = time.time() + 60  # same content, new mtime: a status in src would rewrite its index
    os.utime(src / ".gitattributes", (later, later))
    (src / "app.py").write_text("VERSION = 3  # dirty: status must look at the file\n")
    (src / "new.txt").write_text("untracked\n")
    source = f"file://{src}" if how.startswith("file-url") else str(src)
    ref = {"path+ref": "feature", "file-url+ref": "v1", "file-url+pr-ref": "refs/pull/1/head"}.get(how)
    fetched = fetch_candidate(source, tmp_path / "dest", ref=ref)
    assert not canary.exists(), canary.read_text()
    if how == "path":
        assert fetched.dirty and fetched.commit == git(src, "rev-parse", "HEAD")
        assert "VERSION = 3" in (fetched.path / "app.py").read_text()
    elif ref in ("feature", "refs/pull/1/head"):
        assert fetched.commit == git(src, "rev-parse", "feature") and (fetched.path / "feature.txt").exists()
    elif ref == "v1":
        assert (fetched.path / "app.py").read_text() == "VERSION = 1\n"
    else:
        assert fetched.commit == git(src, "rev-parse", "HEAD")
    if (fetched.path / ".git").exists():  # our clone: no hooks of any kind, not even samples
        assert not any((fetched.path / ".git" / "hooks").glob("*"))


def test_dirty_check_still_sees_staged_deletions_ignores_and_clean_trees(tmp_path: Path) -> None:
    src = make_repo(tmp_path / "src")
    (src / ".gitignore").write_text("*.log\n")
    git(src, "add", ".gitignore")
    git(src, "commit", "-qm", "ignore logs")
    (src / "run.log").write_text("ignored\n")
    (src / ".git" / "info").mkdir(exist_ok=True)
    (src / ".git" / "info" / "exclude").write_text("scratch/\n")
    (src / "scratch").mkdir()
    (src / "scratch" / "x").write_text("local only\n")
    assert not fetch_candidate(str(src), tmp_path / "clean").dirty  # .gitignore and info/exclude honoured
    (src / "app.py").unlink()
    gone = fetch_candidate(str(src), tmp_path / "deleted")
    assert gone.dirty and not (gone.path / "app.py").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    (empty / "a.py").write_text("x = 1\n")
    fresh = fetch_candidate(str(empty), tmp_path / "fresh")
    assert fresh.commit is None and fresh.dirty and any("without commits" in w for w in fresh.warnings)


def test_submodules_are_not_followed(tmp_path: Path) -> None:
    sub = make_repo(tmp_path / "sub")
    canary = tmp_path / "canary.log"
    src = make_repo(tmp_path / "src")
    git(src, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "vendored")
    git(src, "commit", "-qm", "submodule")
    arm_hooks(src / ".git" / "modules" / "vendored" / "hooks", canary)
    fetched = fetch_candidate(f"file://{src}", tmp_path / "dest")
    assert (fetched.path / ".gitmodules").exists()
    assert not any((fetched.path / "vendored").iterdir())  # the submodule is not cloned
    assert not canary.exists()


def test_repo_owned_by_someone_else_is_read_without_trusting_it(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown the candidate repo to another user")
    src, canary = hostile_repo(tmp_path)
    for dirpath, dirnames, filenames in os.walk(src):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in [*dirnames, *filenames])]:
            os.lchown(name, 65534, 65534)
    assert fetch_candidate(str(src), tmp_path / "d1").commit is not None
    assert fetch_candidate(str(src), tmp_path / "d2", ref="feature").commit is not None
    assert fetch_candidate(f"file://{src}", tmp_path / "d3").commit is not None
    assert not canary.exists()


@pytest.mark.parametrize("ref", ["--upload-pack=touch CANARY", "-q", "main --upload-pack=x", "a..b", "HEAD@{1}",
                                 "main:refs/heads/x", "+main", "refs/heads/.hidden", "x.lock", "", "feature/",
                                 "main~1", "$(touch CANARY)", "a\nb"])
def test_bad_refs_are_rejected_before_git_runs(tmp_path: Path, ref: str, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_repo(tmp_path / "src")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SubmissionError, match="invalid ref") as info:
        fetch_candidate(f"file://{src}", tmp_path / "dest", ref=ref)
    assert "pass a branch, tag or commit SHA" in str(info.value)
    assert not (tmp_path / "CANARY").exists() and not (tmp_path / "dest").exists()


def test_refs_reach_git_after_end_of_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a ref that got past validation is a ref to git, never an option."""
    import harness.fetch as fetch

    src = make_repo(tmp_path / "src")
    canary = tmp_path / "CANARY"
    monkeypatch.setattr(fetch, "validate_ref", lambda ref: ref, raising=False)
    with pytest.raises(SubmissionError, match="not found"):
        fetch_candidate(f"file://{src}", tmp_path / "dest", ref=f"--upload-pack=touch {canary}")
    assert not canary.exists()


@pytest.mark.parametrize("url", ["-oProxyCommand=touch CANARY@host:repo", "--upload-pack=touch CANARY",
                                 "ext::sh -c touch% CANARY", "fd::3", "ssh://-oProxyCommand=touch%20CANARY/r",
                                 "git@-oProxyCommand:repo"])
def test_dangerous_urls_are_rejected(tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SubmissionError, match="invalid repository"):
        fetch_candidate(url, tmp_path / "dest")
    assert not (tmp_path / "CANARY").exists()


def test_valid_refs_and_urls_pass_validation() -> None:
    from harness.fetch import validate_ref, validate_url

    for ref in ("main", "v1.0.2", "feature/x-y_z", "refs/pull/12/head", "origin/main", "3f2a9c1", "a" * 40,
                "release+1", "user@feature"):
        assert validate_ref(ref) == ref
    for url in ("https://github.com/o/r.git", "ssh://git@host:22/o/r", "git@github.com:o/r.git", "file:///srv/r",
                "/abs/path", "relative/dir", "./-dash-dir"):
        assert validate_url(url) == url


SECRETS = {"TAKEHOME_SCENARIO_SEED": "CANARY-seed-4242", "AWS_SECRET_ACCESS_KEY": "CANARY-aws",
           "GITHUB_TOKEN": "CANARY-gh", "GIT_DIR": "/CANARY-git-dir", "GIT_CONFIG_PARAMETERS": "'core.pager=CANARY'",
           "https_proxy": "http://proxy.invalid:3128"}


@pytest.fixture
def git_spy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``git`` first on PATH that records the environment of every call, then runs the real git."""
    real = subprocess.run(["sh", "-c", "command -v git"], capture_output=True, text=True, check=True).stdout.strip()
    spy_dir, log = tmp_path / "spy-bin", tmp_path / "git-env.log"
    spy_dir.mkdir()
    (spy_dir / "git").write_text(f"#!/bin/sh\n{{ echo '--- git'; env; }} >> '{log}'\nexec '{real}' \"$@\"\n")
    (spy_dir / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{spy_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_git_gets_an_allowlisted_environment(tmp_path: Path, git_spy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_repo(tmp_path / "src")
    (src / "app.py").write_text("dirty\n")
    git_spy.unlink()  # only the grader's calls from here on
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    fetch_candidate(str(src), tmp_path / "d1")
    fetch_candidate(str(src), tmp_path / "d2", ref="v1")
    fetch_candidate(f"file://{src}", tmp_path / "d3", ref="feature")
    calls = git_spy.read_text().split("--- git\n")[1:]
    assert len(calls) >= 8
    for call in calls:
        env = dict(line.split("=", 1) for line in call.splitlines() if "=" in line)
        assert "CANARY" not in call
        assert not {"TAKEHOME_SCENARIO_SEED", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "GIT_DIR"} & env.keys()
        assert "https_proxy" not in env  # a local fetch gets no network settings
        assert env["HOME"] != os.environ.get("HOME") and env["HOME"].startswith(tempfile_root())
        assert env["GIT_CONFIG_NOSYSTEM"] == "1" and env["GIT_TERMINAL_PROMPT"] == "0"
        assert Path(env["GIT_CONFIG_GLOBAL"]).name == "gitconfig"


def tempfile_root() -> str:
    import tempfile

    return tempfile.gettempdir()


def test_network_clone_env_adds_only_proxy_and_ca_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.fetch import _Git

    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/corp.pem")
    with _Git("https", network=True) as net, _Git("file") as local:
        assert net.env["https_proxy"] == SECRETS["https_proxy"] and net.env["SSL_CERT_FILE"] == "/etc/ssl/corp.pem"
        assert "BatchMode=yes" in net.env["GIT_SSH_COMMAND"]
        assert "https_proxy" not in local.env and local.env["GIT_SSH_COMMAND"] == "false"
        for env in (net.env, local.env):
            assert not {"TAKEHOME_SCENARIO_SEED", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "GIT_DIR",
                        "GIT_CONFIG_PARAMETERS"} & env.keys()
        assert "protocol.file.allow=always" in local.flags and "protocol.file.allow=always" not in net.flags
        assert "core.hooksPath=/dev/null" in net.flags and "core.hooksPath=/dev/null" in local.flags
        home = Path(net.env["HOME"])
        assert home.is_dir() and not any(home.iterdir())
    assert not home.exists()  # removed after the fetch


def test_https_clone_may_not_be_redirected_to_a_local_path(tmp_path: Path) -> None:
    """Only the source's own transport is allowed, so an https source cannot make git read file://."""
    from harness.fetch import _Git

    src = make_repo(tmp_path / "src")
    with _Git("https", network=True) as g:
        out = g.run(["clone", "--quiet", "--", f"file://{src}", str(tmp_path / "dest")])
    assert out.returncode != 0 and "not allowed" in out.stderr
