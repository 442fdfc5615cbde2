"""The colour head's training loop on arrays: served vectors (and colour descriptors) in, base-colour classes out,
cross-entropy.

AdamW under a one-cycle schedule, minibatches drawn with a seeded generator; after every epoch the val accuracy is
measured and the best epoch's weights are kept (the caller writes them). A run takes a few minutes on 2 cores, so
there is no resumable state: an interrupted run is simply run again.

May import: torch, numpy, tqdm, engine.models.colour_head.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from engine.models.colour_head import ColourHead


@dataclass(frozen=True)
class ColourTrainConfig:
    """Shape and optimisation recipe of the colour head (chosen on val products; docs/text-search.md)."""

    hidden: int = 1024
    layers: int = 2
    colour_bins: int = 8  # colour descriptors' bins per channel (0: vectors only)
    dropout: float = 0.2
    epochs: int = 40
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-2
    seed: int = 0


def accuracy(head: ColourHead, vectors: np.ndarray, labels: np.ndarray, descriptors: np.ndarray | None = None
             ) -> float:
    """Share of rows whose most probable colour is their label."""
    if not len(labels):
        return 0.0
    return float((head.posterior(vectors, descriptors).argmax(axis=1) == labels).mean())


def train_colour_head(vectors: np.ndarray, labels: np.ndarray, colours: list[str], cfg: ColourTrainConfig,
                      descriptors: np.ndarray | None = None, val: tuple | None = None, progress: bool = True
                      ) -> tuple[ColourHead, list[dict[str, float]]]:
    """Train on (vectors, their colour descriptors when ``cfg.colour_bins`` > 0, labels: indices into ``colours``);
    ``val`` = (vectors, descriptors, labels) of val rows. Returns the head of the best val epoch (the last one without
    val rows) in eval mode, and one record per epoch (loss, val accuracy)."""
    if len(vectors) != len(labels) or not len(labels):
        raise ValueError(f"need as many labels as vectors (got {len(vectors)} vectors, {len(labels)} labels)")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    head = ColourHead(int(vectors.shape[1]), colours, cfg.hidden, cfg.layers, cfg.dropout, cfg.colour_bins)
    x = torch.from_numpy(head.inputs(vectors, descriptors))
    y = torch.from_numpy(np.asarray(labels, np.int64))
    steps = max(1, len(labels) // cfg.batch_size)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps * cfg.epochs)
    loss_fn = nn.CrossEntropyLoss()
    has_val = val is not None and len(val[2]) > 0
    best: tuple[float, dict] | None = None
    history: list[dict[str, float]] = []
    bar = tqdm(range(cfg.epochs), desc="colour head", disable=not progress, unit="epoch")
    for epoch in bar:
        head.train()
        order = rng.permutation(len(labels))
        total = 0.0
        for s in range(steps):
            idx = torch.from_numpy(order[s * cfg.batch_size:(s + 1) * cfg.batch_size])
            loss = loss_fn(head(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            total += loss.item()
        record = {"epoch": epoch + 1, "loss": round(total / steps, 4)}
        if has_val:
            record["val_accuracy"] = round(accuracy(head, val[0], val[2], val[1]), 4)  # type: ignore[index]
        history.append(record)
        bar.set_postfix({k: v for k, v in record.items() if k != "epoch"})
        score = record.get("val_accuracy", float(epoch))
        if best is None or score > best[0]:
            best = (score, copy.deepcopy(head.state_dict()))
    assert best is not None
    head.load_state_dict(best[1])
    return head.eval(), history
