"""The evaluation contract (``eval_contract.yaml``) and the metrics that are checked against it.

The build calls :func:`check_contract` and raises :class:`ContractViolation` when any flavour or
version misses a threshold, or when v1 and v2 cannot be told apart on the probe set.
``python -m reference_model.evaluate --artifacts DIR`` re-checks already built artifacts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

DEFAULT_CONTRACT_PATH: Path = Path(__file__).with_name("eval_contract.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Thresholds(_Strict):
    """Bounds on holdout metrics; ``None`` means "not checked"."""

    roc_auc_min: float | None = Field(None, ge=0.0, le=1.0)
    pr_auc_min: float | None = Field(None, ge=0.0, le=1.0)
    brier_max: float | None = Field(None, ge=0.0, le=1.0)
    log_loss_max: float | None = Field(None, ge=0.0)

    def merged(self, override: "Thresholds | None") -> "Thresholds":
        """Return these thresholds with the fields set in ``override`` replacing them."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_unset=True))


class ProbeDisagreement(_Strict):
    """How different v1 and v2 must be on the probe set, per flavour."""

    mean_abs_min: float = Field(ge=0.0, le=1.0)
    max_abs_min: float = Field(ge=0.0, le=1.0)


class EvalContract(_Strict):
    """The whole contract file."""

    contract_version: int = Field(1, ge=1, le=1)
    split: str = "holdout"
    defaults: Thresholds = Thresholds()
    versions: dict[str, Thresholds] = {}
    flavors: dict[str, dict[str, Thresholds]] = {}
    probe_disagreement: ProbeDisagreement | None = None

    def thresholds_for(self, flavor: str, version: str) -> Thresholds:
        """Resolve defaults -> versions[version] -> flavors[flavor][version]."""
        return self.defaults.merged(self.versions.get(version)).merged(self.flavors.get(flavor, {}).get(version))


class ContractViolation(RuntimeError):
    """Raised when built models do not meet the evaluation contract."""

    def __init__(self, violations: list[str]) -> None:
        super().__init__("evaluation contract not met:\n  " + "\n  ".join(violations))
        self.violations = list(violations)


def load_contract(path: Path | str | None = None) -> EvalContract:
    """Read and validate a contract YAML (the packaged ``eval_contract.yaml`` by default)."""
    raw = yaml.safe_load(Path(path or DEFAULT_CONTRACT_PATH).read_text())
    return EvalContract.model_validate(raw if raw is not None else {})


def compute_metrics(y_true: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Holdout metrics of positive-class probabilities ``p`` against 0/1 labels."""
    y = np.asarray(y_true, dtype=np.int64)
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "base_rate": float(y.mean()),
        "mean_prediction": float(p.mean()),
        "n": int(len(y)),
    }


def probe_disagreement(p_v1: np.ndarray | list[float], p_v2: np.ndarray | list[float]) -> dict[str, float]:
    """Summaries of ``|p_v1 - p_v2|`` on the probe rows (how well the versions can be told apart)."""
    diff = np.abs(np.asarray(p_v1, dtype=np.float64) - np.asarray(p_v2, dtype=np.float64))
    return {
        "mean_abs": float(diff.mean()),
        "max_abs": float(diff.max()),
        "share_over_0_01": float((diff > 0.01).mean()),
    }


def check_contract(
    contract: EvalContract,
    metrics: dict[str, dict[str, dict[str, float]]],
    disagreement: dict[str, dict[str, float]] | None = None,
) -> list[str]:
    """Return one human-readable line per violated bound (empty when everything passes).

    ``metrics`` is ``{flavor: {version: compute_metrics(...)}}``; ``disagreement`` is
    ``{flavor: probe_disagreement(...)}``.
    """
    problems: list[str] = []
    for flavor, versions in sorted(metrics.items()):
        for version, m in sorted(versions.items()):
            t = contract.thresholds_for(flavor, version)
            where = f"{flavor}/{version}"
            checks = [
                ("roc_auc", t.roc_auc_min, ">="),
                ("pr_auc", t.pr_auc_min, ">="),
                ("brier", t.brier_max, "<="),
                ("log_loss", t.log_loss_max, "<="),
            ]
            for key, bound, op in checks:
                if bound is None:
                    continue
                ok = m[key] >= bound if op == ">=" else m[key] <= bound
                if not ok:
                    problems.append(f"{where}: {key} = {m[key]:.4f}, contract requires {op} {bound}")
    if contract.probe_disagreement is not None:
        rule = contract.probe_disagreement
        for flavor, d in sorted((disagreement or {}).items()):
            if d["mean_abs"] < rule.mean_abs_min:
                problems.append(
                    f"{flavor}: mean |p_v1 - p_v2| on the probe set = {d['mean_abs']:.4f} < {rule.mean_abs_min}"
                )
            if d["max_abs"] < rule.max_abs_min:
                problems.append(
                    f"{flavor}: max |p_v1 - p_v2| on the probe set = {d['max_abs']:.4f} < {rule.max_abs_min}"
                )
    return problems


def evaluate_artifacts(artifacts_dir: Path, contract: EvalContract | None = None) -> dict[str, Any]:
    """Recompute holdout metrics and probe disagreement from built artifacts via the predictors.

    Returns ``{"metrics": ..., "probe_disagreement": ..., "violations": [...]}``; it checks what
    is on disk, independently of what the build reported.
    """
    from reference_model import schema
    from reference_model.data import read_split_csv
    from reference_model.predictors import load_predictor

    contract = contract or load_contract()
    manifest = json.loads((artifacts_dir / "manifest.json").read_text())
    holdout = read_split_csv(str(artifacts_dir / "data" / f"{contract.split}.csv"))
    probe = read_split_csv(str(artifacts_dir / "probe" / "probe_set.csv"))
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    disagreement: dict[str, dict[str, float]] = {}
    for flavor in manifest["flavors"]:
        probe_preds = {}
        metrics[flavor] = {}
        for version in manifest["versions"]:
            predictor = load_predictor(artifacts_dir, flavor, version)
            metrics[flavor][version] = compute_metrics(holdout[schema.LABEL], predictor.predict_proba(holdout))
            probe_preds[version] = predictor.predict_proba(probe)
        disagreement[flavor] = probe_disagreement(probe_preds["v1"], probe_preds["v2"])
    return {
        "metrics": metrics,
        "probe_disagreement": disagreement,
        "violations": check_contract(contract, metrics, disagreement),
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: re-evaluate built artifacts against a contract; exit 1 on any violation."""
    parser = argparse.ArgumentParser(prog="python -m reference_model.evaluate", description=__doc__)
    parser.add_argument("--artifacts", type=Path, required=True, help="built artifacts directory")
    parser.add_argument("--contract", type=Path, default=None, help="contract YAML (default: packaged)")
    args = parser.parse_args(argv)
    result = evaluate_artifacts(args.artifacts, load_contract(args.contract))
    print(json.dumps(result, indent=2))
    return 1 if result["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
