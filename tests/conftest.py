"""Shared fixtures. ``docker_engine``: a reachable Docker engine, or a skip saying how to get one."""

from __future__ import annotations

from collections.abc import Iterator
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
