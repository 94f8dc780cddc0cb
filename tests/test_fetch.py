"""Fetching candidate repos: local copies, local git repos, file:// clones, refs, caps, failures."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

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

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/private/repo.git"
    server.shutdown()


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
