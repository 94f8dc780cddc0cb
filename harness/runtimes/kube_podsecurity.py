"""The Pod Security ``baseline`` rules, checked by the grader itself.

The run's namespace carries ``pod-security.kubernetes.io/enforce: baseline``, and on Kubernetes
1.25+ (beta from 1.23) the API server enforces it. Older servers ignore the label: nothing would
stop a manifest with a privileged container or a hostPath volume, and on kind a privileged pod is
root on the node container, which is itself privileged. So the grader checks the same rules on
every server: before it applies the candidate's manifests (a refusal names each violation), and
on the namespace's live pods after each candidate command (a command may apply its own objects).

The rules are the baseline profile's (https://kubernetes.io/docs/concepts/security/pod-security-standards/):
host namespaces, privileged containers, added capabilities beyond the default set, hostPath
volumes, host ports, a non-default /proc mount, unsafe sysctls, and AppArmor/SELinux/seccomp
settings that switch confinement off.
"""

from __future__ import annotations

from typing import Any

#: Kubernetes minor version from which the API server enforces Pod Security admission by default (beta: 1.23).
ENFORCED_FROM_MINOR = 23
#: Capabilities baseline allows a container to add.
BASELINE_CAPABILITIES = frozenset({"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                                   "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})
SAFE_SYSCTLS = frozenset({"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                          "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                          "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                          "net.ipv4.tcp_keepalive_probes"})
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for key in ("initContainers", "containers", "ephemeralContainers")
            for c in spec.get(key) or [] if isinstance(c, dict)]


def _context_problems(where: str, ctx: dict[str, Any]) -> list[str]:
    problems = []
    if (ctx.get("seccompProfile") or {}).get("type") == "Unconfined":
        problems.append(f"{where}: seccompProfile Unconfined")
    if (ctx.get("appArmorProfile") or {}).get("type") == "Unconfined":
        problems.append(f"{where}: appArmorProfile Unconfined")
    selinux = ctx.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in _SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
        problems.append(f"{where}: seLinuxOptions {selinux}")
    return problems


def violations(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> list[str]:
    """What in a pod spec the baseline profile forbids (empty when it is allowed)."""
    problems = [f"{key}: true" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    for vol in spec.get("volumes") or []:
        if isinstance(vol, dict) and "hostPath" in vol:
            problems.append(f"volume {vol.get('name')!r}: hostPath {(vol.get('hostPath') or {}).get('path')!r}")
    pod_ctx = spec.get("securityContext") or {}
    problems += _context_problems("pod securityContext", pod_ctx)
    unsafe = [s.get("name") for s in pod_ctx.get("sysctls") or [] if isinstance(s, dict)
              and s.get("name") not in SAFE_SYSCTLS]
    if unsafe:
        problems.append(f"pod securityContext: unsafe sysctls {unsafe}")
    for c in _containers(spec):
        name = f"container {c.get('name')!r}"
        ctx = c.get("securityContext") or {}
        if ctx.get("privileged"):
            problems.append(f"{name}: privileged")
        added = sorted(set((ctx.get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES)
        if added:
            problems.append(f"{name}: adds capabilities {added}")
        if ctx.get("procMount") not in (None, "Default"):
            problems.append(f"{name}: procMount {ctx.get('procMount')}")
        problems += _context_problems(f"{name} securityContext", ctx)
        for port in c.get("ports") or []:
            if isinstance(port, dict) and port.get("hostPort"):
                problems.append(f"{name}: hostPort {port['hostPort']}")
    for key, value in (annotations or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and value == "unconfined":
            problems.append(f"annotation {key}: unconfined")
    return problems


def guarantees_missing(minor: int | None) -> list[str]:
    """What an API server of this minor version cannot enforce that the grader relies on, in words."""
    if minor is None or minor >= ENFORCED_FROM_MINOR:
        return []
    return [f"Kubernetes 1.{minor} has no Pod Security admission (1.{ENFORCED_FROM_MINOR}+): the grader checks the "
            "baseline rules itself, on the manifests it applies and on the namespace's pods after each candidate "
            "command; a pod a command creates in the background could run until the next check"]
