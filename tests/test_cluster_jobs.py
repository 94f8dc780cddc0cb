"""batch --on-cluster without a cluster: the Job and Secret manifests (schema-valid for the pinned
Kubernetes version), the report archive a Job's log carries, what a Job's status means, and the
collector filing results into the batch state, against a scripted stand-in for the API."""

from __future__ import annotations

import base64
import io
import json
import tarfile
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from grader.batch import cluster_jobs as cj
from grader.batch.cluster_runner import ClusterGrader
from grader.batch.in_cluster import in_cluster_kubeconfig
from grader.batch.roster import RosterEntry
from grader.batch.runner import BatchOptions
from grader.batch.state import BatchState
from grader.config import load_config
from harness.runtimes import kube_namespace as kns

JOBS = load_config(None).grading_jobs
SEED = 918273645


def _job(**kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(batch_id="0a1b2c3d", candidate="ada", repo="https://git.example/ada.git",
                                ref="v2", namespace="takehome-grading", cfg=JOBS, cap_s=1200, has_config=True)
    args.update(kw)
    return cj.grading_job(**args)


# --- manifests ------------------------------------------------------------------------------------

def test_the_job_grades_once_within_the_cap_with_the_seed_from_the_secret() -> None:
    job = _job()
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 1200  # no retries; the cap
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == JOBS.service_account
    (container,) = pod["containers"]
    assert container["args"] == ["job-run", "--repo", "https://git.example/ada.git", "--ref", "v2",
                                 "--config", "/etc/takehome/config.yaml"]
    env = {e["name"]: e for e in container["env"]}
    assert env["TAKEHOME_SCENARIO_SEED"]["valueFrom"]["secretKeyRef"]["name"] == cj.secret_name("0a1b2c3d")
    assert env[cj.JOB_ENV]["value"] == job["metadata"]["name"]
    assert container["resources"]["requests"] == container["resources"]["limits"]  # no throttling of p99
    assert job["metadata"]["labels"][cj.BATCH_LABEL] == "0a1b2c3d"
    # The node's Docker socket by default; a remote engine instead when the team names one.
    assert {v["name"] for v in pod["volumes"]} == {"config", "docker"}
    remote = _job(cfg=JOBS.model_copy(update={"docker_host": "tcp://builder:2376"}), ref=None, has_config=False)
    rc = remote["spec"]["template"]["spec"]
    assert {v["name"] for v in rc["volumes"]} == {"config"}
    assert {"name": "DOCKER_HOST", "value": "tcp://builder:2376"} in rc["containers"][0]["env"]
    assert rc["containers"][0]["args"] == ["job-run", "--repo", "https://git.example/ada.git"]


def test_the_seed_is_in_the_secret_only() -> None:
    secret = cj.seed_secret("0a1b2c3d", "takehome-grading", SEED, "scenario_seed: null\n")
    assert base64.b64decode(secret["data"][cj.SECRET_SEED_KEY]).decode() == str(SEED)
    assert str(SEED) not in json.dumps(_job())
    assert cj.SECRET_SEED_KEY not in cj.seed_secret("0a1b2c3d", "ns", None, None)["data"]


def test_the_pods_config_drops_the_batch_hosts_view_of_the_cluster() -> None:
    text = ("kubernetes:\n  kubeconfig: /home/team/.kube/config\n  context: prod\n  grader_host: 10.0.0.5\n"
            "  registry: reg.example/takehome\nload:\n  rate_rps: 40\n")
    secret = cj.seed_secret("0a1b2c3d", "takehome-grading", None, text)
    pod = yaml.safe_load(base64.b64decode(secret["data"][cj.SECRET_CONFIG_KEY]))
    assert pod == {"kubernetes": {"registry": "reg.example/takehome"}, "load": {"rate_rps": 40}}
    assert cj.pod_config_text("load: {rate_rps: 40}\n") == "load: {rate_rps: 40}\n"


def test_job_names_are_dns_labels_stable_and_distinct() -> None:
    long_a, long_b = "a" * 70 + "-one", "a" * 70 + "-two"
    names = {cj.job_name("0a1b2c3d9999", n) for n in ("Ada.Lovelace", long_a, long_b)}
    assert len(names) == 3 and all(len(n) <= 63 and n == n.lower() and "." not in n for n in names)
    assert cj.job_name("0a1b2c3d", "ada") == cj.job_name("0a1b2c3d", "ada") == "takehome-0a1b2c3d-ada"


def test_manifests_validate_against_the_pinned_kubernetes_schemas() -> None:
    from test_k8s_manifests import validate

    for doc in [_job(), cj.seed_secret("0a1b2c3d", "takehome-grading", SEED, "x: 1\n"),
                *cj.setup_objects(JOBS.namespace, JOBS.service_account)]:
        validate(doc, "grader.batch.cluster_jobs")


def test_a_graders_namespace_inside_a_job_carries_the_job_name(monkeypatch) -> None:
    assert cj.JOB_LABEL not in kns.namespace_object("takehome-x", "x")["metadata"]["labels"]
    monkeypatch.setenv(cj.JOB_ENV, "takehome-0a1b2c3d-ada")
    assert kns.namespace_object("takehome-x", "x")["metadata"]["labels"][cj.JOB_LABEL] == "takehome-0a1b2c3d-ada"


def test_setup_prints_applyable_yaml() -> None:
    from typer.testing import CliRunner

    from grader.cli import app

    result = CliRunner().invoke(app, ["grading-jobs-setup"])
    assert result.exit_code == 0, result.output
    kinds = [d["kind"] for d in yaml.safe_load_all(result.output)]
    assert kinds == ["Namespace", "ServiceAccount", "ClusterRoleBinding"]


def test_in_cluster_kubeconfig_uses_the_pods_service_account(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t0ken")
    (tmp_path / "ca.crt").write_text("CA")
    doc: Any = in_cluster_kubeconfig(tmp_path, {"KUBERNETES_SERVICE_HOST": "10.96.0.1",
                                                "KUBERNETES_SERVICE_PORT": "443"})
    assert doc["clusters"][0]["cluster"]["server"] == "https://10.96.0.1:443"
    assert doc["users"][0]["user"] == {"tokenFile": str(tmp_path / "token")}  # read fresh: tokens rotate
    with pytest.raises(RuntimeError, match="not inside a Kubernetes pod"):
        in_cluster_kubeconfig(tmp_path, {})


# --- the archive ---------------------------------------------------------------------------------

def _report_folder(path: Path, score: float = 97.0, commit: str = "c0ffee1234567890") -> Path:
    path.mkdir(parents=True)
    (path / "report.json").write_text(json.dumps({"status": "completed", "score": score, "max_score": 100.0,
                                                  "candidate": {"commit": commit}}))
    (path / "plots").mkdir()
    (path / "plots" / "drift.png").write_bytes(bytes(range(256)) * 40)
    return path


def test_the_archive_round_trips_through_a_log(tmp_path: Path) -> None:
    src = _report_folder(tmp_path / "out")
    log = "\n".join(["▶ grading ada", "✓ drift (17s)", *cj.pack_reports(src), ""])
    assert cj.progress_lines(log) == ["▶ grading ada", "✓ drift (17s)"]
    assert cj.unpack_reports(log, tmp_path / "back")
    assert (tmp_path / "back" / "plots" / "drift.png").read_bytes() == (src / "plots" / "drift.png").read_bytes()
    assert json.loads((tmp_path / "back" / "report.json").read_text())["score"] == 97.0


def test_a_cut_off_or_hostile_archive_is_not_unpacked(tmp_path: Path) -> None:
    lines = cj.pack_reports(_report_folder(tmp_path / "out"))
    assert not cj.unpack_reports("\n".join(lines[:-3]), tmp_path / "cut")  # the pod died mid-print
    assert not cj.unpack_reports("no archive here", tmp_path / "none")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    text = base64.b64encode(buf.getvalue()).decode()
    assert not cj.unpack_reports("\n".join([cj.ARCHIVE_BEGIN, text, cj.ARCHIVE_END]), tmp_path / "evil")
    assert not (tmp_path / "escaped.txt").exists()


# --- what a Job's status means ---------------------------------------------------------------------

def _cond(kind: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {"status": {"conditions": [{"type": kind, "status": "True", "reason": reason, "message": message}]}}


def _pod(reason: str | None = None, terminated: dict[str, Any] | None = None,
         waiting: dict[str, Any] | None = None) -> dict[str, Any]:
    state = {"terminated": terminated} if terminated else {"waiting": waiting} if waiting else {"running": {}}
    return {"metadata": {"name": "p", "creationTimestamp": "2026-12-04T00:00:00Z"},
            "status": {"reason": reason, "message": "The node was low on resource: memory." if reason else None,
                       "containerStatuses": [{"name": "grader", "state": state}]}}


def test_job_outcomes() -> None:
    assert cj.job_outcome({"status": {"active": 1}}, [_pod()]) is None
    assert cj.job_outcome(_cond("Complete"), [_pod(terminated={"exitCode": 0})])[0] == "succeeded"
    kind, msg = cj.job_outcome(_cond("Failed", "DeadlineExceeded", "Job was active longer than specified"), [])
    assert kind == "timed_out" and "deadline" in msg
    kind, msg = cj.job_outcome(_cond("Failed", "BackoffLimitExceeded"), [_pod("Evicted")])
    assert kind == "evicted" and "low on resource" in msg
    kind, msg = cj.job_outcome(_cond("Failed", "BackoffLimitExceeded"),
                               [_pod(terminated={"exitCode": 137, "reason": "OOMKilled"})])
    assert kind == "failed" and "grading_jobs.memory" in msg
    assert cj.job_outcome(_cond("Failed", "BackoffLimitExceeded"), [_pod(terminated={"exitCode": 3})]) == \
        ("failed", "the grading pod exited 3")
    assert "ImagePullBackOff" in (cj.waiting_problem([_pod(waiting={"reason": "ImagePullBackOff",
                                                                    "message": "no such image"})]) or "")


# --- the collector, against a scripted API -------------------------------------------------------

class _ApiError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status, self.reason = status, "scripted"


class _FakeCluster:
    """Jobs that finish on the second status read, with the pod and log a script gives each."""

    def __init__(self, scripts: dict[str, tuple[dict[str, Any], dict[str, Any], str]]) -> None:
        self.scripts = scripts  # job name -> (finished job, its pod, its log)
        self.jobs: dict[str, int] = {}
        self.created: list[dict[str, Any]] = []
        self.deleted_jobs: list[str] = []
        self.deleted_namespaces: list[str] = []
        self.leftover = {"takehome-0a1b2c3d-bo": ["takehome-run-of-bo"]}

    # BatchV1Api
    def create_namespaced_job(self, namespace: str, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        if name in self.jobs:
            raise _ApiError(409)
        self.jobs[name] = 0
        self.created.append(body)

    def read_namespaced_job_status(self, name: str, namespace: str) -> dict[str, Any]:
        self.jobs[name] += 1
        return self.scripts[name][0] if self.jobs[name] > 1 else {"status": {"active": 1}}

    def delete_namespaced_job(self, name: str, namespace: str, propagation_policy: str) -> None:
        self.deleted_jobs.append(name)

    # CoreV1Api
    def list_namespaced_pod(self, namespace: str, label_selector: str) -> Any:
        return SimpleNamespace(items=[self.scripts[label_selector.split("=", 1)[1]][1]])

    def read_namespaced_pod_log(self, name: str, namespace: str, container: str) -> str:
        return next(log for _job, pod, log in self.scripts.values() if pod["metadata"]["name"] == name)

    def list_namespace(self, label_selector: str) -> Any:
        names = self.leftover.get(label_selector.split("=", 1)[1], [])
        return SimpleNamespace(items=[SimpleNamespace(metadata=SimpleNamespace(name=n)) for n in names])

    def delete_namespace(self, name: str) -> None:
        self.deleted_namespaces.append(name)


def test_the_collector_files_each_jobs_result_and_cleans_up(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("kubernetes.client.exceptions.ApiException", _ApiError)
    done_log = "\n".join(["▶ grading ada", *cj.pack_reports(_report_folder(tmp_path / "src"))])
    ada_pod = {**_pod(terminated={"exitCode": 0}), "metadata": {"name": "ada-pod"}}
    bo_pod = {**_pod("Evicted"), "metadata": {"name": "bo-pod"}}
    fake = _FakeCluster({
        "takehome-0a1b2c3d-ada": (_cond("Complete"), ada_pod, done_log),
        "takehome-0a1b2c3d-bo": (_cond("Failed", "BackoffLimitExceeded"), bo_pod, "▶ grading bo\n✓ drift"),
    })
    grader = ClusterGrader.__new__(ClusterGrader)
    grader.cfg, grader.batch_id, grader.has_config = JOBS.model_copy(update={"poll_s": 0.01}), "0a1b2c3d", False
    grader.core = grader.batch_api = fake
    grader.api = SimpleNamespace(sanitize_for_serialization=lambda obj: obj)
    out = tmp_path / "batch"
    state = BatchState(out)
    entries = [RosterEntry(name="ada", repo="https://git.example/ada.git"),
               RosterEntry(name="bo", repo="https://git.example/bo.git"),
               RosterEntry(name="cy", repo=str(tmp_path))]
    state.sync(entries, resume=False)
    opts = BatchOptions(out_dir=out, cap_s=600)
    seen: list[tuple[str, str]] = []
    for entry in entries:
        grader(state.row(entry.name), opts, state, lambda n, line: seen.append((n, line)), threading.Event())

    ada, bo, cy = state.row("ada"), state.row("bo"), state.row("cy")
    assert (ada.state, ada.status, ada.score, ada.report_dir) == ("done", "completed", 97.0, "ada/c0ffee123456")
    assert (out / "ada" / "c0ffee123456" / "plots" / "drift.png").is_file()
    assert bo.status == "evicted" and "evicted" in (bo.message or "") and bo.score is None
    assert (out / "bo" / "grading.log").read_text().startswith("▶ grading bo")
    assert cy.status == "crashed" and "git URL" in (cy.message or "")  # a local path cannot reach a pod
    assert ("ada", "▶ grading ada") in seen
    assert fake.deleted_jobs == ["takehome-0a1b2c3d-ada", "takehome-0a1b2c3d-bo", "takehome-0a1b2c3d-cy"]
    assert fake.deleted_namespaces == ["takehome-run-of-bo"]  # what the evicted pod could not tear down
    assert [j["spec"]["backoffLimit"] for j in fake.created] == [0, 0]

    # --resume after a SIGKILLed batch: the Job still exists, so the batch waits for it instead of
    # starting a second grading of the same candidate.
    fake.jobs["takehome-0a1b2c3d-ada"] = 0
    state.sync(entries, resume=True)
    state.release("ada")
    created = len(fake.created)
    grader(state.row("ada"), opts, state, lambda n, line: seen.append((n, line)), threading.Event())
    assert len(fake.created) == created and ("ada", "Job takehome-grading/takehome-0a1b2c3d-ada found running") in seen
    assert state.row("ada").score == 97.0
    state.close()
