"""Build every reference artifact: data splits, both model versions per flavour, profile, probe, manifest.

``python -m reference_model.build --out build/artifacts [--flavor sklearn|torch|all] [--seed N]``

The build happens in a staging folder next to ``out_dir`` and is moved into place only after the
evaluation contract passes and the manifest is written, so ``out_dir`` never holds a half-built or
failing set of artifacts. A contract violation raises :class:`ContractViolation` (exit code 1).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reference_model import artifacts, schema
from reference_model.data import DEFAULT_SPLIT_SIZES, make_splits
from reference_model.evaluate import (
    DEFAULT_CONTRACT_PATH,
    ContractViolation,
    EvalContract,
    check_contract,
    compute_metrics,
    load_contract,
    probe_disagreement,
)
from reference_model.manifest import MANIFEST_NAME, library_versions, sha256_file, write_manifest
from reference_model.predictors import FLAVORS, VERSIONS, SklearnPredictor, TorchPredictor

DEFAULT_SEED = 20261123
Log = Callable[[str], None]


def _stderr_logger() -> Log:
    start = time.monotonic()

    def log(msg: str) -> None:
        print(f"[build {time.monotonic() - start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    return log


def _train_flavor(flavor: str, version: str, train: Any, seed: int, staging: Path) -> Any:
    """Train and save one model; return a predictor loaded back from the saved files."""
    model_dir = staging / "models" / flavor / version
    if flavor == "sklearn":
        from reference_model import sklearn_models

        sklearn_models.save(sklearn_models.train(version, train, seed), model_dir / "model.joblib")
        return SklearnPredictor(model_dir / "model.joblib", version)
    from reference_model import torch_model  # lazily: imports torch

    model, spec = torch_model.train(version, train, seed)
    torch_model.export(model, spec, model_dir)
    # Expected predictions come from the exported program, exactly what a server would load.
    return TorchPredictor(model_dir, version)


def _install(staging: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` with ``staging``; refuse to delete a folder that is not an artifact set."""
    if out_dir.exists():
        if any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).is_file():
            raise FileExistsError(f"{out_dir} exists, is not empty and holds no {MANIFEST_NAME}: not replacing it")
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        out_dir.rename(old)
        staging.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out_dir)


def build_artifacts(
    out_dir: Path,
    seed: int = DEFAULT_SEED,
    flavors: Sequence[str] = FLAVORS,
    *,
    contract: EvalContract | Path | str | None = None,
    split_sizes: dict[str, int] | None = None,
    log: Log | None = None,
) -> dict[str, Any]:
    """Build all artifacts into ``out_dir`` and return a summary (metrics, probe disagreement, timing).

    ``contract`` defaults to the packaged ``eval_contract.yaml``; ``split_sizes`` (train /
    validation / holdout rows) defaults to ``data.DEFAULT_SPLIT_SIZES``. Raises
    ``ContractViolation`` when any model misses the contract; ``out_dir`` is then left untouched.
    """
    t0 = time.monotonic()
    log = log or _stderr_logger()
    flavors = tuple(dict.fromkeys(flavors))
    unknown = [f for f in flavors if f not in FLAVORS]
    if unknown or not flavors:
        raise ValueError(f"flavors must be a non-empty subset of {FLAVORS}, got {flavors}")
    if not isinstance(contract, EvalContract):
        contract_path = Path(contract) if contract is not None else DEFAULT_CONTRACT_PATH
        contract = load_contract(contract_path)
    sizes = dict(DEFAULT_SPLIT_SIZES if split_sizes is None else split_sizes)
    out_dir = Path(out_dir).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.with_name(f".{out_dir.name}.building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        log(f"seed {seed}, flavors {', '.join(flavors)}, splits {sizes}")
        splits = make_splits(seed, sizes)
        for name, frame in splits.items():
            artifacts.write_csv(frame, staging / "data" / f"{name}.csv")
        train, holdout = splits["train"], splits[contract.split]
        probe = artifacts.make_probe_set(seed)
        log(f"data written: {', '.join(f'{k}={len(v)}' for k, v in splits.items())}, base rate "
            f"{train[schema.LABEL].mean():.3f}")

        metrics: dict[str, dict[str, dict[str, float]]] = {}
        expected: dict[str, dict[str, list[float]]] = {}
        for flavor in flavors:
            metrics[flavor], expected[flavor] = {}, {}
            for version in VERSIONS:
                t = time.monotonic()
                predictor = _train_flavor(flavor, version, train, seed, staging)
                metrics[flavor][version] = m = compute_metrics(holdout[schema.LABEL], predictor.predict_proba(holdout))
                expected[flavor][version] = [float(p) for p in predictor.predict_proba(probe)]
                log(f"{flavor}/{version}: trained in {time.monotonic() - t:.1f}s, holdout roc_auc "
                    f"{m['roc_auc']:.4f} pr_auc {m['pr_auc']:.4f} brier {m['brier']:.4f}")
        disagreement = {f: probe_disagreement(expected[f]["v1"], expected[f]["v2"]) for f in flavors}

        violations = check_contract(contract, metrics, disagreement)
        if violations:
            for v in violations:
                log(f"CONTRACT VIOLATION {v}")
            raise ContractViolation(violations)
        log("evaluation contract met")

        thresholds = {f: {v: contract.thresholds_for(f, v).model_dump() for v in VERSIONS} for f in flavors}
        eval_doc = {"split": contract.split, "passed": True, "metrics": metrics,
                    "probe_disagreement": disagreement, "thresholds": thresholds,
                    "contract": contract.model_dump()}
        artifacts.write_json(eval_doc, staging / "eval" / "metrics.json")
        artifacts.write_probe(staging, probe, expected)
        artifacts.write_samples(staging, probe, expected)
        artifacts.write_profile(staging, train, seed)

        train_sha = sha256_file(staging / "data" / "train.csv")
        meta = {
            "seed": seed,
            "versions": list(VERSIONS),
            "current_version": "v2",
            "previous_version": "v1",
            "flavors": list(flavors),
            "features": list(schema.FEATURES),
            "split_sizes": sizes,
            "training_data": {"path": "data/train.csv", "sha256": train_sha, "rows": len(train)},
            "libraries": library_versions(with_torch="torch" in flavors),
            "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "holdout_metrics": metrics,
            "probe_disagreement": disagreement,
        }
        write_manifest(staging, meta)
        _install(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    seconds = time.monotonic() - t0
    log(f"artifacts ready in {out_dir} ({seconds:.1f}s)")
    return {"out_dir": str(out_dir), "seed": seed, "flavors": list(flavors), "versions": list(VERSIONS),
            "metrics": metrics, "probe_disagreement": disagreement, "training_data_sha256": train_sha,
            "build_seconds": seconds}


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable summary table of a build."""
    lines = [f"artifacts: {summary['out_dir']}  (seed {summary['seed']}, {summary['build_seconds']:.1f}s)",
             f"{'flavor':8} {'version':7} {'roc_auc':>8} {'pr_auc':>8} {'brier':>8} {'log_loss':>8}"]
    for flavor, versions in summary["metrics"].items():
        for version, m in versions.items():
            lines.append(f"{flavor:8} {version:7} {m['roc_auc']:8.4f} {m['pr_auc']:8.4f} "
                         f"{m['brier']:8.4f} {m['log_loss']:8.4f}")
    for flavor, d in summary["probe_disagreement"].items():
        lines.append(f"probe |v1 - v2| {flavor}: mean {d['mean_abs']:.4f}, max {d['max_abs']:.4f}, "
                     f"share > 0.01 {d['share_over_0_01']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the process exit code (1 when the contract is not met)."""
    from reference_model.paths import default_artifacts_dir

    parser = argparse.ArgumentParser(prog="python -m reference_model.build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: $TAKEHOME_ARTIFACTS "
                        "or <repo>/build/artifacts)")
    parser.add_argument("--flavor", choices=[*FLAVORS, "all"], default="all")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--contract", type=Path, default=None, help="evaluation contract YAML")
    args = parser.parse_args(argv)
    flavors = FLAVORS if args.flavor == "all" else (args.flavor,)
    try:
        summary = build_artifacts(args.out or default_artifacts_dir(), args.seed, flavors, contract=args.contract)
    except ContractViolation as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
