"""The kind runtime: the candidate's image and manifests in a kind (Kubernetes-in-Docker) cluster.

Lifecycle: ``build`` builds the Dockerfile with the Docker SDK (the docker runtime's build, base
image stand-in included), creates or reuses the cluster (``k8s/kind-config.yaml``), loads the
image into it, and creates the run's namespace ``takehome-<run id>`` (quota, limits, network
policy, Pod Security, a namespace-bound ServiceAccount: see ``kube_namespace``). ``up`` applies
the rewritten manifests *as that ServiceAccount*, makes the named Service a NodePort on a port the
kind config publishes on 127.0.0.1, and waits for the rollout and a ready endpoint.

Candidate commands (setup, deploy, rollback, and ``kubectl kustomize`` of its kustomization) run
on the host in the same bubblewrap sandbox the local runtime uses (``harness.isolation``): a fresh
root with the system read-only, the checkout and a home writable, nothing else of the machine, an
unprivileged uid, and a network namespace that reaches only the API server and the published node
ports (relayed at the same addresses). Their environment is scrubbed and ``KUBECONFIG`` holds only
the ServiceAccount's token; the admin kubeconfig is kept in memory. ``local.sandbox: false``
(``--unsafe-local``) runs them unsandboxed, and the report says so. ``down`` deletes the
namespace and waits for it, then deletes the cluster if this run created it, unless
``TAKEHOME_KEEP_CLUSTER=1`` (which keeps cluster and namespace to inspect) or another grading's
namespace is still there.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import yaml

from harness import processes
from harness.contract import KindRuntime as KindSection
from harness.errors import GraderFault, SubmissionError
from harness.isolation import bwrap
from harness.isolation.relay import Relays
from harness.runtimes import kube_collect as collect, kube_manifests as manifests, kube_namespace as kns, kube_ops as ops
from harness.runtimes import kube_podsecurity as podsec
from harness.runtimes.base import CommandResult, RuntimeContext, StaleCleanup, clip, run_setup
from harness.runtimes.common import LOG_FILE_CAP, SandboxedCommands, docker_engine, read_tail
from harness.runtimes.kube_image import build_candidate_image, remove_images, tag_alias
from harness.runtimes.kube_cluster import KindCluster, cli_status
from harness.sandbox import FORBIDDEN

KEEP_ENV = "TAKEHOME_KEEP_CLUSTER"
#: Lines of each container's log read by ``logs()`` (a grading sends a few thousand requests).
LOG_TAIL_LINES = 50_000
#: API server hosts the sandbox reaches through a relay; any other host means sharing the host network.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
#: What the sandbox covers on this runtime (the report's isolation line).
SANDBOX_SCOPE = "host-side commands sandboxed; the service in the namespace's pods"


class KindRuntime(SandboxedCommands):
    """Deploys the candidate into its own namespace of a kind cluster."""

    name: ClassVar[str] = "kind"
    cleanup_first: ClassVar[bool] = True  # its namespaces are spared by the grading records local's cleanup removes
    undo_extra_s: ClassVar[float] = 150  # the namespace wait, then the cluster deletion

    def __init__(self, ctx: RuntimeContext) -> None:
        super().__init__(ctx, scope=SANDBOX_SCOPE)
        self.cluster = KindCluster()
        self.namespace = kns.namespace_name(ctx.run_id)
        self.image = f"takehome-candidate:{ctx.run_id}"  # the local tag the build gives
        self.pod_image = self.image  # what pods run: the same on kind, the pushed ref with a registry
        self.kube_dir, self.state_dir = ctx.work_dir / "kube", ctx.work_dir / "state"
        self.keep = os.environ.get(KEEP_ENV) == "1" or bool(getattr(ctx, "keep", False))
        self.notes: list[str] = []
        self._api: Any = None
        self._admin: dict[str, Any] = {}
        self._private: Path | None = None  # the API client's certificate files: private, never in work_dir
        self._gateway: str | None = None
        self._node_port: int | None = None
        self._node_address = "127.0.0.1"
        self._police = False  # check pods against Pod Security baseline after commands (servers without PSA)
        self._kubeconfig: Path | None = None
        self._images: list[str] = []
        self._pod_logs: dict[str, str] = {}  # last logs of every pod seen, kept after the pod is gone

    # --- availability, contract ---------------------------------------------------------------

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        ok, why = cli_status()
        if not ok:
            return False, why
        if docker_engine() is None:
            return False, "kind needs a Docker engine and none is reachable: start Docker (or run .ci/install-docker.sh)"
        return True, why

    @classmethod
    def cleanup_stale(cls, options: StaleCleanup) -> Iterator[str]:
        """Delete the kind cluster's namespaces of gradings that are gone (see :func:`cleanup_stale`)."""
        for line in cleanup_stale():  # the module's function: a method body does not see the class's names
            yield f"kind: {line}"

    def _undo_description(self) -> str:
        return f"{self.name}: delete namespace {self.namespace} (and the cluster if this run made it)"

    # --- cluster and namespace ------------------------------------------------------------------

    def _ensure_cluster(self) -> None:
        if self._api is not None:
            return
        self._register_undo()
        self.ctx.progress(f"{self.name}: using {self.cluster.describe()} ...")
        created = self.cluster.ensure()
        self.ctx.progress(f"{self.name}: {self.cluster.describe()} {'created' if created else 'reused'}")
        self._admin = self.cluster.kubeconfig()  # in memory only
        self._private = self._private or Path(tempfile.mkdtemp(prefix="takehome-kube-"))
        self._api = ops.api_client(self._admin, self._private)
        version, minor = ops.server_version(self._api)
        missing = podsec.guarantees_missing(minor)
        self._police = bool(missing)
        self.isolation["cluster"] = f"{self.cluster.describe()}, Kubernetes {version}"
        if missing:
            self.isolation.setdefault("notes", []).extend(missing)
            for line in missing:
                self.ctx.progress(f"{self.name}: note: {line}")
        self.ctx.progress(f"{self.name}: API server {version}")

    def _docker(self) -> Any:
        import docker

        return docker.from_env(timeout=120)

    def grader_host(self) -> str:
        """The gateway of kind's Docker network: pods reach the host (a server on 0.0.0.0) there."""
        if self._gateway is None:
            self._ensure_cluster()
            self._gateway = self.cluster.grader_host(self._docker(), self._api)
        return self._gateway

    def pod_env(self) -> dict[str, str]:
        """TAKEHOME_* variables added to the candidate's containers (and the takehome-env ConfigMap)."""
        values = {"PORT": str(self.ctx.contract.serving.port), "TAKEHOME_RUNTIME": "kind",
                  **self.ctx.candidate_env, processes.RUN_ID_ENV: self.ctx.run_id}
        return {k: v for k, v in values.items() if k not in FORBIDDEN}

    def _ensure_namespace(self) -> None:
        if self._kubeconfig is not None:
            return
        self._ensure_cluster()
        webhook = self.ctx.candidate_env.get("TAKEHOME_ALERT_WEBHOOK_URL")
        grader_ip = self.grader_host() if webhook else None
        grader_port = urlparse(webhook).port if webhook else None
        docs = kns.namespace_objects(self.ctx.run_id, self.ctx.contract.serving.port, self.pod_env(),
                                     grader_ip, grader_port)
        ops.create_objects(self._api, docs)
        server, ca = kns.admin_endpoint(self._admin)
        kubeconfig = kns.candidate_kubeconfig(server, ca, ops.request_token(self._api, self.namespace),
                                              self.namespace, self.cluster.context_name)
        self._kubeconfig = kns.write_private(self.kube_dir / "candidate.kubeconfig", kubeconfig)
        self._share_kubeconfig()
        self.ctx.progress(f"{self.name}: namespace {self.namespace} ready; commands use {self._kubeconfig}")

    # --- build --------------------------------------------------------------------------------

    def build(self) -> None:
        started = time.monotonic()
        section: KindSection = self._section()
        # Before the image build (minutes): a machine that cannot sandbox says so at once.
        self._require_sandbox("the candidate's host-side commands")
        self._register_undo()
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.build_info = build_candidate_image(self.repo_dir, section.dockerfile, section.context, self.image,
                                                self.ctx, self.logs_dir / "build.log")
        self._ensure_cluster()
        self._images = [self.image]
        alias = section.image_placeholder
        if alias and alias != self.image:
            # So that a deploy command applying its own manifests finds the image under the placeholder too.
            tag_alias(self.image, alias)
            self._images.append(alias)
        self.ctx.progress(f"{self.name}: loading {', '.join(self._images)} into the cluster ...")
        self.pod_image = self.cluster.publish_images(self._images, self._docker(), self.ctx.progress)[0]
        self._ensure_namespace()
        self.build_info.update({"cluster": self.cluster.name, "cluster_created": self.cluster.created,
                                "pod_image": self.pod_image,
                                "namespace": self.namespace, "images_loaded": list(self._images)})
        run_setup(self, section.setup, self.build_info)
        self.build_info["seconds"] = round(time.monotonic() - started, 2)

    # --- service ------------------------------------------------------------------------------

    def up(self) -> None:
        section = self._section()
        self._ensure_namespace()
        path = manifests.resolve_manifests_path(self.repo_dir, section.manifests)
        box = self._ensure_sandbox()
        text, how = manifests.render_manifests(path, self._kubectl(), env=self.command_env(),
                                               wrap=(lambda argv: box.wrap(argv, self.repo_dir)) if box else None,
                                               preexec=box.preexec() if box else None)
        rewritten = manifests.rewrite(manifests.parse_documents(text, section.manifests), namespace=self.namespace,
                                      run_id=self.ctx.run_id, placeholder=section.image_placeholder,
                                      image=self.pod_image, service_name=section.service, env=self.pod_env(),
                                      pull_policy=self.cluster.pull_policy)
        self.notes = [f"manifests: {how}", *rewritten.notes]
        applied = self.kube_dir / "applied.yaml"
        applied.write_text(rewritten.yaml())
        argv = [self._kubectl(), "apply", "-f", str(applied)]
        self.ctx.progress(f"{self.name}: kubectl apply ({len(rewritten.documents)} objects, as {kns.CANDIDATE_SA})")
        result = self._run_confined(argv, "kubectl apply", self.ctx.config.timeouts.deploy)
        if not result.ok:
            raise SubmissionError("kubectl apply of your manifests failed (it runs as the namespace's "
                                  "ServiceAccount: objects outside the namespace are forbidden)",
                                  command=" ".join(argv), details=clip(result.stdout + result.stderr, 6000))
        self._node_port = ops.expose(self._api, self.namespace, section.service, self.ctx.contract.serving.port,
                                     manifests.pick_node_port(self.cluster.node_ports(self._docker()),
                                                              ops.used_node_ports(self._api)))
        self._node_address = self.cluster.node_address(self._api)
        self.ctx.progress(f"{self.name}: Service {section.service} is NodePort {self._node_port}; waiting for the rollout")
        started = time.monotonic()
        ops.wait_rollout(self._api, self.namespace, self.ctx.config.timeouts.start, self.ctx.progress)
        remaining = max(10.0, self.ctx.config.timeouts.start - (time.monotonic() - started))
        ready = ops.wait_endpoints(self._api, self.namespace, section.service, remaining)
        self.ctx.progress(f"{self.name}: rolled out; {len(ready)} ready endpoint(s) behind {section.service}")

    def endpoint(self) -> str:
        if self._node_port is None:
            raise GraderFault(f"the {self.name} runtime has no endpoint before up()")
        return f"http://{self._node_address}:{self._node_port}"

    def _ensure_node_port(self) -> None:
        """Put the NodePort back if a candidate command re-applied the Service without it."""
        if self._api is None or self._node_port is None:
            return
        section = self._section()
        try:
            live = ops.read_service(self._api, self.namespace, section.service)
            if live is not None and manifests.node_port_of(live, self.ctx.contract.serving.port) != self._node_port:
                ops.expose(self._api, self.namespace, section.service, self.ctx.contract.serving.port,
                           [self._node_port])
                self._log_command_text(f"[grader] Service {section.service} had lost NodePort {self._node_port} "
                                       "(re-applied without it?); restored\n")
        except Exception as exc:  # noqa: BLE001 - best effort; the next request shows the damage
            self._log_command_text(f"[grader] could not check the Service's NodePort: {exc}\n")

    def _kubectl(self) -> str:
        return shutil.which("kubectl") or "kubectl"

    def command_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The complete environment of a candidate command: scrubbed, with the namespace's kubeconfig."""
        values = {"PORT": str(self.ctx.contract.serving.port), "TAKEHOME_RUNTIME": "kind",
                  "TAKEHOME_STATE_DIR": str(self.state_dir), "TAKEHOME_NAMESPACE": self.namespace,
                  "TAKEHOME_IMAGE": self.pod_image}
        if self._node_port is not None:
            values["TAKEHOME_ENDPOINT"] = self.endpoint()
        values.update(self.ctx.candidate_env)
        values.update(extra or {})
        # Last: never overridden. Without a kubeconfig yet, point at an empty file, never at ~/.kube.
        values["KUBECONFIG"] = str(self._kubeconfig or os.devnull)
        values[processes.RUN_ID_ENV] = self.ctx.run_id
        return self._scrubbed_env(values, [str(d) for d in self._tool_dirs()])

    def _tool_dirs(self) -> list[Path]:
        """Where the tools candidate commands may use (kubectl) live, for PATH and the sandbox."""
        kubectl = Path(self._kubectl())
        return [kubectl.resolve().parent] if kubectl.is_absolute() else []

    # --- the sandbox of candidate commands ------------------------------------------------------

    def _ensure_sandbox(self) -> bwrap.Sandbox | None:
        """The sandbox candidate commands run in, started on first use (None when unsandboxed)."""
        if not self.sandboxed:
            return None
        if self._sandbox is None:
            self._ensure_cluster()
            home = self.ctx.work_dir / "home"
            for path in (home, self.state_dir, self.kube_dir):
                path.mkdir(parents=True, exist_ok=True)
            ports, network = self._sandbox_ports()
            tools = [d for d in self._tool_dirs() if not bwrap.is_system_path(d)]
            box = bwrap.Sandbox(name=f"kind-{self.ctx.run_id}", writable=[self.repo_dir, home, self.state_dir],
                                readonly=[*bwrap.grader_python_dirs(), self.kube_dir, *tools], network=network,
                                relays=Relays(outbound=ports), limits=self._sandbox_limits(),
                                chdir=self.repo_dir, progress=self.ctx.progress)
            self._sandbox = box  # before start(): down() stops a half-started one
            box.start()
            self._share_kubeconfig()
            reach = ("the host network (the API server is not on loopback)" if network else
                     f"loopback, ports {', '.join(map(str, ports))} relayed (API server, node ports)")
            self.ctx.progress(f"{self.name}: command sandbox up (uid {box.uid}; network: {reach})")
        return self._sandbox

    def _sandbox_ports(self) -> tuple[tuple[int, ...], bool]:
        """(ports relayed into the sandbox, whether it must share the host network instead).

        A kind cluster's API server listens on 127.0.0.1, and so do its published node ports: the
        sandbox reaches exactly those through relays at the same port numbers, so the kubeconfig
        and ``$TAKEHOME_ENDPOINT`` work unchanged inside. A remote API server cannot be relayed
        that way; the commands then share the host network, and the report notes it.
        """
        server, _ca = kns.admin_endpoint(self._admin)
        url = urlparse(server)
        if url.hostname not in LOOPBACK_HOSTS:
            self.isolation.setdefault("notes", []).append(
                f"the API server ({url.hostname}) is not on loopback: candidate commands share the host network")
            return (), True
        api_port = url.port or (443 if url.scheme == "https" else 80)
        node = self.cluster.node_address(self._api)
        if node not in LOOPBACK_HOSTS:
            self.isolation.setdefault("notes", []).append(
                f"node ports are reached at {node}, not on loopback: candidate commands share the host network")
            return (), True
        return tuple(sorted({api_port, *self.cluster.node_ports(self._docker())})), False

    def _share_kubeconfig(self) -> None:
        """The sandbox user must read the namespace's kubeconfig (it holds only that namespace's token)."""
        box = self._sandbox
        if box is not None and box.as_root and self._kubeconfig is not None and self._kubeconfig.exists():
            os.chown(self._kubeconfig, box.uid, box.gid)

    def run_command(self, name: str, command: str, timeout_s: float,
                    env: dict[str, str] | None = None) -> CommandResult:
        result = super().run_command(name, command, timeout_s, env)
        self._ensure_node_port()
        refusal = self._police_pods()
        return dataclasses.replace(result, error=refusal) if refusal else result

    def _police_pods(self) -> str | None:
        """Where the server enforces no Pod Security, end pods a command made that break the baseline.

        Every workload in the namespace is deleted (the service is gone: the grading goes on and
        scores what is left), the report names what was found. Returns that message, or None.
        """
        if not self._police or self._api is None:
            return None
        try:
            pods = collect.snapshot(self._api, self.namespace)["pods"]
        except Exception:  # noqa: BLE001 - the next command checks again
            return None
        found = [f"pod {(p.get('metadata') or {}).get('name')}: {problem}" for p in pods
                 for problem in podsec.violations(p.get("spec") or {}, (p.get("metadata") or {}).get("annotations"))]
        if not found:
            return None
        deleted = ops.delete_workloads(self._api, self.namespace)
        message = (f"Pod Security baseline broken by what a candidate command created ({'; '.join(found[:5])}): "
                   f"the grader deleted every workload in the namespace ({', '.join(deleted) or 'none could be'})")
        self.isolation.setdefault("limits_hit", []).append(message)
        self._log_command_text(f"[grader] {message}\n")
        return message

    def alive(self) -> bool:
        """A ready endpoint behind the Service, or a pod still coming up (not in a fatal state)."""
        if self._api is None:
            return False
        try:
            if ops.service_endpoints(self._api, self.namespace, self._section().service):
                return True
            pods = collect.snapshot(self._api, self.namespace)["pods"]
        except Exception:  # noqa: BLE001 - an unreachable cluster runs nothing
            return False
        coming = [p for p in pods if (p.get("status") or {}).get("phase") in ("Pending", "Running")
                  and not (p.get("metadata") or {}).get("deletionTimestamp")]
        return bool(coming) and not collect.fatal_problems(coming)

    # --- logs and diagnostics -----------------------------------------------------------------

    def logs(self) -> str:
        if self._api is not None:
            try:
                pods = collect.snapshot(self._api, self.namespace)["pods"]
                # limitBytes would keep the head; the request ids the grader looks for are at the end.
                fresh = collect.pod_logs(self._api, self.namespace, pods, tail_lines=LOG_TAIL_LINES)
                self._pod_logs.update({k: v[-LOG_FILE_CAP:] for k, v in fresh.items()
                                       if not v.startswith("(logs unavailable")})
            except Exception as exc:  # noqa: BLE001
                self._pod_logs.setdefault("[grader]", f"(pod logs unavailable: {exc})")
        parts = [f"==> pod {label} <==\n{text}" for label, text in self._pod_logs.items()]
        parts.append(f"==> commands.log <==\n{read_tail(self.logs_dir / 'commands.log', LOG_FILE_CAP)}")
        return "\n".join(parts)

    def diagnostics(self) -> dict[str, str]:
        out: dict[str, str] = {"cluster": f"{self.cluster.name} (created by this run: {self.cluster.created}); "
                                          f"namespace {self.namespace}; node port {self._node_port}",
                               "notes": "\n".join(self.notes) or "(none)"}
        if self._api is None:
            return {**out, "state": "no cluster connection (the run stopped before the cluster was up)"}
        try:
            snap = collect.snapshot(self._api, self.namespace)
            out["pods"] = collect.format_pods(snap["pods"])
            out["deployments"] = collect.format_deployments(snap["deployments"])
            out["events"] = collect.format_events(snap["events"])
            out["pod_logs_tail"] = clip(collect.format_logs(collect.pod_logs(self._api, self.namespace, snap["pods"])),
                                        12_000)
            svc = ops.read_service(self._api, self.namespace, self._section().service)
            out["service"] = yaml.safe_dump({"spec": (svc or {}).get("spec"), "ready_endpoints":
                                             ops.service_endpoints(self._api, self.namespace, self._section().service)})
        except Exception as exc:  # noqa: BLE001
            out["error"] = f"collectors failed: {exc}"
        out["commands_log_tail"] = read_tail(self.logs_dir / "commands.log", 6000)
        return out

    # --- teardown -----------------------------------------------------------------------------

    def _down_locked(self) -> None:
        started = time.monotonic()
        info = self._count_teardown()
        errors: list[str] = []
        if self._sandbox is not None:  # first: nothing of the candidate's runs on while its namespace goes
            result = self._stop_sandbox()
            info["sandbox_killed"] = len(result.get("killed") or [])  # type: ignore[arg-type]
        if self.keep and (self._api is not None or self.cluster.created):
            info["kept"] = (f"namespace {self.namespace} of {self.cluster.describe()} kept ({KEEP_ENV}=1): "
                            f"kubectl --context {self.cluster.context_name} -n {self.namespace} get all; clean up with: "
                            + (f"kind delete cluster --name {self.cluster.name}" if self.cluster.created else
                               f"kubectl --context {self.cluster.context_name} delete namespace {self.namespace}"))
            self.ctx.progress(f"{self.name}: {info['kept']}")
        else:
            others: list[str] = []
            if self._api is not None:
                try:
                    info["namespace_deleted"] = ops.delete_namespace(self._api, self.namespace,
                                                                     self.ctx.config.timeouts.teardown)
                    others = [n for n in ops.grader_namespaces(self._api) if n != self.namespace]
                except GraderFault as exc:
                    errors.append(exc.describe())
                self._api = None
            if self.cluster.created and others:
                info["cluster_kept"] = f"other gradings' namespaces are still there: {others}"
            elif self.cluster.created:
                try:
                    self.cluster.delete()
                    info["cluster_deleted"] = True
                    self.cluster.created = False
                except GraderFault as exc:
                    errors.append(exc.describe())
            if self._images and not info.get("cluster_deleted"):  # a deleted cluster took its images along
                # The run's own tag only: the placeholder alias may be another grading's by now.
                info["node_images_removed"] = self.cluster.unload_images([self.image], self._docker())
            info["images_removed"] = remove_images(list(dict.fromkeys([*self._images, self.pod_image])), self.image)
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)
            self._private = None
        info["seconds"] = round(time.monotonic() - started, 2)
        if errors:
            info["errors"] = errors
            raise GraderFault(f"{self.name}: teardown left resources behind", details="\n".join(errors))


#: A grading namespace with no record on this host is left alone until it is this old (seconds):
#: it may belong to a grading run from another cache dir or machine; none runs this long.
ORPHAN_AGE_S = 6 * 3600.0


def cleanup_stale(cluster: Any = None, timeout_s: float = 120.0,
                  orphan_age_s: float = ORPHAN_AGE_S) -> list[str]:
    """Delete the namespaces of gradings that are no longer running (e.g. a SIGKILLed grader).

    A namespace belongs to a grading by its run-id label. It is deleted when that grading's record
    on this host names a grader process that is gone, or, with no record here at all, once it is
    older than ``orphan_age_s``; a live grading's is spared. Returns one line per namespace, or a
    line saying why nothing was looked at. The cluster itself is kept (the next grading reuses it).
    """
    from harness.isolation.records import known_gradings, live_gradings

    cluster = cluster or KindCluster()
    try:
        import docker

        docker_client: Any = docker.from_env(timeout=60)
    except Exception:  # noqa: BLE001 - namespaces still go; images stay
        docker_client = None
    ok, why = cli_status() if isinstance(cluster, KindCluster) else (True, "")  # others say what is missing below
    if not ok:
        return [f"nothing to clean ({why})"]
    try:
        if not cluster.exists():
            return [f"no {cluster.describe()}: nothing to clean"]
        private = Path(tempfile.mkdtemp(prefix="takehome-kube-"))
        try:
            api = ops.api_client(cluster.kubeconfig(), private)
            live, known = live_gradings(), known_gradings()
            done: list[str] = []
            for namespace, (run_id, age_s) in sorted(ops.grader_namespace_runs(api).items()):
                if run_id in live:
                    done.append(f"namespace {namespace} kept: its grading is still running")
                    continue
                if run_id not in known and age_s < orphan_age_s:
                    done.append(f"namespace {namespace} kept: no grading of this host knows it and it is only "
                                f"{age_s / 60:.0f} min old (another grader's?); deleted after {orphan_age_s / 3600:g} h")
                    continue
                gone = ops.delete_namespace(api, namespace, timeout_s)
                done.append(f"namespace {namespace} deleted" + ("" if gone else " (still terminating)"))
                if run_id and docker_client is not None:
                    image = f"takehome-candidate:{run_id}"
                    if cluster.unload_images([image], docker_client):
                        done.append(f"image {image} removed from the node")
            return done or [f"{cluster.describe()}: no namespace left behind"]
        finally:
            shutil.rmtree(private, ignore_errors=True)
    except GraderFault as exc:
        return [f"could not clean {cluster.describe()}: {exc}"]
