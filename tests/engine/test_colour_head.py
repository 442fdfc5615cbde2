"""The colour head (engine/models/colour_head.py, engine/train/colour_head.py): it learns colours from vectors, and
its keyed checkpoint round-trips and refuses the wrong image model or a damaged file."""

from __future__ import annotations

import numpy as np
import pytest

from engine.models.colour_head import ColourHead, ColourHeadError, load_colour_head, save_colour_head
from engine.train.colour_head import ColourTrainConfig, accuracy, train_colour_head

COLOURS = ["Black", "Blue", "Red"]


def toy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors whose colour is which of three directions they lean to, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    x = rng.normal(0, 1, (n, 16)).astype(np.float32)
    x[np.arange(n), labels] += 3.0
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def test_training_learns_and_keeps_the_best_val_epoch() -> None:
    x, y = toy(600, 0)
    vx, vy = toy(200, 1)
    cfg = ColourTrainConfig(hidden=32, layers=1, epochs=8, batch_size=64, lr=1e-2, colour_bins=0)
    head, history = train_colour_head(x, y, COLOURS, cfg, None, (vx, None, vy), progress=False)
    assert len(history) == 8 and all("val_accuracy" in r for r in history)
    assert accuracy(head, vx, vy) == max(r["val_accuracy"] for r in history)
    assert accuracy(head, vx, vy) > 0.9  # chance is 1/3
    post = head.posterior(vx)
    assert post.shape == (200, 3) and np.allclose(post.sum(axis=1), 1, atol=1e-5)


def test_colour_descriptors_carry_what_the_vectors_lack() -> None:
    """Vectors that say nothing about colour, descriptors that do: only a head that reads both learns it."""
    rng = np.random.default_rng(3)
    y, vy = rng.integers(0, 3, 600), rng.integers(0, 3, 200)
    x, vx = (rng.normal(size=(n, 16)).astype(np.float32) for n in (600, 200))

    def descriptors(labels: np.ndarray) -> np.ndarray:  # 2 bins per channel: 8-d
        d = rng.uniform(0, 0.2, (len(labels), 8)).astype(np.float32)
        d[np.arange(len(labels)), labels] += 1.0
        return d

    d, vd = descriptors(y), descriptors(vy)
    cfg = ColourTrainConfig(hidden=32, layers=1, epochs=8, batch_size=64, lr=1e-2, colour_bins=2)
    head, _ = train_colour_head(x, y, COLOURS, cfg, d, (vx, vd, vy), progress=False)
    blind, _ = train_colour_head(x, y, COLOURS, ColourTrainConfig(**{**cfg.__dict__, "colour_bins": 0}), None,
                                 (vx, None, vy), progress=False)
    assert accuracy(head, vx, vy, vd) > 0.9 > 0.5 > accuracy(blind, vx, vy)
    with pytest.raises(ValueError, match="2-bin colour descriptors"):
        head.posterior(vx)


def test_checkpoint_round_trip_and_refusals(tmp_path) -> None:
    head = ColourHead(16, COLOURS, hidden=8, layers=1, colour_bins=2)
    path = tmp_path / "colour" / "abc.pt"
    save_colour_head(path, head, {"image_fingerprint": "abc"})
    loaded, meta = load_colour_head(path, "abc")
    x, _ = toy(20, 2)
    d = np.random.default_rng(0).uniform(size=(20, 8)).astype(np.float32)
    assert loaded.colours == COLOURS and meta["head"]["hidden"] == 8 and loaded.colour_bins == 2
    assert np.allclose(loaded.posterior(x, d), head.posterior(x, d), atol=1e-2)  # fp16 weights on disk
    with pytest.raises(ColourHeadError, match="trained for image model abc"):
        load_colour_head(path, "other")
    with pytest.raises(ColourHeadError, match="train-colour-head"):
        load_colour_head(tmp_path / "missing.pt", "abc")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ColourHeadError, match="sha256"):
        load_colour_head(path, "abc")


def test_posterior_refuses_vectors_of_another_size() -> None:
    with pytest.raises(ValueError, match="16-d"):
        ColourHead(16, COLOURS).posterior(np.zeros((2, 8), np.float32))
