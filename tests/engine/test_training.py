"""The trainer on a seeded toy problem with exact ground truth: it must learn (and these tests fail if it does not).

Each toy product is a random identity vector in 8 dimensions; each of its views adds large nuisance noise in 24
other dimensions (the "background"). Cosine retrieval on the raw features is dominated by the noise; a head that
learns to ignore those dimensions retrieves the right product.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from engine.metrics import category_recall_at_1, synthetic_recall
from engine.models.backbone_split import split_backbone
from engine.train.trainer import TrainConfig, Trainer, TrainingError, ViewSet, cosine_lr

N_CLASSES = (2, 4, 8)


def toy_views(n_products: int, n_views: int, seed: int) -> ViewSet:
    rng = np.random.default_rng(seed)
    article = rng.integers(0, 8, n_products)
    # Products of one article type share a direction, so category retrieval is learnable too.
    centres = rng.normal(0, 1, (8, 8))
    identity = centres[article] + 0.6 * rng.normal(0, 1, (n_products, 8))
    views = np.empty((n_products, n_views, 32), np.float32)
    views[:, :, :8] = identity[:, None, :] + 0.15 * rng.normal(0, 1, (n_products, n_views, 8))
    views[:, :, 8:] = 2.5 * rng.normal(0, 1, (n_products, n_views, 24))
    taxonomy = np.stack([article // 4, article // 2, article], axis=1).astype(np.int64)
    return ViewSet(views, taxonomy)


def make_trainer(tmp_path: Path | None = None, **overrides) -> Trainer:
    cfg = TrainConfig(**{"embed_dim": 16, "hidden": 0, "products_per_batch": 16, "views_per_product": 4,
                         "epochs_frozen": 30, "epochs_unfrozen": 0, "lr": 1e-2, "aux_weight": 0.5, "seed": 0,
                         **overrides})
    backbone = nn.Identity()
    return Trainer(backbone, split_backbone(backbone, 0), cfg, toy_views(120, 4, seed=1), toy_views(60, 4, seed=2),
                   N_CLASSES, state_path=tmp_path / "state.pt" if tmp_path else None, data_key="toy")


def raw_val_metrics(trainer: Trainer) -> tuple[float, float]:
    raw = trainer.val_set.views / np.linalg.norm(trainer.val_set.views, axis=2, keepdims=True)
    return synthetic_recall(raw)[1], category_recall_at_1(raw[:, 0], trainer.val_set.taxonomy[:, -1])


@pytest.mark.parametrize("mining", ["batch-hard", "semi-hard"])
def test_loss_decreases_and_held_out_recall_beats_raw_features(mining: str) -> None:
    torch.manual_seed(123)  # the trainer must not depend on the global seed: this must not matter
    trainer = make_trainer(mining=mining)
    raw_r1, raw_cat = raw_val_metrics(trainer)
    history = trainer.fit()
    assert len(history) == 30
    assert history[-1].loss < 0.3 * history[0].loss
    val = history[-1].val
    assert raw_r1 < 0.5  # the toy problem is hard for raw features ...
    assert val["val_r@1"] > raw_r1 + 0.6  # ... and the trained head solves much of it, on unseen products
    assert val["val_cat_r@1"] > raw_cat + 0.4


def test_a_head_with_no_training_signal_does_not_improve() -> None:
    """The same test must be able to fail: with a zero learning rate the recall stays at the untrained level."""
    trainer = make_trainer(lr=0.0, epochs_frozen=2)
    before = trainer.validate(frozen=True)["val_r@1"]
    history = trainer.fit()
    assert history[-1].val["val_r@1"] == pytest.approx(before)


def test_resuming_after_an_interruption_reaches_the_same_weights(tmp_path: Path) -> None:
    whole = make_trainer(tmp_path / "a", epochs_frozen=4)
    whole.fit()
    first = make_trainer(tmp_path / "b", epochs_frozen=4)
    first.fit(stop_after=2)  # "killed" after epoch 2: only the state file survives
    assert (tmp_path / "b" / "state.pt").is_file()
    second = make_trainer(tmp_path / "b", epochs_frozen=4)
    history = second.fit(resume=True)
    assert [h.epoch for h in history] == [0, 1, 2, 3]
    for (name, a), (_, b) in zip(whole.head.state_dict().items(), second.head.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert history[-1].val == whole.history[-1].val


def test_resume_refuses_a_state_from_another_config(tmp_path: Path) -> None:
    make_trainer(tmp_path, epochs_frozen=1).fit()
    other = make_trainer(tmp_path, epochs_frozen=1, margin=0.5)
    with pytest.raises(TrainingError, match="another config"):
        other.fit(resume=True)


def test_config_checks() -> None:
    with pytest.raises(TrainingError):
        TrainConfig(mining="random").check()
    with pytest.raises(TrainingError):
        TrainConfig(epochs_frozen=0, epochs_unfrozen=0).check()
    with pytest.raises(TrainingError, match="unfreeze_blocks"):
        make_trainer(epochs_unfrozen=1)


def test_cosine_schedule_warms_up_then_decays() -> None:
    lrs = [cosine_lr(s, 100, 1.0) for s in range(100)]
    assert lrs[0] < lrs[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[5:], lrs[6:], strict=False))
    assert lrs[-1] < 0.05


@pytest.mark.cuda
def test_mixed_precision_training_on_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    backbone = nn.Identity()
    cfg = TrainConfig(embed_dim=16, hidden=0, products_per_batch=16, views_per_product=4, epochs_frozen=3, lr=1e-2)
    trainer = Trainer(backbone, split_backbone(backbone, 0), cfg, toy_views(120, 4, 1), toy_views(60, 4, 2),
                      N_CLASSES, device="cuda")
    assert trainer.amp
    history = trainer.fit()
    assert history[-1].loss < history[0].loss
