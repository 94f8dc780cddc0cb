"""The candidate's image for the kind runtime, built exactly as the docker runtime builds it.

Reuses the docker runtime's pieces (``docker_ops.build_image``: classic builder, no pull, a
deadline that cancels the build; ``docker_images.ensure_base_image``: the offline
``python:3.11-slim`` stand-in), so a Dockerfile that builds on one runtime builds on the other.
The image carries the docker runtime's labels (on a thin child image, as there), so its
``cleanup_stale`` also finds leftovers.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from harness.errors import GraderFault, SubmissionError
from harness.runtimes.base import RuntimeContext, clip

#: Same cap as the docker runtime: a context above it is refused before anything is sent.
CONTEXT_CAP_BYTES = 200 * 2**20
_FROM = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)", re.IGNORECASE | re.MULTILINE)


def split_ref(ref: str) -> tuple[str, str]:
    """``repo:tag`` of an image reference (``latest`` when it has no tag)."""
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, _, tag = ref.rpartition(":")
        return repo, tag
    return ref, "latest"


def _inside(repo: Path, rel: str, what: str, want_dir: bool) -> Path:
    path = (repo / rel).resolve()
    if Path(rel).is_absolute() or not path.is_relative_to(repo):
        raise SubmissionError(f"runtimes.kind.{what} ({rel!r}) points outside the repository; name a path inside it")
    if not (path.is_dir() if want_dir else path.is_file()):
        raise SubmissionError(f"takehome.yaml names {rel!r} as runtimes.kind.{what}, but the repository has no such "
                              f"{'directory' if want_dir else 'file'}")
    return path


def build_candidate_image(repo: Path, dockerfile_rel: str, context_rel: str, tag: str, ctx: RuntimeContext,
                          log_path: Path) -> dict[str, object]:
    """Build the candidate's Dockerfile as ``tag``; returns build facts. SubmissionError with the log tail."""
    import docker
    import docker.errors

    from harness.runtimes import docker_build as dbuild
    from harness.runtimes.docker_images import ALIASES, ensure_base_image
    from harness.runtimes.docker_ops import run_labels

    started = time.monotonic()
    dockerfile = _inside(repo, dockerfile_rel, "dockerfile", want_dir=False)
    context = _inside(repo, context_rel, "context", want_dir=True)
    rel_df = dockerfile.relative_to(context).as_posix() if dockerfile.is_relative_to(context) else "Dockerfile"
    size, files, too_big = dbuild.measure_context(context, rel_df, CONTEXT_CAP_BYTES)
    if too_big:
        raise SubmissionError(f"the docker build context ({context_rel}) is over {CONTEXT_CAP_BYTES // 2**20} MB "
                              f"after .dockerignore ({files} files counted so far); leave data out with a .dockerignore")
    try:
        client = docker.from_env(timeout=120)
        api_version = client.api.api_version
    except docker.errors.DockerException as exc:
        raise GraderFault(f"docker: connecting to the engine failed: {exc}") from None
    froms = _FROM.findall(dockerfile.read_text(errors="replace"))
    try:
        base: dict[str, object] = ensure_base_image(client, ctx.config.local.resolved_cache_dir(), ctx.progress)
    except GraderFault as exc:
        wanted = [ref for ref in froms if ref in ALIASES]
        if wanted and not _pulled(client, wanted[0], ctx):
            raise
        ctx.progress(f"note: the python:3.11-slim stand-in is unavailable ({exc}); building anyway")
        base = {"source": "pulled" if wanted else "unavailable", "error": str(exc)}
    command = f"docker build --pull=false -f {dockerfile_rel} -t {tag} {context_rel}"
    ctx.progress(f"kind: {command} ...")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    layers: str | None = None
    with open(log_path, "a", encoding="utf-8") as log:
        def on_line(line: str) -> None:
            log.write(line)
            log.flush()

        try:
            outcome = dbuild.build_image(api_version, context=context, dockerfile=dockerfile,
                                         timeout_s=ctx.config.timeouts.build, on_line=on_line)
            layers = outcome.image_id
            if outcome.error is None and layers:
                # The run's labels go on a thin child image (tagged ``tag``): the candidate's own
                # layers stay untouched as the build cache of the next grading.
                outcome.image_id = dbuild.label_image(client, layers, tag, run_labels(ctx.run_id, "candidate-image"))
        except docker.errors.DockerException as exc:
            raise GraderFault(f"docker: build failed: {exc}", command=command) from None
    text = outcome.text()
    if outcome.error:
        hint = ""
        last_step = next((line for line in reversed(outcome.log) if line.startswith("Step ")), "")
        if " : FROM " in last_step.upper() or "pull access denied" in outcome.error:
            hint = f"\n(the base image is not on this machine and is never pulled: use e.g. {' or '.join(ALIASES)})"
        raise SubmissionError(f"docker build failed: {outcome.error}{hint}", command=command,
                              details="build log (tail):\n" + clip(text, 8000)[-8000:])
    return {"image": tag, "image_id": outcome.image_id, "candidate_layers_id": layers, "base_image": base,
            "context_bytes": size,
            "context_files": files, "steps": outcome.steps, "cache_hits": outcome.cache_hits,
            "seconds": round(time.monotonic() - started, 2), "log": clip(text, 8000)}


def _pulled(client: Any, ref: str, ctx: RuntimeContext) -> bool:
    """Pull ``ref`` where a registry is reachable (a laptop without root cannot build the stand-in)."""
    try:
        ctx.progress(f"kind: pulling {ref} (the offline stand-in cannot be built here) ...")
        client.images.pull(*split_ref(ref))
        return True
    except Exception:  # noqa: BLE001 - no registry: the caller reports the stand-in's failure
        return False


def tag_alias(image: str, alias: str) -> None:
    """Tag ``image`` also as ``alias`` (the contract's image placeholder) on the host engine."""
    import docker

    client = docker.from_env(timeout=60)
    client.images.get(image).tag(*split_ref(alias))


def remove_images(refs: list[str], own: str) -> list[str]:
    """Remove ``refs`` from the host engine; an alias only while it still points at ``own``. Never raises."""
    removed: list[str] = []
    try:
        import docker
        import docker.errors

        client: Any = docker.from_env(timeout=60)
        try:
            own_id = client.images.get(own).id
        except docker.errors.DockerException:
            own_id = None
        for ref in refs:
            try:
                if ref != own and client.images.get(ref).id != own_id:
                    continue  # the placeholder now names another run's image: leave it
                client.images.remove(ref, noprune=True)  # the tag only; layers stay as build cache
                removed.append(ref)
            except docker.errors.DockerException:
                continue
    except Exception:  # noqa: BLE001 - teardown goes on
        pass
    return removed
