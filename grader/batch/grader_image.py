"""``make grader-image``: build the image the grading Jobs of ``takehome batch --on-cluster`` run.

The build context is assembled here, not sent from the working tree: the kit's files as git
tracks them (no reports, venvs or caches) under ``kit/``, and the reference artifacts this machine
built under ``artifacts/``. Built with the Docker SDK on the docker runtime's base image (the
offline ``python:3.11-slim`` stand-in where the official one cannot be pulled).
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "k8s" / "grader-image" / "Dockerfile"
DEFAULT_TAG = "takehome-grader:latest"


def tracked_files(root: Path = ROOT) -> list[Path]:
    """The kit's files as git tracks them (falls back to the package folders outside a checkout)."""
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True,
                             timeout=60).stdout.decode()
        return [root / p for p in out.split("\0") if p and (root / p).is_file()]
    except (OSError, subprocess.SubprocessError):
        keep = ("grader", "harness", "reference_model", "assignment", "calibration", "k8s")
        return [p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] in keep
                or p.name in ("pyproject.toml", "README.md")]


def build_context(artifacts: Path, root: Path = ROOT) -> bytes:
    """The tar the Docker engine builds from: Dockerfile, kit/, artifacts/."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(DOCKERFILE, arcname="Dockerfile")
        for path in tracked_files(root):
            tar.add(path, arcname=f"kit/{path.relative_to(root).as_posix()}", recursive=False)
        for path in sorted(p for p in artifacts.rglob("*") if p.is_file()):
            tar.add(path, arcname=f"artifacts/{path.relative_to(artifacts).as_posix()}", recursive=False)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.batch.grader_image", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", default=DEFAULT_TAG, help=f"image tag (default {DEFAULT_TAG}); push it where "
                        "the cluster's nodes pull from and name it in grading_jobs.image")
    parser.add_argument("--with-torch", action="store_true", help="add torch 2.13.0 (grading the torch flavour)")
    args = parser.parse_args(argv)
    import docker
    import docker.errors

    from grader.config import load_config
    from harness.runtimes.docker_images import ensure_base_image
    from reference_model.paths import ensure_artifacts

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        print(f"error: no Docker engine: {exc}", file=sys.stderr)
        return 4
    ensure_base_image(client, load_config(None).local.resolved_cache_dir(), lambda m: print(m, file=sys.stderr))
    context = build_context(ensure_artifacts())
    print(f"building {args.tag} from a {len(context) / 2**20:.1f} MB context", file=sys.stderr)
    try:
        for chunk in client.api.build(fileobj=io.BytesIO(context), custom_context=True, tag=args.tag, rm=True,
                                      pull=False, decode=True,
                                      buildargs={"WITH_TORCH": "1" if args.with_torch else "0"}):
            if "stream" in chunk:
                sys.stderr.write(chunk["stream"])
            if "error" in chunk:
                print(f"error: the build failed: {chunk['error']}", file=sys.stderr)
                return 1
    except docker.errors.APIError as exc:
        print(f"error: the build failed: {exc}", file=sys.stderr)
        return 1
    print(f"built {args.tag}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
