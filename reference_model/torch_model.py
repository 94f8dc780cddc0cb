"""The torch flavour: an MLP per version, trained deterministically on CPU, saved with torch.export.

Only this module (and the torch predictor) imports torch, so the rest of the project imports
without it. The saved ``model.pt2`` takes the float32 ``[batch, n_inputs]`` matrix described by
``preprocessing.json`` and returns P(is_fraud = 1) as ``[batch]``; loading it needs only
``torch.export.load``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from reference_model import schema
from reference_model.data import derive_seed
from reference_model.preprocessing import fit_preprocessing, transform

VERSIONS: tuple[str, ...] = ("v1", "v2")
MODEL_FILE = "model.pt2"
PREPROCESSING_FILE = "preprocessing.json"


@dataclass(frozen=True)
class MLPConfig:
    """Architecture and optimiser settings of one version."""

    hidden: tuple[int, ...]
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float


#: v1 is deliberately small and briefly trained; v2 is wider, deeper and trained longer.
CONFIGS: dict[str, MLPConfig] = {
    "v1": MLPConfig(hidden=(8,), epochs=3, batch_size=512, lr=3e-3, weight_decay=0.0),
    "v2": MLPConfig(hidden=(64, 32), epochs=12, batch_size=256, lr=2e-3, weight_decay=1e-5),
}


class FraudMLP(nn.Module):
    """MLP returning logits ``[batch]`` (training) or probabilities (``with_sigmoid=True``, export)."""

    def __init__(self, n_inputs: int, hidden: tuple[int, ...], with_sigmoid: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_inputs
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.with_sigmoid = with_sigmoid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x).squeeze(-1)
        return torch.sigmoid(logits) if self.with_sigmoid else logits


@contextlib.contextmanager
def _deterministic_cpu(seed: int) -> Iterator[None]:
    """Seed torch, force deterministic kernels and one thread; restore the caller's settings after."""
    threads = torch.get_num_threads()
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        # One thread: the order of floating-point reductions, hence the weights, cannot vary.
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(was_deterministic)


def train(version: str, train_frame: pd.DataFrame, seed: int) -> tuple[FraudMLP, dict[str, Any]]:
    """Train the ``version`` MLP; return the model (sigmoid on, eval mode) and its preprocessing spec."""
    if version not in CONFIGS:
        raise ValueError(f"unknown version {version!r}; expected one of {VERSIONS}")
    cfg = CONFIGS[version]
    spec = fit_preprocessing(train_frame)
    x = torch.from_numpy(transform(spec, train_frame))
    y = torch.from_numpy(train_frame[schema.LABEL].to_numpy(np.float32))
    torch_seed = derive_seed(seed, f"torch-{version}") % (2**63)
    with _deterministic_cpu(torch_seed):
        model = FraudMLP(spec["n_inputs"], cfg.hidden)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        loss_fn = nn.BCEWithLogitsLoss()
        shuffle = torch.Generator().manual_seed(torch_seed)
        model.train()
        for _ in range(cfg.epochs):
            order = torch.randperm(len(x), generator=shuffle)
            for start in range(0, len(x), cfg.batch_size):
                idx = order[start : start + cfg.batch_size]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x[idx]), y[idx])
                loss.backward()
                opt.step()
    model.with_sigmoid = True
    model.eval()
    return model, spec


def export(model: FraudMLP, spec: dict[str, Any], out_dir: Path) -> None:
    """Write ``model.pt2`` (torch.export, dynamic batch) and ``preprocessing.json`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(4, spec["n_inputs"], dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1, max=1_000_000)
    with torch.no_grad():
        program = torch.export.export(model, (example,), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(out_dir / MODEL_FILE))
    (out_dir / PREPROCESSING_FILE).write_text(json.dumps(spec, indent=2) + "\n")


def predict_proba(model: torch.nn.Module, spec: dict[str, Any], frame: pd.DataFrame) -> np.ndarray:
    """Positive-class probabilities, float64, shape ``[n]``, for an exported or in-memory model."""
    if len(frame) == 0:
        return np.zeros(0, dtype=np.float64)
    with torch.no_grad():
        out = model(torch.from_numpy(transform(spec, frame)))
    return out.numpy().astype(np.float64).reshape(-1)
