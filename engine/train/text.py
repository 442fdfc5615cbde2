"""The text tower's training loop on arrays (LiT): locked image vectors as targets, open_clip's ClipLoss.

The caller supplies the image vectors (one row per product) and a function that draws one text per product for a
step (title or caption, with words dropped and reordered); this module owns the optimiser, the schedule, the
learnable temperature, duplicate-text masking inside a batch, the resumable state file and the progress bar.

May import: torch, numpy, tqdm, open_clip, engine.models.text_tower, engine.files.
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from engine.files import write_atomically
from engine.models.text_tower import TextTower, TextVocabulary

STATE_FORMAT = 1


@dataclass(frozen=True)
class TextTrainConfig:
    """Optimisation recipe of ``train_text``."""

    epochs: int = 30
    batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    seed: int = 0
    # Texts drawn per product per epoch (each a fresh title / caption variant).
    texts_per_product: int = 1


# (product indices, rng) -> one text per index
TextSampler = Callable[[np.ndarray, np.random.Generator], list[str]]
# (tower) -> metrics dict with at least "score" (higher is better); run after each epoch
Validator = Callable[[TextTower], dict[str, float]]


def _lr_at(step: int, total: int, cfg: TextTrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _unique_texts(indices: np.ndarray, texts: list[str]) -> tuple[np.ndarray, list[str]]:
    """Drop repeated texts inside a batch: ClipLoss would push a text away from its own duplicates' images."""
    seen: set[str] = set()
    keep = []
    for n, t in enumerate(texts):
        if t not in seen:
            seen.add(t)
            keep.append(n)
    return indices[keep], [texts[n] for n in keep]


def train_text(tower: TextTower, vocab: TextVocabulary, targets: np.ndarray, sample_texts: TextSampler,
               cfg: TextTrainConfig, state_file: str | os.PathLike | None = None, resume: bool = False,
               validate: Validator | None = None, on_best: Callable[[TextTower, dict[str, Any]], None] | None = None,
               device: str = "cpu", progress: bool = True) -> list[dict[str, Any]]:
    """Train the tower so that each product's text lands on its (locked) image vector.

    Args:
        tower: The tower to train (modified in place).
        vocab: Its vocabulary (tokenises the sampled texts).
        targets: (n_products, dim) unit image vectors, the LiT targets.
        sample_texts: Draws one text per product index for a step.
        cfg: The recipe.
        state_file: Where the resumable state (weights, optimiser, epoch, history) is written after each epoch.
        resume: Continue from ``state_file`` when it exists.
        validate: Run after each epoch; its ``score`` picks the best epoch.
        on_best: Called with the tower and the epoch's record whenever validation improves (or every epoch
            without a validator).
        device: torch device.
        progress: Show a tqdm bar per epoch.

    Returns:
        One record per epoch: epoch, loss, seconds, temperature and the validator's metrics.
    """
    from open_clip.loss import ClipLoss

    torch.manual_seed(cfg.seed)
    tower.to(device).train()
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07), device=device))
    decay = [p for n, p in tower.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in tower.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                               {"params": [*no_decay, logit_scale], "weight_decay": 0.0}], lr=cfg.lr)
    loss_fn = ClipLoss()
    image_vectors = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32)).to(device)
    n = len(image_vectors)
    steps_per_epoch = max(1, (n * cfg.texts_per_product) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    history: list[dict[str, Any]] = []
    start_epoch, best = 0, -math.inf
    rng = np.random.default_rng(cfg.seed)
    if resume and state_file and Path(state_file).is_file():
        state = torch.load(state_file, map_location=device, weights_only=False)
        tower.load_state_dict(state["tower"])
        optim.load_state_dict(state["optim"])
        logit_scale.data.fill_(state["logit_scale"])
        start_epoch, history, best = state["epoch"], state["history"], state["best"]
        rng.bit_generator.state = state["rng"]
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        order = np.concatenate([rng.permutation(n) for _ in range(cfg.texts_per_product)])
        losses = []
        bar = tqdm(range(steps_per_epoch), desc=f"text epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
                   leave=False)
        for step in bar:
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            idx, texts = _unique_texts(idx, sample_texts(idx, rng))
            for group in optim.param_groups:
                group["lr"] = _lr_at(epoch * steps_per_epoch + step, total, cfg)
            tokens = vocab.encode(texts, tower.config.context_length).to(device)
            text_features = tower(tokens)
            loss = loss_fn(image_vectors[torch.from_numpy(idx).to(device)], text_features,
                           logit_scale.exp().clamp(max=100))
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(tower.parameters(), 1.0)
            optim.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        record: dict[str, Any] = {"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 4),
                                  "seconds": round(time.perf_counter() - t0, 1),
                                  "temperature": round(1 / float(logit_scale.detach().exp().clamp(max=100)), 4)}
        if validate is not None:
            tower.eval()
            record.update(validate(tower))
            tower.train()
        history.append(record)
        score = record.get("score", epoch)
        if on_best is not None and score > best:
            best = score
            tower.eval()
            on_best(tower, record)
            tower.train()
        if progress:
            tqdm.write(" ".join(f"{k}={v}" for k, v in record.items()))
        if state_file:
            _save_state(state_file, tower, optim, logit_scale, epoch + 1, history, best, rng, cfg)
    tower.eval()
    return history


def _save_state(path: str | os.PathLike, tower: TextTower, optim: torch.optim.Optimizer,
                logit_scale: torch.nn.Parameter, epoch: int, history: Sequence[dict[str, Any]], best: float,
                rng: np.random.Generator, cfg: TextTrainConfig) -> None:
    buf = io.BytesIO()
    torch.save({"format": STATE_FORMAT, "tower": tower.state_dict(), "optim": optim.state_dict(),
                "logit_scale": float(logit_scale.detach()), "epoch": epoch, "history": list(history), "best": best,
                "rng": rng.bit_generator.state, "config": asdict(cfg)}, buf)
    data = buf.getvalue()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomically(Path(path), lambda f: f.write(data))
