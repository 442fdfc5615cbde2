"""The street encoder's training loop on cached trunk activations: a copy of the served image model whose tail, head
and taxonomy classifier learn to put a street photo's crop of a product onto that product's catalog vector.

Asymmetric distillation: the catalog vectors (the served model's output for each product's shop photo) are the
fixed targets, so the index and every stored vector stay valid; only query photos go through the street encoder.
Loss per query view: InfoNCE against every training product's catalog vector (temperature ``tau``: the right
product must beat all others, the look-alikes of its own type included) plus ``cosine_weight`` x (1 - cosine to its
own catalog vector), which keeps a query's scores on the catalog model's scale so a crop's matches and the whole
photo's stay comparable. View 0 of each product (its shop photo) is a query too: a product shot keeps its place.

May import: torch, numpy, tqdm, engine.models, engine.files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from engine.files import write_atomically
from engine.models.backbone_split import freeze_batchnorm
from engine.models.heads import EmbeddingNet

STATE_FORMAT = 1


@dataclass(frozen=True)
class StreetTrainConfig:
    """Optimisation recipe of ``train_street_encoder``."""

    epochs: int = 4
    batch_size: int = 128
    lr: float = 1e-4
    weight_decay: float = 1e-4
    tau: float = 0.03
    cosine_weight: float = 1.0
    seed: int = 0

    def describe(self) -> dict[str, Any]:
        """The recipe, for manifests."""
        return asdict(self)


def trainable_parameters(net: EmbeddingNet, tail: nn.Module) -> list[nn.Parameter]:
    """The parameters the street encoder trains (tail, head, classifier); everything else of ``net`` is frozen."""
    params = [*tail.parameters(), *net.head.parameters(), *(net.classifier.parameters() if net.classifier else [])]
    for p in net.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    return params


def encode_activations(net: EmbeddingNet, tail: nn.Module, activations: np.ndarray, batch: int = 512) -> torch.Tensor:
    """L2-normalised outputs (N, dim) of ``net`` for cached trunk activations (N, ...) through ``tail``."""
    out = []
    was_training = net.training
    net.eval()
    with torch.inference_mode():
        for i in range(0, len(activations), batch):
            a = torch.from_numpy(np.asarray(activations[i:i + batch], np.float32))
            out.append(F.normalize(net.from_features(tail(a)).float(), dim=1))
    net.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


def _lr_at(step: int, total: int, peak: float) -> float:
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, total))))


def _save_state(path: Path, net: EmbeddingNet, opt: torch.optim.Optimizer, epoch: int, history: list[dict]) -> None:
    payload = {"format": STATE_FORMAT, "epoch": epoch, "net": net.state_dict(), "opt": opt.state_dict(),
               "history": history}
    write_atomically(path, lambda f: torch.save(payload, f))


def train_street_encoder(net: EmbeddingNet, tail: nn.Module, views: np.ndarray, targets: torch.Tensor,
                         cfg: StreetTrainConfig, validate: Callable[[], dict[str, float]] | None = None,
                         state_path: str | os.PathLike | None = None, resume: bool = False,
                         progress: bool = True) -> list[dict[str, Any]]:
    """Train ``net`` (a copy of the served model) in place on cached trunk activations.

    Args:
        net: The street encoder being trained; ``tail`` is its backbone's trainable tail
            (``engine.models.backbone_split.split_backbone`` of ``net.backbone``).
        views: (N, V, ...) float16 trunk activations: view 0 the product's shop photo, views 1.. street crops.
        targets: (N, dim) the products' catalog vectors (unit rows), from the served model.
        validate: Called after each epoch; its metrics join the epoch's history row.
        state_path: Resumable state file written after each epoch; ``resume`` continues from it.

    Returns:
        One history row per epoch (epoch, loss, lr, plus the validator's metrics).
    """
    n, n_views = views.shape[:2]
    if n < 2 or len(targets) != n:
        raise ValueError(f"need at least 2 products with one target each, got {n} products and {len(targets)} targets")
    params = trainable_parameters(net, tail)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(n * n_views / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    history: list[dict[str, Any]] = []
    start = 0
    state = Path(state_path) if state_path else None
    if resume and state is not None and state.is_file():
        saved = torch.load(state, map_location="cpu", weights_only=True)
        if saved.get("format") == STATE_FORMAT:
            net.load_state_dict(saved["net"])
            opt.load_state_dict(saved["opt"])
            start, history = int(saved["epoch"]), list(saved["history"])
    targets = targets.float()
    for epoch in range(start, cfg.epochs):
        net.train()
        freeze_batchnorm(net)  # small CPU batches must not overwrite the served model's statistics
        order = np.random.default_rng(cfg.seed + epoch).permutation(n * n_views)
        total_loss = 0.0
        bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"street encoder epoch {epoch + 1}/{cfg.epochs}",
                   unit="batch", disable=not progress, mininterval=5.0)
        for k, i in enumerate(bar):
            idx = np.sort(order[i:i + cfg.batch_size])  # sorted rows read the memmap in order
            products, view = idx // n_views, idx % n_views
            lr = _lr_at(epoch * steps_per_epoch + k, total, cfg.lr)
            for group in opt.param_groups:
                group["lr"] = lr
            acts = torch.from_numpy(np.asarray(views[products, view], np.float32))
            q = F.normalize(net.from_features(tail(acts)).float(), dim=1)
            own = torch.from_numpy(products)
            loss = F.cross_entropy(q @ targets.T / cfg.tau, own) + \
                cfg.cosine_weight * (1.0 - (q * targets[own]).sum(dim=1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += float(loss)
        net.eval()
        row: dict[str, Any] = {"epoch": epoch + 1, "loss": round(total_loss / max(1, steps_per_epoch), 5),
                               "lr": cfg.lr}
        if validate is not None:
            row.update(validate())
        history.append(row)
        if state is not None:
            _save_state(state, net, opt, epoch + 1, history)
    net.eval()
    return history

