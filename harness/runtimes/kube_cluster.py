"""The kind cluster: created from ``k8s/kind-config.yaml`` (or reused by name), images loaded into
it, its admin kubeconfig read (never written where a candidate's command is pointed), deleted.

Every call to the ``kind`` CLI is bounded in time, and a failure keeps the command line and its
output (a :class:`~harness.errors.GraderFault`: a cluster that does not come up is never the
candidate's fault). Creation takes a file lock, so two gradings sharing a cluster name do not race.

Environment overrides (all optional):

* ``TAKEHOME_KIND_CLUSTER``: cluster name (default ``takehome``).
* ``TAKEHOME_KIND_CONFIG``: kind config file (default ``k8s/kind-config.yaml`` of this kit).
* ``TAKEHOME_KIND_NODE_IMAGE``: node image, for a kind release other than the pinned one.
* ``TAKEHOME_KIND_CREATE_TIMEOUT_S``: cluster creation timeout (default 300).
* ``KIND_EXPERIMENTAL_DOCKER_NETWORK``: kind's own variable naming its Docker network (default ``kind``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from harness.errors import GraderFault
from harness.locks import exclusive_lock

KIT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = KIT_ROOT / "k8s" / "kind-config.yaml"
DEFAULT_CLUSTER = "takehome"
#: The kind release the pinned node image was built for (its release notes list the image).
KIND_VERSION = "v0.32.0"
NODE_PORT_RANGE = (30000, 32767)
CREATE_TIMEOUT_S = 300.0
CLI_TIMEOUT_S = 60.0
LOAD_TIMEOUT_S = 600.0
_IMAGE_VERSION = re.compile(r":v(\d+\.\d+\.\d+)(?:[-@]|$)")


def config_path() -> Path:
    return Path(os.environ.get("TAKEHOME_KIND_CONFIG") or DEFAULT_CONFIG).expanduser()


def load_config(path: Path | None = None) -> dict[str, Any]:
    """The kind config as a dict (GraderFault if it cannot be read)."""
    path = path or config_path()
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise GraderFault(f"cannot read the kind config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise GraderFault(f"the kind config {path} is not a mapping")
    return data


def node_image(config: dict[str, Any]) -> str:
    """The node image pinned by the config (the first node's ``image``)."""
    for node in config.get("nodes") or []:
        if node.get("image"):
            return str(node["image"])
    raise GraderFault("the kind config pins no node image (nodes[].image)")


def kubernetes_version(config: dict[str, Any]) -> str:
    """The Kubernetes version of the pinned node image, e.g. ``1.36.1``."""
    image = node_image(config)
    match = _IMAGE_VERSION.search(image)
    if not match:
        raise GraderFault(f"cannot read a Kubernetes version from the node image {image!r}")
    return match.group(1)


def mapped_node_ports(config: dict[str, Any]) -> list[int]:
    """Container ports of the control plane's ``extraPortMappings`` that lie in the NodePort range
    and are published on the same host port (so ``127.0.0.1:<port>`` reaches the NodePort)."""
    ports: list[int] = []
    for node in config.get("nodes") or []:
        if node.get("role", "control-plane") != "control-plane":
            continue
        for m in node.get("extraPortMappings") or []:
            cport, hport = int(m.get("containerPort", 0)), int(m.get("hostPort", 0))
            if NODE_PORT_RANGE[0] <= cport <= NODE_PORT_RANGE[1] and cport == hport \
                    and str(m.get("protocol", "TCP")).upper() == "TCP":
                ports.append(cport)
    return sorted(set(ports))


def _cli_error(what: str, argv: list[str], proc: subprocess.CompletedProcess[str] | None,
               timeout_s: float | None = None) -> GraderFault:
    if proc is None:
        return GraderFault(f"{what}: timed out after {timeout_s:.0f}s", command=" ".join(argv))
    output = ((proc.stdout or "") + (proc.stderr or "")).strip()
    return GraderFault(f"{what}: exit {proc.returncode}", command=" ".join(argv), details=output[-6000:])


def run_cli(argv: list[str], what: str, timeout_s: float = CLI_TIMEOUT_S,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a grader-side CLI (kind, kubectl) with the grader's environment; GraderFault on failure."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise _cli_error(what, argv, None, timeout_s) from None
    except OSError as exc:
        raise GraderFault(f"{what}: {exc}", command=" ".join(argv)) from None
    if check and proc.returncode != 0:
        raise _cli_error(what, argv, proc)
    return proc


class KindCluster:
    """One kind cluster, driven through the ``kind`` CLI and the Docker SDK."""

    def __init__(self, name: str | None = None, config: Path | None = None, kind: str = "kind",
                 lock_dir: Path | None = None) -> None:
        self.name = name or os.environ.get("TAKEHOME_KIND_CLUSTER") or DEFAULT_CLUSTER
        self.config_file = config or config_path()
        self.kind = kind
        self.created = False  # by this object: only then may down() delete it
        self.lock_dir = lock_dir or Path(os.environ.get("TAKEHOME_CACHE_DIR", "~/.cache/takehome")).expanduser()
        self.create_output = ""

    @property
    def node_container(self) -> str:
        return f"{self.name}-control-plane"

    def exists(self) -> bool:
        proc = run_cli([self.kind, "get", "clusters"], "list kind clusters")
        return self.name in proc.stdout.split()

    def ensure(self, timeout_s: float | None = None) -> bool:
        """Create the cluster unless it exists; True when this call created it."""
        timeout = timeout_s or float(os.environ.get("TAKEHOME_KIND_CREATE_TIMEOUT_S") or CREATE_TIMEOUT_S)
        with exclusive_lock(self.lock_dir / f"kind-{self.name}.lock", timeout, "creating the cluster", poll_s=0.5):
            if self.exists():
                return False
            self.create(timeout)
            return True

    def create(self, timeout_s: float) -> None:
        argv = [self.kind, "create", "cluster", "--name", self.name, "--config", str(self.config_file),
                "--wait", f"{int(max(30, timeout_s / 2))}s"]
        image = os.environ.get("TAKEHOME_KIND_NODE_IMAGE")
        if image:
            argv += ["--image", image]
        # A private kubeconfig: kind must not edit the user's ~/.kube/config or switch its context.
        with tempfile.TemporaryDirectory(prefix="takehome-kind-") as tmp:
            argv += ["--kubeconfig", str(Path(tmp) / "kubeconfig")]
            try:
                proc = run_cli(argv, f"create kind cluster {self.name!r}", timeout_s)
            except GraderFault:
                # kind deletes a half-built cluster itself unless --retain; make sure on timeout too.
                self._delete_quietly()
                raise
        self.created = True
        self.create_output = (proc.stdout + proc.stderr)[-4000:]

    def _delete_quietly(self) -> None:
        with contextlib.suppress(GraderFault):
            self.delete()

    def delete(self, timeout_s: float = 120.0) -> None:
        with tempfile.TemporaryDirectory(prefix="takehome-kind-") as tmp:
            run_cli([self.kind, "delete", "cluster", "--name", self.name, "--kubeconfig", str(Path(tmp) / "kc")],
                    f"delete kind cluster {self.name!r}", timeout_s)

    def kubeconfig(self) -> dict[str, Any]:
        """The cluster's admin kubeconfig, in memory only (``kind get kubeconfig`` writes nothing)."""
        proc = run_cli([self.kind, "get", "kubeconfig", "--name", self.name], "read the kind cluster's kubeconfig")
        data = yaml.safe_load(proc.stdout)
        if not isinstance(data, dict):
            raise GraderFault("kind get kubeconfig printed no kubeconfig", details=proc.stdout[-2000:])
        return data

    def load_images(self, images: list[str], timeout_s: float = LOAD_TIMEOUT_S) -> None:
        run_cli([self.kind, "load", "docker-image", *images, "--name", self.name],
                f"load {', '.join(images)} into kind cluster {self.name!r}", timeout_s)

    # --- the cluster-provider interface the Kubernetes runtime uses (see kubernetes.ExistingCluster) ----

    #: The pull policy of containers running the built image: it was loaded into the node.
    pull_policy = "Never"

    @property
    def context_name(self) -> str:
        """The kubeconfig context name for this cluster (kind's convention)."""
        return f"kind-{self.name}"

    def describe(self) -> str:
        return f"kind cluster {self.name!r}"

    def publish_images(self, images: list[str], docker_client: Any, progress: Any = None) -> list[str]:
        """Make the images runnable on the nodes (``kind load``); pods use them under the same refs."""
        self.load_images(images)
        return list(images)

    def grader_host(self, docker_client: Any, api: Any = None) -> str:
        return self.gateway(docker_client)

    def node_ports(self, docker_client: Any) -> list[int]:
        return usable_node_ports(self, docker_client)

    def node_address(self, api: Any) -> str:
        """Where the grader reaches a NodePort: kind publishes them on 127.0.0.1."""
        return "127.0.0.1"

    def unload_images(self, images: list[str], docker_client: Any) -> list[str]:
        """Remove the loaded images from the node's containerd (``kind load`` copies; nothing else frees them).

        Never raises; returns the refs removed. kind imports ``name:tag`` as ``docker.io/library/name:tag``.
        """
        removed: list[str] = []
        try:
            node = docker_client.containers.get(self.node_container)
        except Exception:  # noqa: BLE001 - the cluster may be gone already
            return removed
        for image in images:
            ref = image if "/" in image.split(":")[0] else f"docker.io/library/{image}"
            try:
                code, _out = node.exec_run(["crictl", "rmi", ref])
            except Exception:  # noqa: BLE001
                continue
            if code == 0:
                removed.append(ref)
        return removed

    def export_logs(self, dest: Path, timeout_s: float = 120.0) -> None:
        run_cli([self.kind, "export", "logs", str(dest), "--name", self.name], "export kind logs", timeout_s)

    # --- docker side ---------------------------------------------------------------------------

    @staticmethod
    def network_name() -> str:
        return os.environ.get("KIND_EXPERIMENTAL_DOCKER_NETWORK") or "kind"

    def gateway(self, docker_client: Any) -> str:
        """IPv4 address at which pods reach this host: the gateway of kind's Docker network.

        Pods' traffic to it leaves the node masqueraded and arrives on the host's bridge
        interface, where a server bound to 0.0.0.0 (the grader's webhook receiver) answers.
        """
        import docker.errors

        try:
            attrs = docker_client.networks.get(self.network_name()).attrs
        except docker.errors.DockerException as exc:
            raise GraderFault(f"cannot inspect kind's Docker network {self.network_name()!r}: {exc}") from None
        return gateway_from_network(attrs, self.network_name())

    def port_bindings(self, docker_client: Any) -> dict[int, str]:
        """Host ports published by the control-plane container: {container port: host ip}."""
        import docker.errors

        try:
            attrs = docker_client.containers.get(self.node_container).attrs
        except docker.errors.DockerException as exc:
            raise GraderFault(f"cannot inspect the kind node {self.node_container!r}: {exc}") from None
        out: dict[int, str] = {}
        for key, binds in ((attrs.get("HostConfig") or {}).get("PortBindings") or {}).items():
            port, _, proto = key.partition("/")
            for b in binds or []:
                if proto == "tcp" and str(b.get("HostPort")) == port:
                    out[int(port)] = b.get("HostIp") or "0.0.0.0"
        return out


def usable_node_ports(cluster: KindCluster, docker_client: Any) -> list[int]:
    """The config's mapped node ports that the running node really publishes on the host."""
    wanted = mapped_node_ports(load_config(cluster.config_file))
    bound = cluster.port_bindings(docker_client)
    usable = [p for p in wanted if p in bound]
    if not usable:
        raise GraderFault(f"the kind cluster {cluster.name!r} publishes none of the node ports {wanted} (was it "
                          f"created from another config?): delete it (kind delete cluster --name {cluster.name}) "
                          "or set TAKEHOME_KIND_CLUSTER to another name")
    return usable


def gateway_from_network(attrs: dict[str, Any], name: str = "kind") -> str:
    """The IPv4 gateway of a Docker network's ``inspect`` data (first host of the subnet if unset)."""
    for cfg in (attrs.get("IPAM") or {}).get("Config") or []:
        gw, subnet = cfg.get("Gateway"), cfg.get("Subnet")
        try:
            if gw and ipaddress.ip_address(gw).version == 4:
                return str(gw)
            if subnet and ipaddress.ip_network(subnet, strict=False).version == 4:
                return str(next(ipaddress.ip_network(subnet, strict=False).hosts()))
        except ValueError:
            continue
    raise GraderFault(f"the Docker network {name!r} has no IPv4 gateway")


def cli_status() -> tuple[bool, str]:
    """Whether the kind and kubectl CLIs are installed (and where), for ``is_available``."""
    missing = [tool for tool in ("kind", "kubectl") if shutil.which(tool) is None]
    if missing:
        how = {"kind": "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation; "
                       f"this kit pins kind {KIND_VERSION}, see k8s/README.md)",
               "kubectl": "install kubectl (https://kubernetes.io/docs/tasks/tools/)"}
        return False, "; ".join(f"{tool} is not on PATH: {how[tool]}" for tool in missing)
    return True, f"kind at {shutil.which('kind')}, kubectl at {shutil.which('kubectl')}"
