"""Build what a candidate receives: a folder (``materialize``) or a deterministic archive (``build_archive``).

    python -m assignment.build --flavor sklearn --out dist/

The archive holds the rendered prompt, the contract documents, the two model versions of one
flavour, the reference data, samples, the public traffic sample and the stdlib self-check, plus
``MANIFEST.json`` with the SHA-256 of every file. It holds nothing the grader keeps to itself:
no scenario code or seeds, no grader configuration, no probe set, no reference solution. A guard
checks that before anything is written out, and ``tests/test_assignment.py`` checks it again.
Two builds from the same artifacts are byte-identical (sorted entries, fixed times and owners).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Literal

from assignment import ASSIGNMENT_DIR

Flavor = Literal["sklearn", "torch"]
FLAVORS: tuple[str, ...] = ("sklearn", "torch")

#: Files of one model version, per flavour, as named in the artifacts (``models/<flavor>/<version>/``).
MODEL_FILES: dict[str, tuple[str, ...]] = {"sklearn": ("model.joblib",), "torch": ("model.pt2", "preprocessing.json")}
#: Libraries the model files need at load time, pinned in ``requirements-model.txt``.
MODEL_LIBRARIES: dict[str, tuple[str, ...]] = {"sklearn": ("scikit-learn", "joblib", "numpy", "pandas"),
                                               "torch": ("torch", "numpy")}
REFERENCE_DATA_FILES: tuple[str, ...] = ("reference_sample.csv", "schema.json", "summary.json")
#: Copied as they are from ``assignment/``.
STATIC_FILES: tuple[str, ...] = ("takehome.example.yaml", "selfcheck.py")
EXECUTABLES: frozenset[str] = frozenset({"selfcheck.py"})
MANIFEST_FILE = "MANIFEST.json"
REQUIREMENTS_FILE = "requirements-model.txt"
#: Every entry of the archive carries this time (2024-01-01T00:00:00Z) so builds are reproducible.
FIXED_MTIME = 1_704_067_200
#: Folders of this repository whose files must never be shipped.
PRIVATE_DIRS: tuple[str, ...] = ("grader", "calibration")


class ArchiveError(Exception):
    """The archive cannot be built (missing artifacts, a flavour that was not built, a leak)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _copy(src: Path, dst: Path) -> Path:
    if not src.is_file():
        raise ArchiveError(f"missing input file {src}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _requirement(name: str, version: str) -> str:
    # A local build tag ("2.13.0+cpu") only resolves on the vendor's index: pin the public version.
    return f"{name}=={version.split('+', 1)[0]}"


def requirements_text(flavor: Flavor, libraries: dict[str, str]) -> str:
    """``requirements-model.txt``: exact versions of what the model files need to load."""
    lines = ["# Exact versions the model files were built with. Loading them with other versions may",
             "# fail or change predictions; the grader compares your predictions with these."]
    if flavor == "torch":
        lines.append("# A CPU build is enough: pip install -r requirements-model.txt "
                     "--extra-index-url https://download.pytorch.org/whl/cpu")
    for name in MODEL_LIBRARIES[flavor]:
        version = libraries.get(name)
        if not version or version == "not installed":
            raise ArchiveError(f"the artifact manifest records no version of {name}")
        lines.append(_requirement(name, version))
    return "\n".join(lines) + "\n"


def _model_info(flavor: Flavor, source: dict[str, Any]) -> dict[str, Any]:
    """What MANIFEST.json says about the models, copied from the artifact manifest (no seeds, no times)."""
    libraries = source.get("libraries", {})
    return {
        "flavor": flavor,
        "versions": source["versions"],
        "current_version": source.get("current_version"),
        "previous_version": source.get("previous_version"),
        "features": source.get("features"),
        "files": {v: [f"models/{v}/{name}" for name in MODEL_FILES[flavor]] for v in source["versions"]},
        "holdout_metrics": source.get("holdout_metrics", {}).get(flavor, {}),
        "libraries": {name: libraries[name] for name in ("python", *MODEL_LIBRARIES[flavor]) if name in libraries},
    }


def _private_hashes() -> dict[str, str]:
    """SHA-256 -> path of every file the candidate must never receive (grader, calibration)."""
    from reference_model.paths import REPO_ROOT

    out: dict[str, str] = {}
    for folder in PRIVATE_DIRS:
        for path in (REPO_ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.stat().st_size > 0:
                out[_sha256(path)] = path.relative_to(REPO_ROOT).as_posix()
    return out


def check_nothing_hidden(root: Path) -> None:
    """Raise ``ArchiveError`` if a file under ``root`` is a private file or carries the grader's seed."""
    from grader.config import DEFAULTS_PATH, FALLBACK_SEED

    needles = [str(FALLBACK_SEED).encode(), f"{FALLBACK_SEED:_}".encode(), f"{FALLBACK_SEED:,}".encode()]
    private = _private_hashes()
    private[_sha256(DEFAULTS_PATH)] = "grader/defaults.yaml"
    problems = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel, digest = path.relative_to(root).as_posix(), _sha256(path)
        if digest in private:
            problems.append(f"{rel} is a copy of {private[digest]}")
        data = path.read_bytes()
        if any(n in data for n in needles):
            problems.append(f"{rel} contains the grader's fallback seed")
    if problems:
        raise ArchiveError("refusing to ship grader-only material:\n" + "\n".join(f"  - {p}" for p in problems))


def materialize(dest: Path, flavor: Flavor, artifacts_dir: Path | None = None, *,
                config_path: Path | None = None) -> list[Path]:
    """Write exactly what a candidate receives into ``dest`` (created; must be empty). Returns the files.

    ``artifacts_dir`` defaults to the project's artifacts (built on first use). ``config_path``
    is a hiring team's grader configuration: the prompt then states their volumes and weights.
    """
    from assignment.docs import render_contract, render_prompt
    from assignment.schema import schema_text
    from harness.traffic.public import write_public_sample
    from reference_model.manifest import read_manifest
    from reference_model.paths import ensure_artifacts

    if flavor not in FLAVORS:
        raise ArchiveError(f"unknown flavor {flavor!r} (expected one of {', '.join(FLAVORS)})")
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ArchiveError(f"{dest} is not empty: materialize writes into a new or empty folder")
    src = ensure_artifacts(artifacts_dir)
    source = read_manifest(src)
    if flavor not in source.get("flavors", []):
        raise ArchiveError(f"the artifacts in {src} have no {flavor} flavour (built: {source.get('flavors')}); "
                           f"rebuild them with python -m reference_model.build --out {src} --flavor all")
    dest.mkdir(parents=True, exist_ok=True)
    written = [
        _write(dest / "README.md", render_prompt(flavor, config_path)),
        _write(dest / "CONTRACT.md", render_contract()),
        _write(dest / "takehome.schema.json", schema_text()),
        _write(dest / REQUIREMENTS_FILE, requirements_text(flavor, source.get("libraries", {}))),
    ]
    written += [_copy(ASSIGNMENT_DIR / name, dest / name) for name in STATIC_FILES]
    examples = ASSIGNMENT_DIR / "examples"
    written += [_copy(p, dest / "examples" / p.relative_to(examples)) for p in sorted(examples.rglob("*"))
                if p.is_file() and "__pycache__" not in p.parts]
    for version in source["versions"]:
        written += [_copy(src / "models" / flavor / version / name, dest / "models" / version / name)
                    for name in MODEL_FILES[flavor]]
    written += [_copy(src / "profile" / name, dest / "reference_data" / name) for name in REFERENCE_DATA_FILES]
    written.append(_copy(src / "samples" / "request.json", dest / "samples" / "request.json"))
    response = f"response_v2_{flavor}.json"
    written.append(_copy(src / "samples" / response, dest / "samples" / response))
    from grader.config import load_config

    played = load_config(config_path).traffic.scenarios  # the README names exactly what the grader plays
    written += [Path(p) for p in write_public_sample(dest / "public_traffic", list(played))]
    (dest / "selfcheck.py").chmod(0o755)
    files = {p.relative_to(dest).as_posix(): {"sha256": _sha256(p), "bytes": p.stat().st_size}
             for p in sorted(written)}
    manifest = {"format_version": 1, "archive": f"takehome-{flavor}", "model": _model_info(flavor, source),
                "requirements": REQUIREMENTS_FILE, "files": dict(sorted(files.items()))}
    written.append(_write(dest / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n"))
    check_nothing_hidden(dest)
    return sorted(written)


def _tarinfo(name: str, path: Path) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if path.is_dir():
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size = path.stat().st_size
        info.mode = 0o755 if path.name in EXECUTABLES else 0o644
    return info


def write_tar_gz(root: Path, top: str, target: Path) -> None:
    """Archive ``root`` as ``top/...`` into ``target``: sorted entries, fixed metadata, gzip mtime 0."""
    entries = sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix())
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            tar.addfile(_tarinfo(top, root))
            for path in entries:
                info = _tarinfo(f"{top}/{path.relative_to(root).as_posix()}", path)
                if path.is_dir():
                    tar.addfile(info)
                else:
                    with path.open("rb") as fh:
                        tar.addfile(info, fh)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def build_archive(flavor: Flavor, out_dir: Path, artifacts_dir: Path | None = None, *,
                  config_path: Path | None = None) -> Path:
    """Write ``out_dir/takehome-<flavor>.tar.gz`` (top-level folder ``takehome-<flavor>/``); return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    top = f"takehome-{flavor}"
    with tempfile.TemporaryDirectory(prefix="takehome-archive-") as tmp:
        root = Path(tmp) / top
        materialize(root, flavor, artifacts_dir, config_path=config_path)
        target = out_dir / f"{top}.tar.gz"
        write_tar_gz(root, top, target)
    return target


def archive_members(path: Path) -> list[str]:
    """Names of the regular files in an archive, relative to its top-level folder, sorted."""
    with tarfile.open(path, "r:gz") as tar:
        return sorted(m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile())


def main(argv: list[str] | None = None) -> int:
    """CLI: build one flavour's archive and print its path, size and file count."""
    parser = argparse.ArgumentParser(prog="python -m assignment.build", description=__doc__.splitlines()[0])
    parser.add_argument("--flavor", choices=FLAVORS, required=True)
    parser.add_argument("--out", type=Path, default=Path("dist"), help="output folder (default: %(default)s)")
    parser.add_argument("--artifacts", type=Path, default=None, help="reference artifacts (default: built on use)")
    parser.add_argument("--config", type=Path, default=None, help="the hiring team's grader config, if any")
    args = parser.parse_args(argv)
    from grader.config import ConfigError

    try:
        path = build_archive(args.flavor, args.out, args.artifacts, config_path=args.config)
    except (ArchiveError, ConfigError) as exc:
        print(f"assignment.build: {exc}", file=sys.stderr)
        return 1
    print(f"{path}  {path.stat().st_size:,} bytes  {len(archive_members(path))} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
