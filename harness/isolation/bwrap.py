"""The sandbox every candidate process of the local runtime runs in, built with bubblewrap.

Why bubblewrap: it is small, packaged by Debian and every other distribution, needs no daemon,
works unprivileged through user namespaces, and is the sandbox Flatpak ships to millions of
desktops, so its mount and namespace setup has had more scrutiny than anything written here
could. nsjail does more (seccomp policies, cgroups) but is not packaged by Debian stable; the
cgroup part is done here in a few lines instead (``cgroups.py``).

One sandbox per grading. ``start()`` creates the namespaces once: a fresh root with the system
read-only, the candidate's checkout and scratch dirs writable, its own /tmp (size-capped tmpfs),
its own PID namespace and, unless it is the dependency install, its own network namespace that
holds only loopback. Every candidate command then *enters* those namespaces (``nsenter``) and
drops to the sandbox user (``setpriv``), so deploy and rollback see the service's processes and
loopback exactly as a shell next to it would. ``stop()`` kills the namespace's init: the kernel
then kills every process in the PID namespace, daemons that double-forked, dropped their
environment and ignore SIGTERM included.

When the grader runs as root, candidate code runs as a dedicated unprivileged uid, and the
sandbox's own processes (its init and the relays) stay uid 0 without capabilities, out of the
candidate's reach. Unprivileged, bubblewrap maps the grader's own uid into a user namespace;
everything else is the same, but the candidate can then signal the relays (it only hurts itself).
"""

from __future__ import annotations

import json
import os
import pwd
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from typing import Any

from harness.errors import GraderFault
from harness.isolation import records
from harness.isolation.cgroups import CgroupLimits, join_preexec
from harness.isolation.relay import INSIDE_DIR, Relays
from harness.sandbox import _set_limit

#: Mounted read-only at the same path. /home, /root, /work, /var, /srv, /mnt and /run are not.
SYSTEM_DIRS = ("/usr", "/etc", "/opt", "/sys")
MERGED_USR_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: Sandbox users when the grader is root: a high range no distribution allocates.
UID_BASE, UID_SPAN = 420_000, 50_000


def missing_tools() -> list[str]:
    """The programs the sandbox needs that are not installed (empty when it can run)."""
    return [tool for tool in ("bwrap", "nsenter", "setpriv", "socat") if shutil.which(tool) is None]


def install_hint() -> str:
    """How to get the sandbox tools, for error messages."""
    return ("install them (Debian/Ubuntu: sudo apt-get install bubblewrap socat util-linux), or pass "
            "--unsafe-local to grade without a sandbox (only for code you trust)")


def probe() -> tuple[bool, str]:
    """Whether a sandbox can be made here: the tools exist and the kernel allows the namespaces."""
    missing = missing_tools()
    if missing:
        return False, f"{', '.join(missing)} not installed"
    argv = ["bwrap", *_base_flags(network=False, as_root=os.geteuid() == 0), "--ro-bind", "/usr", "/usr",
            *_usr_links(), "--proc", "/proc", "--dev", "/dev", "--", "true"]
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=20, env=_tool_env(), check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"bwrap could not run: {exc}"
    if proc.returncode != 0:
        why = proc.stderr.decode(errors="replace").strip()[:300]
        return False, (f"bwrap cannot create namespaces here ({why}); enable unprivileged user namespaces "
                       "(sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces) or run as root")
    return True, "bubblewrap sandbox: own mount, PID, network, IPC and UTS namespaces"


def _tool_env() -> dict[str, str]:
    """The environment of bwrap, nsenter and socat themselves. Never the grader's: the sandbox's
    init is pid 1 inside, and an unprivileged candidate could read its /proc/1/environ."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"}


def _base_flags(network: bool, as_root: bool) -> list[str]:
    flags = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
             "--die-with-parent", "--new-session", "--hostname", "sandbox", "--clearenv"]
    if not network:
        flags.append("--unshare-net")
    if not as_root:
        flags.append("--unshare-user")  # unprivileged: a user namespace is what allows the rest
    return flags


def _usr_links() -> list[str]:
    """/bin, /lib... as the host has them: symlinks into /usr on merged-/usr systems, else binds."""
    out: list[str] = []
    for path in MERGED_USR_LINKS:
        if os.path.islink(path):
            out += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            out += ["--ro-bind", path, path]
    return out


def is_system_path(path: Path | str) -> bool:
    """Whether ``path`` lies in the directories every sandbox sees read-only (``SYSTEM_DIRS``)."""
    p = str(path)
    return any(p == d or p.startswith(d + "/") for d in SYSTEM_DIRS)


def _parents(path: Path, made: set[str]) -> list[str]:
    """``--dir`` flags (mode 0755) for the parents of a mount point not yet made: bwrap would
    otherwise copy the host's modes, and /root is 0700."""
    out: list[str] = []
    for parent in reversed(path.parents):
        p = str(parent)
        if p in ("/", "/tmp", *made) or is_system_path(p):
            continue
        made.add(p)
        out += ["--perms", "0755", "--dir", p]
    return out


@dataclass
class SandboxLimits:
    """What one sandbox may use. 0 means no limit where that makes sense."""

    memory_mb: int = 4096         # all processes together (cgroup); also RLIMIT_AS per process
    max_pids: int = 512           # all processes together (cgroup, and RLIMIT_NPROC for the sandbox user)
    cpu_seconds: int = 3600       # RLIMIT_CPU per process
    max_open_files: int = 4096
    file_size_mb: int = 2048      # RLIMIT_FSIZE: no single file larger
    tmp_mb: int = 1024            # the sandbox's own /tmp (tmpfs)
    disk_mb: int = 4096           # growth of the writable directories, watched
    log_mb: int = 64              # per output stream (service log, each command's stdout/stderr)


@dataclass
class Sandbox:
    """One grading's sandbox. ``start()`` once, ``wrap()`` every command, ``stop()`` always."""

    name: str
    writable: list[Path]
    readonly: list[Path] = field(default_factory=list)
    network: bool = False
    relays: Relays = field(default_factory=Relays)
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    chdir: Path | None = None
    progress: Callable[[str], None] = lambda _msg: None

    def __post_init__(self) -> None:
        self.as_root = os.geteuid() == 0
        self.uid = os.getuid()
        self.gid = os.getgid()
        self._bwrap: subprocess.Popen[bytes] | None = None
        self._init_pid: int | None = None
        self._init_ctime: float | None = None
        self._pidns: str | None = None
        self._relay_procs: list[subprocess.Popen[bytes]] = []
        self._relay_dir: Path | None = None
        self.cgroup: CgroupLimits | None = None
        self.hits: list[str] = []   # limits the candidate ran into, found while it ran (the disk watch)
        self.notes: list[str] = []  # what the sandbox could not do here (e.g. no cgroup)
        self._stopped: dict[str, object] | None = None
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._disk_baseline = 0
        self.disk_peak_mb = 0.0

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Create the namespaces, the cgroup and the relays; record them for ``takehome cleanup``."""
        if self._bwrap is not None:
            return
        if self.as_root:
            self.uid = self.gid = _free_uid()
            for path in self.writable:
                chown_tree(path, self.uid, self.gid)
        self.cgroup = CgroupLimits.create(self.name, self.limits.memory_mb * 2**20, self.limits.max_pids)
        if not self.cgroup.active:
            self.notes.append(self.cgroup.why_not or "no cgroup")
        import tempfile

        self._relay_dir = Path(tempfile.mkdtemp(prefix="th-relay-"))  # short: socket paths <= 108 bytes
        argv = self._bwrap_argv()
        read_fd, write_fd = os.pipe()
        try:
            self._bwrap = subprocess.Popen([*argv[:1], "--info-fd", str(write_fd), *argv[1:]],
                                           env=_tool_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.PIPE, pass_fds=(write_fd,), start_new_session=True,
                                           preexec_fn=self._infra_preexec)
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            raise GraderFault(f"could not start bwrap: {exc}") from None
        os.close(write_fd)
        info = _read_info(read_fd, self._bwrap)
        if info is None:
            err = self._bwrap.stderr.read().decode(errors="replace") if self._bwrap.stderr else ""
            self.stop()
            raise GraderFault(f"the sandbox (bwrap) did not start: {err.strip()[:500] or 'no reason given'}")
        self._init_pid = int(info["child-pid"])
        try:
            self._init_ctime = psutil.Process(self._init_pid).create_time()
            self._pidns = os.readlink(f"/proc/{self._init_pid}/ns/pid")
        except (psutil.Error, OSError):
            pass
        for cmd in self.relays.host_commands(self._relay_dir):
            self._relay_procs.append(subprocess.Popen(cmd, env=_tool_env(), stdin=subprocess.DEVNULL,
                                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                      start_new_session=True))
        self._disk_baseline = self._disk_usage()
        records.write(self.record())
        self._watcher = threading.Thread(target=self._watch, name=f"sandbox-{self.name}", daemon=True)
        self._watcher.start()
        self._wait_relays()

    def _wait_relays(self, timeout_s: float = 5.0) -> None:
        """Inbound relays are ready once the inner ends listen on their Unix sockets."""
        assert self._relay_dir is not None
        end = time.monotonic() + timeout_s
        wanted = [self._relay_dir / f"in-{p}.sock" for p in self.relays.inbound]
        while time.monotonic() < end and not all(p.exists() for p in wanted):
            time.sleep(0.02)

    def record(self) -> dict[str, object]:
        """What ``takehome cleanup`` needs to end this sandbox if the grader is killed."""
        return {"name": self.name, "grader_pid": os.getpid(), "init_pid": self._init_pid,
                "init_ctime": self._init_ctime,
                "bwrap_pid": self._bwrap.pid if self._bwrap else None,
                "relay_pids": [(p.pid, _ctime(p.pid)) for p in self._relay_procs],
                "cgroups": [str(d) for d in (self.cgroup.dirs if self.cgroup else [])],
                "relay_dir": str(self._relay_dir) if self._relay_dir else None,
                "uid": self.uid,
                "started": time.time()}

    def running(self) -> bool:
        """Whether the sandbox's namespaces are still up."""
        return self._bwrap is not None and self._bwrap.poll() is None

    def _bwrap_argv(self) -> list[str]:
        argv = ["bwrap", *_base_flags(self.network, self.as_root)]
        made: set[str] = set()
        for d in SYSTEM_DIRS:
            if os.path.isdir(d):
                argv += ["--ro-bind", d, d]
        argv += _usr_links()
        argv += ["--proc", "/proc", "--dev", "/dev"]
        argv += ["--perms", "1777", "--size", str(self.limits.tmp_mb * 2**20), "--tmpfs", "/tmp"]
        # POSIX semaphores (multiprocessing locks) live in /dev/shm.
        argv += ["--perms", "1777", "--size", str(min(self.limits.tmp_mb, 256) * 2**20), "--tmpfs", "/dev/shm"]
        for path in _dedupe(self.readonly):
            argv += [*_parents(path, made), "--ro-bind", str(path), str(path)]
        for path in _dedupe(self.writable):
            argv += [*_parents(path, made), "--bind", str(path), str(path)]
        assert self._relay_dir is not None
        argv += [*_parents(Path(INSIDE_DIR), made), "--bind", str(self._relay_dir), INSIDE_DIR]
        if self.chdir is not None:
            argv += ["--chdir", str(self.chdir)]
        if not self.as_root:
            argv += ["--cap-drop", "ALL"]
        return [*argv, "--", "/bin/sh", "-c", self.relays.inside_script()]

    def _infra_preexec(self) -> None:
        # bwrap and its init join the cgroup too: every process in the namespace is then in it.
        if self.cgroup is not None and self.cgroup.active:
            join_preexec(self.cgroup.procs_files())

    # --- commands -----------------------------------------------------------------------------

    def wrap(self, argv: list[str], cwd: Path) -> list[str]:
        """``argv`` as a command that runs inside the sandbox, in ``cwd``, as the sandbox user."""
        if self._init_pid is None:
            raise GraderFault("the sandbox was not started")
        enter = ["nsenter", "-t", str(self._init_pid), "-m", "-p", "-i", "-u", "-r", "-w"]
        if not self.network:
            enter.append("-n")
        if not self.as_root:
            enter[3:3] = ["-U", "--preserve-credentials"]
        drop = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
        if self.as_root:
            drop[1:1] = [f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups"]
        # The directory is changed inside, by env: nsenter's --wd resolves it before the new root.
        return [*enter, "--", *drop, "--", "env", f"--chdir={cwd}", "--", *argv]

    def preexec(self) -> Callable[[], None]:
        """A ``preexec_fn`` for wrapped commands: join the cgroup, apply the rlimits."""
        procs = self.cgroup.procs_files() if self.cgroup is not None and self.cgroup.active else []
        lim = self.limits
        nproc = lim.max_pids if self.as_root else 0  # unprivileged, NPROC would count all the grader's processes

        def apply() -> None:
            join_preexec(procs)
            for which, value in ((resource.RLIMIT_AS, lim.memory_mb * 2**20), (resource.RLIMIT_CPU, lim.cpu_seconds),
                                 (resource.RLIMIT_FSIZE, lim.file_size_mb * 2**20), (resource.RLIMIT_NPROC, nproc)):
                if value > 0:
                    _set_limit(which, value)
            _set_limit(resource.RLIMIT_NOFILE, lim.max_open_files)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        return apply

    # --- what is inside -----------------------------------------------------------------------

    def _infra_pids(self) -> set[int]:
        """bwrap, the namespace's init and the inner relays: the sandbox's own, not the candidate's."""
        pids: set[int] = set()
        if self._bwrap is not None:
            pids.add(self._bwrap.pid)
        if self._init_pid is not None:
            try:
                init = psutil.Process(self._init_pid)
                pids.add(init.pid)
                payload = ["/bin/sh", "-c", self.relays.inside_script()]
                shell = [c for c in init.children() if c.cmdline() == payload]
                for child in shell:  # the payload shell and its socat listeners (not their per-connection forks)
                    pids.add(child.pid)
                    pids.update(c.pid for c in child.children() if c.name() == "socat")
            except psutil.Error:
                pass
        return pids

    def members(self) -> list[psutil.Process]:
        """The candidate's live processes in the sandbox (not the sandbox's own, not zombies)."""
        if self._pidns is None:
            return []
        infra = self._infra_pids()
        found = []
        for proc in psutil.process_iter():
            if proc.pid in infra:
                continue
            try:
                if os.readlink(f"/proc/{proc.pid}/ns/pid") != self._pidns:
                    continue
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                if self.as_root and proc.uids().real != self.uid:
                    continue  # uid 0 in the sandbox is its own init and relays: the candidate cannot be uid 0
                if proc.name() == "socat" and proc.ppid() in infra:
                    continue  # a relay's connection handler
                found.append(proc)
            except (OSError, psutil.Error):
                continue
        return found

    # --- watching -----------------------------------------------------------------------------

    def _disk_usage(self) -> int:
        total = 0
        for root in _dedupe(self.writable):
            total += _tree_bytes(root, max_entries=200_000)
        return total

    def _watch(self) -> None:
        """Every 2 s: disk growth of the writable dirs; over ``disk_mb`` ends the candidate's processes."""
        cap = self.limits.disk_mb * 2**20
        while not self._watch_stop.wait(2.0):
            grown = self._disk_usage() - self._disk_baseline
            self.disk_peak_mb = max(self.disk_peak_mb, round(grown / 2**20, 1))
            if cap and grown > cap:
                self.hits.append(f"disk limit hit: the writable directories grew by {grown / 2**20:.0f} MB "
                                   f"(limit {self.limits.disk_mb} MB); the candidate's processes were killed")
                self.kill_members()
                return

    def kill_members(self) -> list[dict[str, object]]:
        """SIGKILL every candidate process now (the sandbox itself stays up)."""
        killed = []
        for proc in self.members():
            try:
                cmd = " ".join(proc.cmdline())[:300]
                proc.kill()
                killed.append({"pid": proc.pid, "cmdline": cmd, "ended_by": "SIGKILL"})
            except psutil.Error:
                continue
        return killed

    # --- teardown -----------------------------------------------------------------------------

    def stop(self, grace_s: float = 5.0) -> dict[str, object]:
        """SIGTERM the candidate's processes, then end the namespaces (which SIGKILLs whatever is
        left), the relays and the cgroup. Returns what it ended and what survived. Idempotent: a
        second call returns the first call's result (the cgroup it measured is gone by then)."""
        from harness import processes

        if self._stopped is not None:
            return self._stopped
        self._watch_stop.set()
        killed = processes.terminate(self.members(), grace_s) if self._pidns else []
        if self._bwrap is not None and self._bwrap.poll() is None:
            try:
                os.killpg(self._bwrap.pid, signal.SIGKILL)  # bwrap leads its own session
            except OSError:
                pass
        if self._init_pid is not None:
            records.kill_if_same(self._init_pid, self._init_ctime)
        if self._bwrap is not None:
            try:
                self._bwrap.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            if self._bwrap.stderr:
                self._bwrap.stderr.close()
        for relay in self._relay_procs:
            relay.kill()
            try:
                relay.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        survivors = [processes.describe(p) for p in self.members()]
        if self.cgroup is not None:
            self.cgroup.kill_all()
            usage = self.cgroup.usage()
            self.cgroup.remove()
        else:
            usage = {}
        if self._relay_dir is not None:
            shutil.rmtree(self._relay_dir, ignore_errors=True)
        records.remove(self.name)
        self._stopped = {"killed": killed, "survivors": survivors, "usage": usage}
        return self._stopped

    def limits_hit(self, usage: dict[str, Any]) -> list[str]:
        """Human sentences naming each limit the candidate ran into."""
        hits = list(self.hits)
        if int(usage.get("memory_limit_hits") or 0) or int(usage.get("oom_kills") or 0):
            hits.append(f"memory limit hit: {usage.get('oom_kills', 0)} process(es) killed by the kernel's "
                        f"out-of-memory killer at the {self.limits.memory_mb} MB cap of the whole sandbox")
        if int(usage.get("pids_limit_hits") or 0):
            hits.append(f"process limit hit: {usage['pids_limit_hits']} fork(s) refused at the cap of "
                        f"{self.limits.max_pids} processes")
        return hits


def _read_info(fd: int, proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> dict | None:
    """bwrap's --info-fd JSON (it holds the host pid of the namespace's init)."""
    data = b""
    end = time.monotonic() + timeout_s
    os.set_blocking(fd, False)
    try:
        while time.monotonic() < end:
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                chunk = None
            if chunk:
                data += chunk
                try:
                    return json.loads(data)
                except ValueError:
                    continue
            if chunk == b"" or proc.poll() is not None:
                break
            time.sleep(0.01)
    finally:
        os.close(fd)
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None


def _dedupe(paths: list[Path]) -> list[Path]:
    seen: list[Path] = []
    for p in paths:
        p = Path(os.path.realpath(p))
        if p not in seen and p.exists():
            seen.append(p)
    return seen


def _ctime(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _free_uid() -> int:
    """A uid no process uses and no account names, for this sandbox alone."""
    used: set[int] = set()
    for proc in psutil.process_iter(["uids"]):
        try:
            used.update(proc.info["uids"] or ())
        except (psutil.Error, TypeError):
            continue
    start = (os.getpid() * 7919 + int(time.time() * 1000)) % UID_SPAN
    for k in range(UID_SPAN):
        uid = UID_BASE + (start + k) % UID_SPAN
        if uid in used:
            continue
        try:
            pwd.getpwuid(uid)
            continue
        except KeyError:
            return uid
    raise GraderFault("no free uid for the sandbox user")


def chown_tree(root: Path, uid: int, gid: int) -> None:
    """Hand ``root`` to the sandbox user (never following symlinks: the candidate made them)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            try:
                os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)
            except OSError:
                pass
    try:
        os.chown(root, uid, gid, follow_symlinks=False)
    except OSError:
        pass


def _tree_bytes(root: Path, max_entries: int) -> int:
    """Bytes allocated under ``root`` (no symlinks followed), stopping after ``max_entries``."""
    total, seen = 0, 0
    stack = [str(root)]
    while stack and seen < max_entries:
        top = stack.pop()
        try:
            with os.scandir(top) as it:
                for entry in it:
                    seen += 1
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += st.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except OSError:
            continue
    return total


def grader_python_dirs() -> list[Path]:
    """The Python installation a candidate venv's interpreter links to (may sit in the grader's home)."""
    dirs = {Path(sys.base_prefix).resolve()}
    return [d for d in dirs if not is_system_path(d)]
