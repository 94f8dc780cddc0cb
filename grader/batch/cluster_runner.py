"""``takehome batch --on-cluster``: each candidate graded by a Kubernetes Job, collected into the
same batch state, folders and cohort view as a batch on one machine.

The batch's thread pool bounds how many Jobs exist at once (``--jobs``). Each worker creates its
candidate's Job (or, on ``--resume``, finds the one a killed batch left running and waits for it
instead of starting a second grading), follows its pod's log for the live progress line, and at
the end reads the report archive from the log (``cluster_jobs.unpack_reports``). Then it deletes
the Job with its pod and any grading namespace the pod left (an evicted or timed-out pod has no
teardown). Interrupting the batch deletes the running Jobs: their pods get SIGTERM and tear down
within ``termination_grace_s``.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

from grader.batch import cluster_jobs as cj
from grader.batch.runner import BatchOptions, Progress, record_result, start_grading
from grader.batch.state import BatchState, Row


class ClusterError(RuntimeError):
    """The cluster cannot run the batch (unreachable, no namespace, no permission); says how to fix it."""


def api_from_config(kube_cfg: Any) -> Any:
    """An ApiClient for the kubeconfig and context of the config's ``kubernetes`` section."""
    from kubernetes import config as kconfig

    from harness.runtimes.kubernetes import _kubeconfig_path

    path = _kubeconfig_path(kube_cfg.kubeconfig)
    try:
        return kconfig.new_client_from_config(config_file=str(path), context=kube_cfg.context)
    except Exception as exc:  # noqa: BLE001 - any failure here means the same thing to the user
        raise ClusterError(f"cannot use the kubeconfig {path} (context {kube_cfg.context or 'current'}): {exc}; "
                           "set kubernetes.kubeconfig / kubernetes.context in the grader config") from None


class ClusterGrader:
    """The ``grade_fn`` of a batch on a cluster: one Job per candidate."""

    def __init__(self, api: Any, cfg: Any, batch_id: str, *, seed: int | None, config_text: str | None) -> None:
        from kubernetes import client

        self.cfg = cfg  # the grading_jobs section
        self.batch_id = batch_id
        self.core = client.CoreV1Api(api)
        self.batch_api = client.BatchV1Api(api)
        self.api = api
        self.has_config = config_text is not None
        self._secret = cj.seed_secret(batch_id, cfg.namespace, seed, config_text)

    # --- the batch's own objects -----------------------------------------------------------------

    def prepare(self) -> None:
        """Check the namespace exists and (re)write the batch's seed Secret."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.read_namespace(self.cfg.namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise ClusterError(f"the grading namespace {self.cfg.namespace!r} does not exist: apply "
                                   "`takehome grading-jobs-setup` once (kubectl apply -f -)") from None
            raise ClusterError(f"cannot read namespace {self.cfg.namespace!r}: {exc.status} {exc.reason}") from None
        except Exception as exc:  # noqa: BLE001 - unreachable API server, TLS, DNS
            raise ClusterError(f"cannot reach the cluster: {exc}") from None
        name = self._secret["metadata"]["name"]
        try:
            self.core.replace_namespaced_secret(name, self.cfg.namespace, self._secret)  # type: ignore[arg-type]
        except ApiException as exc:
            if exc.status != 404:
                raise ClusterError(f"cannot write the seed Secret {name}: {exc.status} {exc.reason}") from None
            self.core.create_namespaced_secret(self.cfg.namespace, self._secret)  # type: ignore[arg-type]

    def finish(self) -> None:
        """Delete the batch's Secret (the Jobs are gone by now)."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.delete_namespaced_secret(self._secret["metadata"]["name"], self.cfg.namespace)
        except ApiException:
            pass

    # --- one candidate ---------------------------------------------------------------------------

    def __call__(self, row: Row, opts: BatchOptions, state: BatchState, progress: Progress,
                 stop: threading.Event) -> None:
        """Grade ``row`` as a Job and record the result; never raises for the candidate."""
        incoming = start_grading(row, opts, state)
        home = incoming.parent
        name = cj.job_name(self.batch_id, row.name)
        started = time.monotonic()
        try:
            attached = self._create_or_attach(row, opts, name)
            progress(row.name, f"Job {self.cfg.namespace}/{name} {'found running' if attached else 'created'}")
            outcome, log = self._wait(name, opts, progress, row.name, stop, started)
        except Exception as exc:  # noqa: BLE001 - the cluster failing one Job must not end the batch
            self._delete(name)
            state.finish(row.name, wall_s=time.monotonic() - started, exit_code=None, status="crashed",
                         score=None, max_score=None, commit_id=None, report_dir=None,
                         message=f"the grading Job could not run: {exc}")
            shutil.rmtree(incoming, ignore_errors=True)
            return
        wall = time.monotonic() - started
        (home / "grading.log").write_text(log, encoding="utf-8")
        self._delete(name)
        if outcome is None:  # the batch was interrupted: the Job is deleted, grade again on --resume
            state.release(row.name)
            shutil.rmtree(incoming, ignore_errors=True)
            return
        kind, message = outcome
        cj.unpack_reports(log, incoming)
        record_result(row, opts, state, incoming, wall=wall, exit_code=None, timed_out=kind == "timed_out",
                      no_report=f"{message}; see {row.name}/grading.log",
                      no_report_status={"evicted": "evicted", "timed_out": "timed_out"}.get(kind, "crashed"))

    def _create_or_attach(self, row: Row, opts: BatchOptions, name: str) -> bool:
        from kubernetes.client.exceptions import ApiException

        if row.repo.startswith(("/", "./", "../", "~")) or Path(row.repo).exists():
            raise ValueError(f"{row.repo!r} is a path on this machine; a Job clones the repository itself, so "
                             "the roster must give a git URL the cluster reaches")
        job = cj.grading_job(batch_id=self.batch_id, candidate=row.name, repo=row.repo, ref=row.ref,
                             namespace=self.cfg.namespace, cfg=self.cfg, cap_s=opts.cap_s,
                             has_config=self.has_config)
        try:
            self.batch_api.create_namespaced_job(self.cfg.namespace, job)  # type: ignore[arg-type]
            return False
        except ApiException as exc:
            if exc.status == 409:  # a killed batch's Job: wait for that grading, do not start another
                return True
            raise

    def _wait(self, name: str, opts: BatchOptions, progress: Progress, who: str, stop: threading.Event,
              started: float) -> tuple[tuple[str, str] | None, str]:
        """Poll the Job until it ends; ``(None, log)`` when the batch is stopped first."""
        grace = self.cfg.termination_grace_s + 60  # the cluster's deadline, then its own slack
        last = ""
        while True:
            job = self.api.sanitize_for_serialization(
                self.batch_api.read_namespaced_job_status(name, self.cfg.namespace))
            pods = self._pods(name)
            log = self._log(pods)
            outcome = cj.job_outcome(job, pods)
            if outcome is not None:  # read after the status said so: the log is complete
                return outcome, log
            lines = cj.progress_lines(log)
            problem = cj.waiting_problem(pods)
            line = problem or (lines[-1] if lines else "waiting for the pod to start")
            if line != last:
                progress(who, line)
                last = line
            if stop.is_set():
                return None, log
            if time.monotonic() - started > opts.cap_s + grace:
                return ("timed_out", f"no end of the Job within {opts.cap_s:g} s and {grace:g} s of grace"), log
            time.sleep(self.cfg.poll_s)

    def _pods(self, name: str) -> list[dict[str, Any]]:
        pods = self.core.list_namespaced_pod(self.cfg.namespace, label_selector=f"job-name={name}")
        items = [self.api.sanitize_for_serialization(p) for p in pods.items]
        return sorted(items, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")

    def _log(self, pods: list[dict[str, Any]]) -> str:
        from kubernetes.client.exceptions import ApiException

        if not pods:
            return ""
        try:
            return str(self.core.read_namespaced_pod_log(pods[-1]["metadata"]["name"], self.cfg.namespace,
                                                         container="grader"))
        except ApiException:  # not started yet, or already gone
            return ""

    def _delete(self, name: str) -> None:
        """The Job with its pod, and any grading namespace that pod left behind."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.batch_api.delete_namespaced_job(name, self.cfg.namespace, propagation_policy="Background")
        except ApiException:
            pass
        try:
            for ns in self.core.list_namespace(label_selector=f"{cj.JOB_LABEL}={name}").items:
                if ns.metadata is not None and ns.metadata.name:
                    self.core.delete_namespace(ns.metadata.name)
        except ApiException:
            pass
