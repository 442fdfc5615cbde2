"""The type-aware outfit model: shapes, checkpoints, and that training learns planted compatibility."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.outfits.model import (
    OutfitModel,
    OutfitModelError,
    cosine_pair_scorer,
    load_outfit_model,
    model_pair_scorer,
    pair_table,
    save_outfit_model,
)
from engine.outfits.training import (
    CompatConfig,
    OutfitQuestions,
    SlotConfig,
    slot_accuracy,
    train_compatibility,
    train_slot_classifier,
)

SLOTS = ("top", "bottom", "shoes")


def test_pair_table_is_symmetric_and_covers_every_pair():
    t = pair_table(4)
    assert torch.equal(t, t.T)
    assert sorted(set(t.flatten().tolist())) == list(range(10))


def test_compatibility_is_a_bounded_symmetric_score():
    torch.manual_seed(0)
    model = OutfitModel(16, SLOTS, embed_dim=8, hidden=12)
    g = model.general_embeddings(np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32))
    ab = model.compatibility(g[0], 0, g[1:], 2)
    ba = np.array([model.compatibility(g[i], 2, g[:1], 0)[0] for i in range(1, 5)])
    assert ab.shape == (4,) and np.allclose(ab, ba, atol=1e-5)
    assert (ab <= 0).all() and (ab >= -4).all()
    scorer = model_pair_scorer(model, g, np.array([0, 2, 2, 2, 2]))
    assert np.allclose(scorer(np.zeros(4, np.int64), np.arange(1, 5)), ab, atol=1e-5)


def test_checkpoint_round_trip_and_tamper_detection(tmp_path):
    torch.manual_seed(0)
    model = OutfitModel(16, SLOTS, embed_dim=8, hidden=0, slot_hidden=0, dropout=0.1)
    path = tmp_path / "m.pt"
    manifest = save_outfit_model(path, model, {"fingerprint": "abc", "metrics": {"fitb": 0.5}})
    assert json.loads((tmp_path / "m.pt.json").read_text())["sha256"] == manifest["sha256"]
    loaded, meta = load_outfit_model(path)
    assert meta["fingerprint"] == "abc" and meta["model"]["slots"] == list(SLOTS)
    x = np.random.default_rng(1).normal(size=(3, 16)).astype(np.float32)
    assert np.allclose(loaded.general_embeddings(x), model.general_embeddings(x))
    with pytest.raises(ValueError, match="fingerprint"):
        save_outfit_model(tmp_path / "n.pt", model, {})
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(OutfitModelError, match="sha256"):
        load_outfit_model(path)
    with pytest.raises(OutfitModelError, match="not found"):
        load_outfit_model(tmp_path / "missing.pt")


def planted_task(seed: int, n_per_slot: int = 120, styles: int = 4, dim: int = 32):
    """Items of 3 slots; a hidden style in 4 weak dimensions decides compatibility; 28 loud nuisance dims."""
    rng = np.random.default_rng(seed)
    n = n_per_slot * len(SLOTS)
    slots = np.repeat(np.arange(len(SLOTS)), n_per_slot)
    style = rng.integers(0, styles, n)
    v = np.zeros((n, dim), np.float32)
    v[np.arange(n), style] = 0.6
    v[:, styles:] = rng.normal(size=(n, dim - styles))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    by = {(s, st): np.nonzero((slots == s) & (style == st))[0] for s in range(3) for st in range(styles)}

    def outfits(k: int):
        out = []
        for _ in range(k):
            st = rng.integers(0, styles)
            out.append([int(rng.choice(by[(s, st)])) for s in range(3)])
        return out

    def questions(k: int) -> OutfitQuestions:
        q = OutfitQuestions()
        for o in outfits(k):
            q.compat_outfits.append(o)
            q.compat_labels.append(1)
            q.compat_outfits.append([int(rng.choice(np.nonzero(slots == s)[0])) for s in range(3)])
            q.compat_labels.append(0)
            wrong = list(rng.choice(np.nonzero((slots == 2) & (style != style[o[2]]))[0], 3, replace=False))
            answers = [o[2], *map(int, wrong)]
            q.fitb_items.append(o[:2])
            q.fitb_answers.append(answers)
            q.fitb_correct.append(0)
        return q

    return v, slots, style, outfits, questions


def test_training_learns_planted_compatibility_and_beats_visual_similarity():
    torch.set_num_threads(1)
    v, slots, _, outfits, questions = planted_task(0)
    train = outfits(1500)
    test = questions(150)
    cfg = CompatConfig(embed_dim=16, hidden=32, dropout=0.0, epochs=6, batch_size=256, lr=3e-3, seed=0)
    model, history = train_compatibility(v, slots, 3, SLOTS, train, questions(50), cfg)
    assert len(history) == 6 and history[-1].loss < history[0].loss
    learned = test.evaluate(model_pair_scorer(model, model.general_embeddings(v), slots))
    baseline = test.evaluate(cosine_pair_scorer(v))
    assert learned["fitb"] >= 0.8 and learned["auc"] >= 0.85, learned
    assert learned["fitb"] >= baseline["fitb"] + 0.2, (learned, baseline)


def test_slot_classifier_learns_slots():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    labels = rng.integers(0, 4, 600)  # class 3 = "none"
    x = (centres[labels] + 0.3 * rng.normal(size=(600, 16))).astype(np.float32)
    model = OutfitModel(16, SLOTS, embed_dim=4, hidden=0, slot_hidden=16)
    train_slot_classifier(model, x[:500], labels[:500], SlotConfig(hidden=16, epochs=20, batch_size=64))
    acc = slot_accuracy(model, x[500:], labels[500:])
    assert acc["accuracy"] >= 0.95 and acc["n"] == 100 and "recall/none" in acc
