"""The base image of the docker runtime, made without a registry when it has to be.

Candidates' Dockerfiles start ``FROM python:3.11-slim``. Where that image is present (pulled by
the user, or loaded from a tarball) it is used as it is. Where it is absent and no registry can
be reached, as on the machines this kit is built on, the grader builds a **stand-in**: Debian
bookworm made by ``debootstrap --variant=minbase`` with Debian's Python 3.11, venv, pip and CA
certificates, imported with ``docker import`` and tagged ``takehome/python-base:3.11-bookworm``
and ``python:3.11-slim``. It behaves like the official image for ordinary Dockerfiles
(``pip install`` works system-wide, ``python``/``pip`` are on PATH, ``CMD ["python3"]``); the
interpreter lives in /usr/bin rather than /usr/local/bin.

The debootstrap root file system is built once per machine (about a minute) and cached as a
tarball under ``<cache dir>/images/``; importing it takes seconds. The host's CA bundle is
layered on at import, because package downloads from inside a container may go through a
TLS-intercepting proxy whose CA only the host trusts.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness.errors import GraderFault
from harness.locks import exclusive_lock

#: The stand-in's own name, and the official names it stands in for when they are absent.
BASE_REPOSITORY, BASE_TAG = "takehome/python-base", "3.11-bookworm"
BASE_IMAGE = f"{BASE_REPOSITORY}:{BASE_TAG}"
ALIASES = ("python:3.11-slim", "python:3.11-slim-bookworm")
#: Label of the base image: never removed by teardown or cleanup_stale (it is shared by runs).
KIND_LABEL = "takehome.kind"
BASE_KIND = "base-image"

BUILD_SCRIPT = Path(__file__).resolve().parent.parent / "images" / "build-rootfs.sh"
#: Where the bundle goes inside the image: the Debian default, plus a copy that survives a
#: candidate's ``update-ca-certificates`` (which regenerates the bundle from this directory).
IMAGE_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
IMAGE_CA_EXTRA = "usr/local/share/ca-certificates/takehome-host-bundle.crt"
#: debootstrap downloads ~60 MB of packages; generous for a slow mirror.
ROOTFS_TIMEOUT_S = 900.0


def host_ca_bundle() -> Path | None:
    """The CA bundle this machine's own pip and requests trust (it includes any intercepting proxy's CA)."""
    for name in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        value = os.environ.get(name)
        if value and Path(value).is_file():
            return Path(value)
    for path in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"):
        if Path(path).is_file():
            return Path(path)
    return None


def recipe_digest() -> str:
    """Identifies the root file system recipe: a changed build script means a new cached tarball."""
    return hashlib.sha256(BUILD_SCRIPT.read_bytes()).hexdigest()[:16]


def _file_digest(path: Path | None) -> str:
    return "none" if path is None else hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def rootfs_tarball(cache_dir: Path, progress: Callable[[str], None] = lambda _m: None,
                   mirror: str | None = None) -> Path:
    """The cached debootstrap root file system (built on first use; needs root and debootstrap)."""
    images = cache_dir / "images"
    out = images / f"rootfs-bookworm-{recipe_digest()}.tar"
    with exclusive_lock(images / "rootfs.lock", ROOTFS_TIMEOUT_S + 60, "building the base image", poll_s=0.5):
        if out.is_file():
            return out
        if shutil.which("debootstrap") is None:
            raise GraderFault("python:3.11-slim is not present and cannot be pulled here; building the stand-in "
                              "needs debootstrap: run .ci/install-docker.sh (or apt-get install debootstrap), "
                              "or load the official image with `docker load`")
        if os.geteuid() != 0:
            raise GraderFault("python:3.11-slim is not present; building the stand-in with debootstrap needs "
                              "root: run the grader once as root, or `docker pull python:3.11-slim` where a "
                              "registry is reachable")
        progress("building the python:3.11-slim stand-in with debootstrap (once per machine, ~1-2 min) ...")
        log = images / "rootfs-build.log"
        argv = ["bash", str(BUILD_SCRIPT), str(out)] + ([mirror] if mirror else [])
        started = time.monotonic()
        with open(log, "wb") as fh:
            try:
                code = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                      timeout=ROOTFS_TIMEOUT_S, check=False).returncode
            except subprocess.TimeoutExpired:
                code = None
        if code != 0 or not out.is_file():
            why = "timed out" if code is None else f"exited with code {code}"
            tail = log.read_text(errors="replace")[-4000:]
            raise GraderFault(f"building the base image root file system {why}", command=" ".join(argv),
                              details=tail)
        progress(f"root file system built in {time.monotonic() - started:.0f}s: {out}")
        return out


def _tar_with_ca(rootfs: Path, bundle: Path | None, dest: Path) -> None:
    """Copy of ``rootfs`` with the host's CA bundle where pip, requests and openssl look.

    The archive is rewritten member by member rather than appended to, because the engine
    refuses a layer that holds the same path twice.
    """
    if bundle is None:
        shutil.copyfile(rootfs, dest)
        return
    data = bundle.read_bytes()
    replaced = {IMAGE_CA_BUNDLE.lstrip("/"), IMAGE_CA_EXTRA}
    with tarfile.open(rootfs, "r:") as src, tarfile.open(dest, "w:", format=tarfile.PAX_FORMAT) as out:
        for member in src:
            if member.name.removeprefix("./") in replaced:
                continue
            out.addfile(member, src.extractfile(member) if member.isreg() else None)
        for name in sorted(replaced):
            info = tarfile.TarInfo(f"./{name}")
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            out.addfile(info, io.BytesIO(data))


def _import_changes(labels: dict[str, str]) -> list[str]:
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           "PIP_CERT": IMAGE_CA_BUNDLE, "SSL_CERT_FILE": IMAGE_CA_BUNDLE, "REQUESTS_CA_BUNDLE": IMAGE_CA_BUNDLE}
    return ([f"ENV {k}={v}" for k, v in env.items()]
            + [f'LABEL {k}="{v}"' for k, v in labels.items()]
            + ['CMD ["python3"]'])


def _labels_of(client: object, ref: str) -> dict[str, str] | None:
    """Labels of image ``ref``; None when it is absent."""
    import docker.errors

    try:
        image = client.images.get(ref)  # type: ignore[attr-defined]
    except docker.errors.ImageNotFound:
        return None
    return dict(image.labels or {})


def ensure_base_image(client: object, cache_dir: Path, progress: Callable[[str], None] = lambda _m: None,
                      ) -> dict[str, object]:
    """Make sure ``python:3.11-slim`` exists locally; build the stand-in when it does not.

    Returns facts for the build report: ``source`` (``present``: an image not made by us, e.g. the
    official one; ``cached``: our stand-in, already imported; ``imported``: just imported),
    ``image``, and ``seconds``. Raises GraderFault when the stand-in cannot be made.
    """
    import docker.errors

    started = time.monotonic()
    bundle = host_ca_bundle()
    want = {KIND_LABEL: BASE_KIND, "takehome.base.recipe": recipe_digest(), "takehome.base.ca": _file_digest(bundle)}
    current = _labels_of(client, ALIASES[0])
    if current is not None and current.get(KIND_LABEL) != BASE_KIND:
        return {"source": "present", "image": ALIASES[0], "seconds": round(time.monotonic() - started, 2)}
    base = _labels_of(client, BASE_IMAGE)
    if base is not None and all(base.get(k) == v for k, v in want.items()):
        _point_aliases(client)
        return {"source": "cached", "image": BASE_IMAGE, "seconds": round(time.monotonic() - started, 2)}
    rootfs = rootfs_tarball(cache_dir, progress)
    progress(f"importing {rootfs.name} as {BASE_IMAGE} (host CA bundle: {bundle or 'none found'}) ...")
    with tempfile.TemporaryDirectory(prefix="takehome-base-") as tmp:
        tar_path = Path(tmp) / "rootfs.tar"
        _tar_with_ca(rootfs, bundle, tar_path)
        try:
            client.api.import_image(src=str(tar_path), repository=BASE_REPOSITORY, tag=BASE_TAG,  # type: ignore[attr-defined]
                                    changes=_import_changes(want))
        except docker.errors.DockerException as exc:
            raise GraderFault(f"docker import of the base image failed: {exc}",
                              command=f"docker import {tar_path} {BASE_IMAGE}") from None
    _point_aliases(client)
    progress(f"base image ready: {BASE_IMAGE} = {', '.join(ALIASES)} (stand-in built from Debian packages)")
    return {"source": "imported", "image": BASE_IMAGE, "rootfs": str(rootfs), "ca_bundle": str(bundle),
            "seconds": round(time.monotonic() - started, 2)}


def _point_aliases(client: object) -> None:
    """Tag the stand-in as every alias that is absent or an older stand-in; never over an official image."""
    image = client.images.get(BASE_IMAGE)  # type: ignore[attr-defined]
    for alias in ALIASES:
        labels = _labels_of(client, alias)
        if labels is None or labels.get(KIND_LABEL) == BASE_KIND:
            repo, tag = alias.split(":")
            image.tag(repo, tag)
