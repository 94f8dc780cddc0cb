"""The kubernetes runtime: the kind runtime's grading on a cluster the hiring team already runs.

Everything that is Kubernetes (the run's namespace with quota, limits, NetworkPolicy, Pod
Security and a namespace-bound ServiceAccount; manifest rewriting; rollout and endpoint waits;
collectors; the sandboxed candidate commands; teardown) is the kind runtime's code, unchanged.
What differs is the cluster, behind the same small provider interface ``KindCluster`` has:

* the cluster is the kubeconfig context the grader config names (``kubernetes:`` section); it is
  never created or deleted, only the run's namespace is;
* the candidate image is pushed to the registry the config names (``kubernetes.registry``), or
  made available by the config's ``load_command`` (``kind load``, ``minikube image load``, ...);
* the grader reaches the candidate's Service as a NodePort on ``node_address`` (default: the
  first node's InternalIP), and pods reach the grader at ``grader_host`` (default: this host's
  address on the route to that node).

The candidate's ``runtimes.kind`` section of takehome.yaml is what is graded: it describes their
manifests and commands, which do not depend on who made the cluster.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import GraderFault
from harness.runtimes.base import RuntimeContext, StaleCleanup
from harness.runtimes.common import docker_engine
from harness.runtimes.kind import KindRuntime, cleanup_stale

CLI_TIMEOUT_S = 60.0
PUSH_TIMEOUT_S = 900.0


def _kubeconfig_path(configured: str | None) -> Path:
    raw = configured or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kube/config"
    return Path(raw).expanduser()


class ExistingCluster:
    """A cluster reached through a kubeconfig context: the provider the kubernetes runtime uses."""

    created = False  # never: the grader does not create (or delete) a cluster it was given

    def __init__(self, cfg: Any, kubectl: str | None = None) -> None:
        self.cfg = cfg
        self.kubeconfig_file = _kubeconfig_path(cfg.kubeconfig)
        self.kubectl = kubectl or shutil.which("kubectl") or "kubectl"
        self._admin: dict[str, Any] | None = None
        self._node_address: str | None = cfg.node_address
        self.name = cfg.context or "current-context"

    # --- identity and credentials -----------------------------------------------------------------

    @property
    def pull_policy(self) -> str:
        """Pushed to a registry: pulled (once per node); loaded by a command: already on the nodes."""
        return "IfNotPresent" if self.cfg.registry else "Never"

    @property
    def context_name(self) -> str:
        return str((self._admin or {}).get("current-context") or self.name)

    def describe(self) -> str:
        return f"cluster of context {self.context_name!r} ({self.kubeconfig_file})"

    def exists(self) -> bool:
        return self.kubeconfig_file.is_file()

    def ensure(self, timeout_s: float | None = None) -> bool:
        """Check the kubeconfig and its context are usable. Never creates anything: returns False."""
        self.kubeconfig()
        return False

    def kubeconfig(self) -> dict[str, Any]:
        """The named context only, with certificates and keys inlined (``kubectl config view --flatten``),
        in memory: the API client needs no file of the grader's, and no other context leaks in."""
        if self._admin is not None:
            return self._admin
        if not self.kubeconfig_file.is_file():
            raise GraderFault(f"the kubernetes runtime's kubeconfig {self.kubeconfig_file} does not exist: set "
                              "kubernetes.kubeconfig in your grader config or $KUBECONFIG")
        argv = [self.kubectl, "config", "view", "--minify", "--flatten", "--raw", "-o", "json",
                "--kubeconfig", str(self.kubeconfig_file)]
        if self.cfg.context:
            argv += ["--context", self.cfg.context]
        proc = _run(argv, "read the kubeconfig context", CLI_TIMEOUT_S)
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            raise GraderFault("kubectl config view printed no kubeconfig", details=proc.stdout[-2000:]) from None
        if not data.get("clusters"):
            raise GraderFault(f"the kubeconfig {self.kubeconfig_file} has no context "
                              f"{self.cfg.context or '(current)'!r}: set kubernetes.context")
        self._admin = data
        return data

    # --- images -------------------------------------------------------------------------------------

    def publish_images(self, images: list[str], docker_client: Any, progress: Any = None) -> list[str]:
        """Push to ``kubernetes.registry`` (returns the pushed refs) or run ``load_command`` per image."""
        say = progress or (lambda _m: None)
        if self.cfg.registry:
            own = images[:1]  # the placeholder alias is a local convenience: a registry gets the run's tag only
            refs = []
            for image in own:
                repo, _, tag = image.rpartition(":")
                target = f"{self.cfg.registry.rstrip('/')}/{repo.rsplit('/', 1)[-1]}"
                say(f"kubernetes: pushing {image} to {target}:{tag} ...")
                try:
                    docker_client.images.get(image).tag(target, tag)
                    for line in docker_client.images.push(target, tag=tag, stream=True, decode=True):
                        if isinstance(line, dict) and line.get("error"):
                            raise GraderFault(f"docker push {target}:{tag} failed: {line['error']}")
                except GraderFault:
                    raise
                except Exception as exc:  # noqa: BLE001 - the SDK raises many types
                    raise GraderFault(f"could not push {image} to {target}: {exc}") from None
                refs.append(f"{target}:{tag}")
            return refs
        if self.cfg.load_command:
            for image in images:
                command = self.cfg.load_command.replace("{image}", shlex.quote(image))
                say(f"kubernetes: {command}")
                _run(["bash", "-c", command], f"load {image} onto the nodes (kubernetes.load_command)", PUSH_TIMEOUT_S)
            return list(images)
        raise GraderFault("the kubernetes runtime needs a way to get the candidate's image onto the nodes: set "
                          "kubernetes.registry (pushed there) or kubernetes.load_command in your grader config")

    def unload_images(self, images: list[str], docker_client: Any) -> list[str]:
        """Nothing: images pushed to a team's registry or loaded by their command are theirs to prune."""
        return []

    # --- addresses ----------------------------------------------------------------------------------

    def node_ports(self, docker_client: Any) -> list[int]:
        return list(self.cfg.node_ports)

    def node_address(self, api: Any) -> str:
        """``kubernetes.node_address``, else the first node's InternalIP (looked up once)."""
        if self._node_address:
            return str(self._node_address)
        from kubernetes import client

        try:
            nodes = client.CoreV1Api(api).list_node(_request_timeout=30).items
        except Exception as exc:  # noqa: BLE001
            raise GraderFault(f"cannot list the cluster's nodes to find a NodePort address ({exc}): set "
                              "kubernetes.node_address") from None
        for node in nodes:
            for addr in (node.status.addresses if node.status else None) or []:
                if addr.type == "InternalIP":
                    self._node_address = str(addr.address)
                    return self._node_address
        raise GraderFault("no node has an InternalIP: set kubernetes.node_address in your grader config")

    def grader_host(self, docker_client: Any, api: Any = None) -> str:
        """``kubernetes.grader_host``, else this host's source address on the route to the node address."""
        if self.cfg.grader_host:
            return str(self.cfg.grader_host)
        host = self.node_address(api)
        address = source_address_towards(host)
        if address.startswith("127."):
            raise GraderFault(f"pods cannot reach the grader at {address} (the node address {host} is on this "
                              "host's loopback): set kubernetes.grader_host to an address of this machine they reach")
        return address

    def delete(self, timeout_s: float = 120.0) -> None:  # pragma: no cover - never created, never deleted
        raise GraderFault("the kubernetes runtime never deletes a cluster")


def source_address_towards(host: str) -> str:
    """This host's IPv4 address on the route to ``host`` (a UDP connect sends nothing)."""
    try:
        target = socket.gethostbyname(host)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((target, 9))
            return str(sock.getsockname()[0])
    except OSError as exc:
        raise GraderFault(f"cannot find this host's address toward {host} ({exc}): set kubernetes.grader_host") from None


def _run(argv: list[str], what: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise GraderFault(f"could not {what}: no answer within {timeout_s:.0f}s", details=" ".join(argv)) from None
    except OSError as exc:
        raise GraderFault(f"could not {what}: {exc}", details=" ".join(argv)) from None
    if proc.returncode != 0:
        raise GraderFault(f"could not {what} (exit {proc.returncode})",
                          details=f"$ {' '.join(argv)}\n{(proc.stderr or proc.stdout)[-3000:]}")
    return proc


class KubernetesRuntime(KindRuntime):
    """The kind runtime's grading, on the existing cluster the grader config names."""

    name: ClassVar[str] = "kubernetes"
    contract_section: ClassVar[str | None] = "kind"  # the candidate's manifests and commands, whoever made the cluster

    def __init__(self, ctx: RuntimeContext) -> None:
        super().__init__(ctx)
        self.cluster = ExistingCluster(ctx.config.kubernetes)  # type: ignore[assignment]

    def build(self) -> None:
        cfg = self.ctx.config.kubernetes
        if not (cfg.registry or cfg.load_command):  # before the image build, which takes minutes
            self.cluster.publish_images([], None)  # raises the message that says what to set
        super().build()

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        if shutil.which("kubectl") is None:
            return False, "kubectl is not on PATH: install kubectl (https://kubernetes.io/docs/tasks/tools/)"
        if docker_engine() is None:
            return False, "the kubernetes runtime builds the candidate's image with Docker, and no engine is reachable"
        # The cluster itself comes from the grader config (kubernetes:), checked when the grading starts.
        default = _kubeconfig_path(None)
        return True, (f"kubectl at {shutil.which('kubectl')}; the cluster is the grader config's kubernetes: section "
                      f"(kubeconfig default {default}: {'present' if default.is_file() else 'missing'}), and "
                      "it needs kubernetes.registry or kubernetes.load_command")

    @classmethod
    def cleanup_stale(cls, options: StaleCleanup) -> Iterator[str]:
        """With a grader config (``--config``): the namespaces of gone gradings on the cluster it names."""
        if options.grader_config is None:
            return
        cluster = ExistingCluster(options.grader_config().kubernetes)  # a bad config raises ConfigError here
        for line in cleanup_stale(cluster):
            yield f"kubernetes: {line}"
