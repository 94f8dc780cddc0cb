"""Shared fixtures. ``docker_engine``: a reachable Docker engine, or a skip saying how to get one."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Any]:
    """A ``docker.DockerClient`` connected to a live engine; skips the test when there is none."""
    try:
        import docker

        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: no usable engine here
        pytest.skip(f"no Docker engine reachable ({type(exc).__name__}); run `sudo bash .ci/install-docker.sh` "
                    "to install and start one")
    yield client
    client.close()


@pytest.fixture(scope="session")
def kind_cluster() -> Iterator[Any]:
    """The kind cluster the kind runtime uses (created if missing, deleted at the end if this made
    it); skips, saying why, where kind cannot run or no cluster can be created (no node image)."""
    import os

    from harness.errors import GraderFault
    from harness.runtimes.kind import KindRuntime
    from harness.runtimes.kube_cluster import KindCluster

    ok, why = KindRuntime.is_available()
    if not ok:
        pytest.skip(f"the kind runtime cannot run here: {why}")
    cluster = KindCluster()
    try:
        created = cluster.ensure()
    except GraderFault as exc:
        pytest.skip(f"a kind cluster cannot be created here (no node image can be pulled?): {exc.describe()[-800:]}")
    yield cluster
    if created and os.environ.get("TAKEHOME_KEEP_CLUSTER") != "1":
        cluster.delete()


@pytest.fixture
def read_progress_until() -> Callable[[subprocess.Popen[str], str, float], str]:
    """A reader of a grader subprocess's progress (its stderr) up to the first line holding a
    needle, or EOF, or a time limit; returns what it read (the caller asserts the needle is in it)."""
    def read(proc: subprocess.Popen[str], needle: str, timeout_s: float) -> str:
        assert proc.stderr is not None
        seen = ""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            seen += line
            if needle in line or not line:
                break
        return seen

    return read
