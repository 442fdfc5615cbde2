"""Training the outfit model on cached image vectors: triplet loss on outfits, cross-entropy for slots.

Compatibility (Vasileva et al. 2018): for every ordered pair (anchor, positive) of items in a training outfit,
a negative is a random item of the positive's slot (not in the outfit); the loss is
``relu(d(anchor, positive) - d(anchor, negative) + margin)`` with d measured in the subspace of the pair's slot
types, plus an L1 penalty on the masks and a small L2 penalty on general embeddings. The epoch with the best
validation score (mean of fill-in-the-blank accuracy and compatibility AUC) is kept.

Everything runs on features already computed (one MLP over 1-2k-dim vectors), so a full catalog trains in minutes
on a CPU.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from engine.outfits.metrics import compatibility_auc, fitb_accuracy, fitb_scores, outfit_scores
from engine.outfits.model import OutfitModel, model_pair_scorer


@dataclass(frozen=True)
class CompatConfig:
    """Hyper-parameters of the compatibility model and its training."""

    embed_dim: int = 64
    hidden: int = 256
    dropout: float = 0.3
    margin: float = 0.3
    lr: float = 1e-3
    weight_decay: float = 1e-5
    epochs: int = 3
    batch_size: int = 1024
    mask_l1: float = 5e-4
    embed_l2: float = 5e-3
    seed: int = 0


@dataclass(frozen=True)
class SlotConfig:
    """Hyper-parameters of the slot classifier."""

    hidden: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    epochs: int = 15
    batch_size: int = 512
    seed: int = 0


@dataclass
class OutfitQuestions:
    """Evaluation questions in item rows: compatibility outfits + labels; fill-in-the-blank items + candidates."""

    compat_outfits: list[list[int]] = field(default_factory=list)
    compat_labels: list[int] = field(default_factory=list)
    fitb_items: list[list[int]] = field(default_factory=list)
    fitb_answers: list[list[int]] = field(default_factory=list)
    fitb_correct: list[int] = field(default_factory=list)

    def evaluate(self, pair_scorer) -> dict[str, float]:
        """{"auc", "fitb", "n_compatibility", "n_fitb"} with this pair scorer (metrics absent without questions)."""
        out: dict[str, float] = {"n_compatibility": len(self.compat_outfits), "n_fitb": len(self.fitb_items)}
        if self.compat_outfits and 0 < sum(self.compat_labels) < len(self.compat_labels):
            out["auc"] = compatibility_auc(outfit_scores(self.compat_outfits, pair_scorer),
                                           np.asarray(self.compat_labels))
        if self.fitb_items:
            out["fitb"] = fitb_accuracy(fitb_scores(self.fitb_items, self.fitb_answers, pair_scorer),
                                        np.asarray(self.fitb_correct))
        return out


@dataclass
class EpochReport:
    epoch: int
    loss: float
    active: float
    val: dict[str, float]
    seconds: float

    def line(self, total: int) -> str:
        val = "  ".join(f"val_{k} {v:.4f}" for k, v in self.val.items() if not k.startswith("n_"))
        return (f"epoch {self.epoch}/{total} loss {self.loss:.4f} (active triplets {self.active:.2f})  {val}  "
                f"({self.seconds:.1f}s)")


def _ordered_pairs(outfits: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    anchors, positives, owner = [], [], []
    for k, outfit in enumerate(outfits):
        for i in outfit:
            for j in outfit:
                if i != j:
                    anchors.append(i)
                    positives.append(j)
                    owner.append(k)
    return np.asarray(anchors, np.int64), np.asarray(positives, np.int64), np.asarray(owner, np.int64)


def sample_negatives(positives: np.ndarray, owner: np.ndarray, outfits: Sequence[Sequence[int]], slots: np.ndarray,
                     pools: dict[int, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A random item of each positive's slot, redrawn (a few times) when it belongs to the positive's outfit."""
    neg = np.empty_like(positives)
    pos_slots = slots[positives]
    for slot, pool in pools.items():
        where = np.nonzero(pos_slots == slot)[0]
        neg[where] = pool[rng.integers(0, len(pool), len(where))]
    for _ in range(3):
        clash = np.array([neg[t] in outfits[owner[t]] for t in range(len(neg))], bool)
        if not clash.any():
            break
        where = np.nonzero(clash)[0]
        for t in where:
            pool = pools[int(pos_slots[t])]
            neg[t] = pool[rng.integers(0, len(pool))]
    return neg


def train_compatibility(vectors: np.ndarray, slots: np.ndarray, n_slots: int, slot_names: Sequence[str],
                        train_outfits: Sequence[Sequence[int]], val: OutfitQuestions | None,
                        cfg: CompatConfig, model: OutfitModel | None = None,
                        on_epoch: Callable[[EpochReport], None] | None = None) -> tuple[OutfitModel, list[EpochReport]]:
    """Train the type-aware compatibility embedding with triplets from outfits.

    Args:
        vectors: (N, D) image vectors of all items the outfits and negatives refer to (rows).
        slots: (N,) slot id per row (-1 = no slot; never used as a negative).
        n_slots: Number of slots.
        slot_names: Slot names (for the model).
        train_outfits: Outfits as lists of rows.
        val: Validation questions (rows into ``vectors``) for picking the best epoch; None keeps the last.
        cfg: Hyper-parameters.
        model: Start from this model (its slot head is kept untouched); a new one when None.
        on_epoch: Called after every epoch.

    Returns:
        (the model at its best validation epoch, per-epoch reports).
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if model is None:
        model = OutfitModel(vectors.shape[1], slot_names, cfg.embed_dim, cfg.hidden, dropout=cfg.dropout)
    if len(slot_names) != n_slots:
        raise ValueError(f"{len(slot_names)} slot names for {n_slots} slots")
    x_all = torch.from_numpy(np.array(vectors, np.float32))
    slots_t = torch.from_numpy(np.asarray(slots, np.int64))
    anchors, positives, owner = _ordered_pairs(train_outfits)
    if len(anchors) == 0:
        raise ValueError("no training outfits with two or more items")
    used_slots = sorted(set(slots[positives].tolist()))
    pools = {s: np.nonzero(slots == s)[0] for s in used_slots}
    params = list(model.general.parameters()) + [model.masks]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs))
    history: list[EpochReport] = []
    best: tuple[float, dict] | None = None
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        negatives = sample_negatives(positives, owner, train_outfits, np.asarray(slots), pools, rng)
        order = rng.permutation(len(anchors))
        total, active, seen = 0.0, 0.0, 0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            a, p, n = (torch.from_numpy(arr[idx]) for arr in (anchors, positives, negatives))
            rows = torch.cat([a, p, n])
            g = model.embed(x_all[rows])
            ga, gp, gn = g.split(len(idx))
            sa, sp = slots_t[a], slots_t[p]
            d_ap = model.distance(ga, sa, gp, sp)
            d_an = model.distance(ga, sa, gn, sp)
            per = F.relu(d_ap - d_an + cfg.margin)
            loss = (per.mean() + cfg.mask_l1 * F.relu(model.masks).sum() / model.masks.shape[0]
                    + cfg.embed_l2 * g.pow(2).sum(1).mean())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(per.detach().mean()) * len(idx)
            active += float((per > 0).float().mean()) * len(idx)
            seen += len(idx)
        sched.step()
        val_metrics: dict[str, float] = {}
        if val is not None:
            model.eval()
            val_metrics = val.evaluate(model_pair_scorer(model, model.general_embeddings(vectors), slots))
            score = (val_metrics.get("fitb", 0.0) + val_metrics.get("auc", 0.0)) / 2
            if best is None or score > best[0]:
                best = (score, copy.deepcopy(model.state_dict()))
        report = EpochReport(epoch, total / seen, active / seen, val_metrics, time.perf_counter() - t0)
        history.append(report)
        if on_epoch:
            on_epoch(report)
    if best is not None:
        model.load_state_dict(best[1])
    return model.eval(), history


def train_slot_classifier(model: OutfitModel, vectors: np.ndarray, labels: np.ndarray, cfg: SlotConfig,
                          on_epoch: Callable[[int, float], None] | None = None) -> OutfitModel:
    """Fit the model's slot head with cross-entropy (labels: slot id, or n_slots for "none").

    Classes are re-weighted by inverse frequency (square root), so rare slots (one-pieces) are not drowned out by
    the many tops.
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    n_classes = len(model.slots) + 1
    if model.slot_hidden != cfg.hidden:
        raise ValueError(f"model slot head has hidden {model.slot_hidden}, config says {cfg.hidden}")
    x = torch.from_numpy(np.array(vectors, np.float32))
    y = torch.from_numpy(np.asarray(labels, np.int64))
    counts = np.bincount(np.asarray(labels), minlength=n_classes).astype(np.float64)
    weights = torch.tensor(np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1)), 0.0), dtype=torch.float32)
    weights = weights / weights[counts > 0].mean()
    opt = torch.optim.Adam(model.slot_head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        order = torch.from_numpy(rng.permutation(len(y)))
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            loss = F.cross_entropy(model.slot_logits(x[idx]), y[idx], weight=weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        if on_epoch:
            on_epoch(epoch, total / max(1, len(y)))
    return model.eval()


def slot_accuracy(model: OutfitModel, vectors: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Overall accuracy, per-class recall and counts of the slot classifier (class names incl. "none")."""
    if len(labels) == 0:
        return {"accuracy": float("nan"), "n": 0}
    pred = model.slot_probabilities(vectors).argmax(1)
    labels = np.asarray(labels)
    names = [*model.slots, "none"]
    out: dict[str, float] = {"accuracy": float((pred == labels).mean()), "n": int(len(labels))}
    for c, name in enumerate(names):
        mask = labels == c
        if mask.any():
            out[f"recall/{name}"] = float((pred[mask] == c).mean())
            out[f"n/{name}"] = int(mask.sum())
    return out


def config_dict(cfg: CompatConfig | SlotConfig) -> dict[str, object]:
    return asdict(cfg)
