"""Inside a grading Job's pod: a kubeconfig for the pod's ServiceAccount, so the kubernetes
runtime (which reads a kubeconfig, as it does on a team's machine) works unchanged in the pod."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def in_cluster_kubeconfig(sa_dir: Path = SA_DIR, env: dict[str, str] | None = None) -> dict[str, object]:
    """The kubeconfig document: the API server from the pod's environment, the token and CA
    of the mounted ServiceAccount. ``RuntimeError`` outside a pod."""
    env = dict(os.environ if env is None else env)
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
    token, ca = sa_dir / "token", sa_dir / "ca.crt"
    if not host or not token.is_file() or not ca.is_file():
        raise RuntimeError("not inside a Kubernetes pod with a ServiceAccount token: job-run is the entry point "
                           "of takehome batch --on-cluster's Jobs; run takehome grade elsewhere")
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    return {"apiVersion": "v1", "kind": "Config", "current-context": "in-cluster",
            "clusters": [{"name": "in-cluster", "cluster": {"server": server, "certificate-authority": str(ca)}}],
            "users": [{"name": "grader", "user": {"tokenFile": str(token)}}],
            "contexts": [{"name": "in-cluster", "context": {"cluster": "in-cluster", "user": "grader"}}]}


def write_in_cluster_kubeconfig(path: Path, sa_dir: Path = SA_DIR) -> Path:
    """Write :func:`in_cluster_kubeconfig` to ``path`` (mode 0600) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(in_cluster_kubeconfig(sa_dir)), encoding="utf-8")
    path.chmod(0o600)
    return path
