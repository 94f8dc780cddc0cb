"""TCP across the sandbox's network namespace, through Unix sockets, with socat.

The sandbox has its own network namespace holding only a loopback interface, so the candidate
reaches nothing but itself. The grader still has to reach the service, and the service may have
to reach the grader's webhook receiver. A Unix socket in a directory both sides see crosses
network namespaces; a socat pair on each side turns it back into TCP on 127.0.0.1 at the same
port number, so every URL is the same inside and outside. Only the ports named here cross.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Where the relay directory is mounted inside the sandbox (short: Unix socket paths are capped at 108 bytes).
INSIDE_DIR = "/run/takehome-relay"
#: TCP_NODELAY on every TCP end: without it Nagle's algorithm can hold a response's second write
#: until a delayed ACK, adding tens of milliseconds the candidate would be blamed for.
_TCP_OPTS = "nodelay"


@dataclass(frozen=True)
class Relays:
    """The ports that cross: ``inbound`` (grader -> service) and ``outbound`` (service -> grader)."""

    inbound: tuple[int, ...] = ()
    outbound: tuple[int, ...] = ()

    def inside_script(self) -> str:
        """The shell script the sandbox runs as its long-lived payload (the inner relay ends)."""
        parts = [f"socat UNIX-LISTEN:{INSIDE_DIR}/in-{p}.sock,fork,unlink-early,mode=600 "
                 f"TCP:127.0.0.1:{p},{_TCP_OPTS} &" for p in self.inbound]
        parts += [f"socat TCP-LISTEN:{p},bind=127.0.0.1,fork,reuseaddr,{_TCP_OPTS} "
                  f"UNIX-CONNECT:{INSIDE_DIR}/out-{p}.sock &" for p in self.outbound]
        # No relays: sleep, so the namespaces stay up for the commands that enter them.
        return " ".join(parts) + (" wait" if parts else " exec sleep infinity")

    def host_commands(self, host_dir: Path) -> list[list[str]]:
        """The grader-side socat commands (the outer ends), one argv per port."""
        cmds = [["socat", f"TCP-LISTEN:{p},bind=127.0.0.1,fork,reuseaddr,backlog=1024,{_TCP_OPTS}",
                 f"UNIX-CONNECT:{host_dir}/in-{p}.sock"] for p in self.inbound]
        cmds += [["socat", f"UNIX-LISTEN:{host_dir}/out-{p}.sock,fork,unlink-early,mode=600",
                  f"TCP:127.0.0.1:{p},{_TCP_OPTS}"] for p in self.outbound]
        return cmds
