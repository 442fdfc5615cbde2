"""Fine-tuning the embedding on cached trunk activations: triplet loss + hierarchical taxonomy loss.

The data are arrays, not images: ``views[i, v]`` is the trunk output (see ``engine.models.backbone_split``) for view v
of product i, where view 0 is the clean shop image and views 1.. are street photos of the same product. The schedule:

1. "frozen" epochs: the backbone tail is frozen; its pooled output is computed once and only the projection head
   (and the taxonomy classifiers) learn - seconds per epoch on a CPU;
2. "unfrozen" epochs: the tail (last blocks of the backbone) learns too, with its own smaller learning rate.

Each epoch ends with validation recall on held-out products and a crash-safe training state (model, optimizer,
history), so ``fit(resume=True)`` continues after the last finished epoch and reaches the same weights as an
uninterrupted run. Mixed precision (float16 autocast + loss scaling) is used on CUDA.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.files import write_atomically
from engine.metrics import category_recall_at_1, synthetic_recall
from engine.models.backbone_split import BackboneSplit, freeze_batchnorm
from engine.models.heads import EmbeddingNet, ProjectionHead
from engine.train.losses import MINING_STRATEGIES, hierarchical_classification_loss, triplet_loss
from engine.train.sampler import PKSampler

log = logging.getLogger(__name__)
TRAIN_STATE_FORMAT = 1
TAXONOMY_LEVELS = ("master_category", "sub_category", "article_type")


class TrainingError(ValueError):
    """Training cannot start or resume as asked (bad config, mismatched state file)."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one fine-tuning run (recorded in the checkpoint manifest).

    Attributes:
        embed_dim: Output dimension of the projection head.
        hidden: Hidden width of the head (0 = a single linear layer).
        mining: "batch-hard" or "semi-hard".
        margin: Triplet margin, in Euclidean distance between unit vectors.
        products_per_batch: P of the P x K sampler.
        views_per_product: K of the P x K sampler.
        epochs_frozen: Epochs training the head only.
        epochs_unfrozen: Epochs training the backbone tail too (needs ``unfreeze_blocks`` > 0 in the data).
        lr: Peak learning rate of the head and classifiers (AdamW, cosine decay per stage, 5% warm-up).
        tail_lr: Peak learning rate of the backbone tail in the unfrozen stage.
        weight_decay: AdamW weight decay.
        aux_weight: Weight of the hierarchical taxonomy loss (0 = triplet loss only).
        level_weights: Weight of each taxonomy level, coarse to fine.
        classifier_scale: Logit scale of the cosine classifiers.
        seed: Seeds the head's initialisation and the sampler.
    """

    embed_dim: int = 512
    hidden: int = 0
    mining: str = "batch-hard"
    margin: float = 0.2
    products_per_batch: int = 64
    views_per_product: int = 3
    epochs_frozen: int = 2
    epochs_unfrozen: int = 2
    lr: float = 2e-3
    tail_lr: float = 3e-4
    weight_decay: float = 1e-4
    aux_weight: float = 0.5
    level_weights: tuple[float, ...] = (0.2, 0.3, 0.5)
    classifier_scale: float = 16.0
    seed: int = 0

    def check(self) -> None:
        """Raise TrainingError for values that cannot work."""
        if self.mining not in MINING_STRATEGIES:
            raise TrainingError(f"mining must be one of {', '.join(MINING_STRATEGIES)}, not {self.mining!r}")
        if self.products_per_batch < 2 or self.views_per_product < 2:
            raise TrainingError("a P x K batch needs P >= 2 products and K >= 2 views per product")
        if self.epochs_frozen < 0 or self.epochs_unfrozen < 0 or self.epochs_frozen + self.epochs_unfrozen == 0:
            raise TrainingError("train for at least one epoch (epochs_frozen + epochs_unfrozen >= 1)")
        if self.embed_dim < 1 or self.hidden < 0:
            raise TrainingError(f"bad head size embed_dim={self.embed_dim} hidden={self.hidden}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-able copy."""
        d = asdict(self)
        d["level_weights"] = list(self.level_weights)
        return d


@dataclass
class ViewSet:
    """Cached trunk activations of one split.

    Attributes:
        views: (N products, V views, *tap shape) array (float16 or float32; a memmap is fine). View 0 = shop image.
        taxonomy: (N, L) int64 class index per taxonomy level, -1 = unknown.
    """

    views: np.ndarray
    taxonomy: np.ndarray

    def __post_init__(self) -> None:
        if self.views.ndim < 3 or len(self.views) != len(self.taxonomy):
            raise TrainingError(f"views must be (N, V, ...) with one taxonomy row per product; got {self.views.shape} "
                                f"and {self.taxonomy.shape}")

    @property
    def n_products(self) -> int:
        return int(self.views.shape[0])

    @property
    def n_views(self) -> int:
        return int(self.views.shape[1])


class TaxonomyHeads(nn.Module):
    """Cosine classifiers, one per taxonomy level, over the shared L2-normalised embedding.

    logits = scale * cos(embedding, class weight). Classifying on the unit sphere pulls products of one class
    together in the very geometry retrieval uses (cosine), which is what makes category retrieval improve.
    """

    def __init__(self, dim: int, classes: Sequence[int], levels: Sequence[str], scale: float = 16.0) -> None:
        super().__init__()
        self.levels = tuple(levels)
        self.scale = scale
        self.weights = nn.ParameterList([nn.Parameter(torch.randn(n, dim) * 0.01) for n in classes])

    def forward(self, emb: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: self.scale * emb @ F.normalize(w, dim=1).T for name, w in zip(self.levels, self.weights,
                                                                                     strict=True)}


def cosine_lr(step: int, total: int, peak: float, warmup_frac: float = 0.05, floor: float = 0.02) -> float:
    """Linear warm-up over the first ``warmup_frac`` of ``total`` steps, then cosine decay to ``floor * peak``."""
    warm = max(1, int(total * warmup_frac))
    if step < warm:
        return peak * (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = x.to(device)
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


def _batched(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


@dataclass
class EpochReport:
    """One finished epoch: stage, mean losses, validation metrics, seconds."""

    epoch: int
    stage: str
    loss: float
    triplet: float
    taxonomy: float
    active: float
    val: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def line(self, total_epochs: int) -> str:
        """A one-line progress summary."""
        val = "  ".join(f"{k} {v:.3f}" for k, v in self.val.items())
        return (f"epoch {self.epoch + 1}/{total_epochs} [{self.stage}] loss {self.loss:.4f} "
                f"(triplet {self.triplet:.4f}, taxonomy {self.taxonomy:.4f}, active {self.active:.2f})  {val}  "
                f"({self.seconds:.1f}s)")


class Trainer:
    """Trains a projection head (and optionally a backbone tail) on cached trunk activations.

    Args:
        backbone: The backbone module (its tail parameters are trained in place in the unfrozen stage).
        split: How the backbone was cut when the activations were cached
            (``engine.models.backbone_split.split_backbone``).
        cfg: Hyper-parameters.
        train: Training products' cached activations.
        val: Validation products' cached activations (None = no validation metrics).
        n_classes: Classes per taxonomy level (same order as ``levels``).
        levels: Taxonomy level names.
        state_path: Where the training state is written after every epoch (crash-safely).
        data_key: Identifies the cached data; a state from other data is refused on resume.
        device: Torch device to train on.
        batch_eval: Rows per forward pass when computing features for validation.
    """

    def __init__(self, backbone: nn.Module, split: BackboneSplit, cfg: TrainConfig, train: ViewSet,
                 val: ViewSet | None, n_classes: Sequence[int], levels: Sequence[str] = TAXONOMY_LEVELS,
                 state_path: str | Path | None = None, data_key: str = "", device: str | torch.device = "cpu",
                 batch_eval: int = 2048) -> None:
        cfg.check()
        if cfg.epochs_unfrozen and split.unfreeze_blocks == 0:
            raise TrainingError("epochs_unfrozen > 0 needs activations cached with unfreeze_blocks >= 1")
        self.backbone, self.split, self.cfg = backbone, split, cfg
        self.train_set, self.val_set = train, val
        self.levels = tuple(levels)
        self.state_path = Path(state_path) if state_path else None
        self.data_key = data_key
        self.device = torch.device(device)
        self.batch_eval = batch_eval
        self.amp = self.device.type == "cuda"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            in_dim = self._feature_dim()
            self.head = ProjectionHead(in_dim, cfg.embed_dim, cfg.hidden)
            self.taxonomy = TaxonomyHeads(cfg.embed_dim, n_classes, self.levels, cfg.classifier_scale)
        self.tail = split.tail
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.head.to(self.device)
        self.taxonomy.to(self.device)
        # channels_last: about 1.5x faster convolutions on CPUs, same results up to rounding.
        self.tail.to(self.device, memory_format=torch.channels_last)
        self.optimizer = torch.optim.AdamW([
            {"params": list(self.head.parameters()) + list(self.taxonomy.parameters()), "lr": cfg.lr,
             "name": "head"},
            {"params": [p for p in self.tail.parameters()], "lr": 0.0, "name": "tail"},
        ], lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.sampler = PKSampler(train.n_products, train.n_views, cfg.products_per_batch, cfg.views_per_product,
                                 seed=cfg.seed)
        self.history: list[EpochReport] = []
        self.next_epoch = 0
        self._pooled_cache: dict[str, np.ndarray] = {}

    @property
    def total_epochs(self) -> int:
        return self.cfg.epochs_frozen + self.cfg.epochs_unfrozen

    def _feature_dim(self) -> int:
        sample = torch.from_numpy(np.asarray(self.train_set.views[:1, 0], dtype=np.float32)).to(self.device)
        with torch.no_grad():
            return int(self.split.tail.to(self.device).eval()(sample).shape[1])

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast("cuda", dtype=torch.float16) if self.amp else contextlib.nullcontext()

    # ---- features -----------------------------------------------------------------------------------------------

    def pooled(self, views: ViewSet, name: str | None = None) -> np.ndarray:
        """Tail output for every view: (N, V, feature_dim) float32; cached under ``name`` while the tail is frozen."""
        if name and name in self._pooled_cache:
            return self._pooled_cache[name]
        flat = views.views.reshape(-1, *views.views.shape[2:])
        out = None
        self.tail.eval()
        with torch.inference_mode():
            for sl in _batched(len(flat), self.batch_eval):
                x = _to_device(torch.from_numpy(np.array(flat[sl])), self.device).float()
                with self._autocast():
                    f = self.tail(x).float().cpu().numpy()
                if out is None:
                    out = np.empty((len(flat), f.shape[1]), np.float32)
                out[sl] = f
        assert out is not None
        result = out.reshape(views.n_products, views.n_views, -1)
        if name:
            self._pooled_cache[name] = result
        return result

    def embed_pooled(self, pooled: np.ndarray) -> np.ndarray:
        """Head + L2 normalisation over pooled features of any leading shape."""
        flat = pooled.reshape(-1, pooled.shape[-1])
        out = np.empty((len(flat), self.cfg.embed_dim), np.float32)
        self.head.eval()
        with torch.inference_mode():
            for sl in _batched(len(flat), self.batch_eval):
                x = torch.from_numpy(np.ascontiguousarray(flat[sl])).to(self.device)
                out[sl] = F.normalize(self.head(x).float(), dim=1).cpu().numpy()
        return out.reshape(*pooled.shape[:-1], self.cfg.embed_dim)

    def validate(self, frozen: bool) -> dict[str, float]:
        """Synthetic street-to-shop recall@1/@20 and category recall@1 (finest level) on the validation products."""
        if self.val_set is None or self.val_set.n_products < 2:
            return {}
        pooled = self.pooled(self.val_set, "val" if frozen else None)
        emb = self.embed_pooled(pooled)
        out: dict[str, float] = {}
        if self.val_set.n_views >= 2:
            rec = synthetic_recall(emb)
            out["val_r@1"] = rec[1]
            if 20 in rec:
                out["val_r@20"] = rec[20]
        out["val_cat_r@1"] = category_recall_at_1(emb[:, 0], self.val_set.taxonomy[:, -1])
        return out

    # ---- state --------------------------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {"format": TRAIN_STATE_FORMAT, "config": self.cfg.as_dict(), "data_key": self.data_key,
                "next_epoch": self.next_epoch, "head": self.head.state_dict(), "taxonomy": self.taxonomy.state_dict(),
                "tail": self.tail.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "history": [asdict(h) for h in self.history]}

    def save_state(self) -> None:
        """Write the training state crash-safely (temp file + fsync + rename)."""
        if self.state_path is None:
            return
        state = self._state()
        write_atomically(self.state_path, lambda f: torch.save(state, f))

    def load_state(self) -> bool:
        """Resume from ``state_path`` if it exists. Returns whether a state was loaded.

        Raises:
            TrainingError: The state was written for another config or other data.
        """
        if self.state_path is None or not self.state_path.is_file():
            return False
        try:
            state = torch.load(self.state_path, map_location=self.device, weights_only=True)
        except Exception as exc:  # truncated or foreign file
            raise TrainingError(f"cannot read training state {self.state_path}: {exc}") from exc
        if state.get("config") != self.cfg.as_dict():
            raise TrainingError(f"training state {self.state_path} was written with another config; start a fresh "
                                "run (without --resume) or use the same options")
        if state.get("data_key") != self.data_key:
            raise TrainingError(f"training state {self.state_path} was written for other data (cache key "
                                f"{state.get('data_key')!r}, now {self.data_key!r})")
        self.head.load_state_dict(state["head"])
        self.taxonomy.load_state_dict(state["taxonomy"])
        self.tail.load_state_dict(state["tail"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.history = [EpochReport(**h) for h in state["history"]]
        self.next_epoch = int(state["next_epoch"])
        return True

    def export_state_dict(self, half: bool = False) -> dict[str, torch.Tensor]:
        """The fine-tuned part of the ``EmbeddingNet`` state dict: ``head.*`` plus the tail's ``backbone.*`` keys.

        Args:
            half: Store floating-point tensors as float16 (half the file size; loading casts them back to the
                model's float32, so the served model is exactly the stored weights).
        """
        net = EmbeddingNet(self.backbone, self.head)
        full = net.state_dict()
        prefixes = ("head.",) + tuple(f"backbone.{p}" for p in self.split.tail_prefixes)
        out = {}
        for k, v in full.items():
            if k.startswith(prefixes):
                v = v.detach().cpu().clone()
                out[k] = v.half() if half and v.is_floating_point() else v
        return out

    # ---- training -----------------------------------------------------------------------------------------------

    def _set_stage(self, stage: str) -> None:
        unfrozen = stage == "unfrozen"
        for p in self.tail.parameters():
            p.requires_grad_(unfrozen)

    def _stage_of(self, epoch: int) -> tuple[str, int, int]:
        """(stage, epoch index within the stage, epochs in the stage)."""
        if epoch < self.cfg.epochs_frozen:
            return "frozen", epoch, self.cfg.epochs_frozen
        return "unfrozen", epoch - self.cfg.epochs_frozen, self.cfg.epochs_unfrozen

    def _train_epoch(self, epoch: int, progress: Callable[[int, int, float], None] | None) -> EpochReport:
        stage, in_stage, stage_epochs = self._stage_of(epoch)
        self._set_stage(stage)
        steps = len(self.sampler)
        total_steps = steps * stage_epochs
        frozen = stage == "frozen"
        pooled = self.pooled(self.train_set, "train") if frozen else None
        views = self.train_set.views
        self.head.train()
        self.taxonomy.train()
        self.tail.train()
        freeze_batchnorm(self.tail)
        sums = np.zeros(4)
        n = 0
        start = time.perf_counter()
        for step, (rows, view_ids) in enumerate(self.sampler.epoch_batches(epoch)):
            global_step = in_stage * steps + step
            self.optimizer.param_groups[0]["lr"] = cosine_lr(global_step, total_steps, self.cfg.lr)
            self.optimizer.param_groups[1]["lr"] = 0.0 if frozen else cosine_lr(global_step, total_steps,
                                                                              self.cfg.tail_lr)
            labels = torch.from_numpy(rows).to(self.device)
            targets = torch.from_numpy(self.train_set.taxonomy[rows]).to(self.device)
            with self._autocast():
                if frozen:
                    x = torch.from_numpy(pooled[rows, view_ids]).to(self.device)
                else:
                    # float16 cache rows go to the device as they are and are widened there (exactly)
                    tap = torch.from_numpy(np.asarray(views[rows, view_ids]))
                    x = self.tail(_to_device(tap, self.device).float())
                emb = F.normalize(self.head(x).float(), dim=1)
                t_loss, stats = triplet_loss(emb, labels, self.cfg.mining, self.cfg.margin)
                aux = hierarchical_classification_loss(self.taxonomy(emb), targets, self.levels,
                                                       self.cfg.level_weights) if self.cfg.aux_weight else \
                    emb.new_zeros(())
                loss = t_loss + self.cfg.aux_weight * aux
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            sums += [float(loss.detach()), stats.loss, float(aux.detach()), stats.active]
            n += 1
            if progress:
                progress(step + 1, steps, sums[0] / n)
        self.head.eval()
        self.taxonomy.eval()
        self.tail.eval()
        if not frozen:
            self._pooled_cache.clear()
        val = self.validate(frozen)
        means = sums / max(n, 1)
        return EpochReport(epoch, stage, float(means[0]), float(means[1]), float(means[2]), float(means[3]), val,
                           time.perf_counter() - start)

    def fit(self, resume: bool = False, progress: Callable[[int, int, float], None] | None = None,
            on_epoch: Callable[[EpochReport], None] | None = None,
            stop_after: int | None = None) -> list[EpochReport]:
        """Train until ``epochs_frozen + epochs_unfrozen`` epochs are done.

        Args:
            resume: Continue from the saved training state when there is one.
            progress: Called after every step with (step, steps in epoch, running mean loss).
            on_epoch: Called after every epoch, once its state is saved (e.g. to export a checkpoint).
            stop_after: Stop after this many epochs of this call (tests use it to simulate an interruption).

        Returns:
            The history of every epoch so far (including resumed ones).
        """
        if resume:
            self.load_state()
        elif self.state_path is not None and self.state_path.exists():
            self.state_path.unlink()
        done_now = 0
        while self.next_epoch < self.total_epochs:
            if stop_after is not None and done_now >= stop_after:
                break
            report = self._train_epoch(self.next_epoch, progress)
            self.history.append(report)
            self.next_epoch += 1
            self.save_state()
            log.debug("%s", report.line(self.total_epochs))
            if on_epoch:
                on_epoch(report)
            done_now += 1
        return self.history
