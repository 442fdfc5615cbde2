"""The text tower: vocabulary remapping, tokens, checkpoint + manifest keyed to the image model, training steps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.models.text_tower import (
    PAD,
    SOT,
    UNK,
    TextEncoder,
    TextTower,
    TextTowerConfig,
    TextTowerError,
    TextVocabulary,
    bpe_tokenizer,
    load_text_tower,
    save_text_tower,
    text_checkpoint_path,
)
from engine.text_metrics import label_precision, title_retrieval, top_k_exact
from engine.train.text import TextTrainConfig, train_text

TEXTS = ["Nike Men Blue Tshirt", "Puma Women Black Shoes", "Navy Blue Tshirts for Men"]


def test_vocabulary_keeps_only_catalog_tokens_and_maps_the_rest_to_unknown():
    vocab = TextVocabulary.from_texts(TEXTS)
    tok = bpe_tokenizer()
    assert vocab.bpe_ids == sorted({b for t in TEXTS for b in tok.encode(t)})
    assert vocab.size == len(vocab.bpe_ids) + 4 and vocab.eot == vocab.size - 1
    ids = vocab.ids("blue shoes")
    assert UNK not in ids and len(ids) == 2
    assert vocab.ids("zebra") == [UNK] * len(tok.encode("zebra"))
    assert vocab.unknown_share("zebra blue") == pytest.approx(0.5)
    tokens = vocab.encode(["blue shoes", "x " * 40], context_length=8)
    assert tokens.shape == (2, 8)
    assert tokens[0].tolist() == [SOT, *ids, vocab.eot, PAD, PAD, PAD, PAD]
    assert tokens[1, 0] == SOT and tokens[1, -1] == vocab.eot  # truncated, still ended
    assert int(tokens.max()) == vocab.eot  # argmax pooling reads the end token


def _tiny(dim: int = 16) -> tuple[TextTower, TextVocabulary]:
    torch.manual_seed(0)
    vocab = TextVocabulary.from_texts(TEXTS)
    return TextTower(TextTowerConfig(dim=dim, context_length=12, width=32, heads=2, layers=1), vocab.size), vocab


def test_tower_outputs_unit_vectors_of_the_image_dimension():
    tower, vocab = _tiny(dim=24)
    tower.eval()
    out = tower(vocab.encode(["blue tshirt", "black shoes"], 12))
    assert out.shape == (2, 24)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)


def test_checkpoint_round_trip_and_fingerprint_refusal(tmp_path):
    tower, vocab = _tiny()
    path = text_checkpoint_path(tmp_path / "text", "abc123")
    assert path == tmp_path / "text" / "abc123.pt"
    manifest = save_text_tower(path, tower, vocab, {"image_fingerprint": "abc123"})
    assert manifest["meta"]["image_fingerprint"] == "abc123" and json.loads(path.with_suffix(".pt.json").read_text())
    loaded, vocab2, meta = load_text_tower(path, "abc123")
    assert vocab2.bpe_ids == vocab.bpe_ids and meta["sha256"] == manifest["sha256"]
    enc = TextEncoder(loaded, vocab2, meta)
    tower.eval()
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(tower(vocab.encode(["blue tshirt"], 12)), dim=-1).numpy()
    assert np.allclose(enc.encode(["blue tshirt"]), expected, atol=2e-3)  # fp16 weights on disk
    with pytest.raises(TextTowerError, match="trained for image model abc123.*served image model is other.*"
                                             "train-text"):
        load_text_tower(path, "other")
    with pytest.raises(TextTowerError, match="no text model.*train-text"):
        load_text_tower(tmp_path / "missing.pt", "abc123")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(TextTowerError, match="sha256"):
        load_text_tower(path, "abc123")


def test_a_few_steps_of_training_pull_texts_onto_their_images_and_resume(tmp_path):
    tower, vocab = _tiny(dim=8)
    rng = np.random.default_rng(0)
    targets = rng.normal(size=(3, 8)).astype(np.float32)
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    cfg = TextTrainConfig(epochs=40, batch_size=3, lr=1e-2, warmup_steps=2)
    state = tmp_path / "state.pt"
    history = train_text(tower, vocab, targets, lambda idx, r: [TEXTS[i] for i in idx], cfg, state_file=state,
                         progress=False)
    assert len(history) == 40 and history[-1]["loss"] < history[0]["loss"]
    with torch.inference_mode():
        out = tower(vocab.encode(TEXTS, 12)).numpy()
    assert ((out @ targets.T).argmax(axis=1) == np.arange(3)).all()
    more = train_text(tower, vocab, targets, lambda idx, r: [TEXTS[i] for i in idx],
                      TextTrainConfig(epochs=42, batch_size=3, lr=1e-2, warmup_steps=2), state_file=state,
                      resume=True, progress=False)
    assert [h["epoch"] for h in more] == list(range(1, 43))  # resumed at epoch 41, not from scratch


def test_kagl_metrics_on_a_hand_made_ranking():
    gallery_titles = ["a", "a", "b", "c"]
    ranked = np.array([[0, 2], [3, 2], [2, 1]])
    m = title_retrieval(ranked, ["a", "b", "b"], gallery_titles, ks=(1, 2))
    # "a": 1 of its 2 items at rank 1 -> recall@1 0.5; "b" (1 item): miss at 1 then hit at 2; second "b": hit at 1
    assert m["recall@1"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert m["recall@2"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert m["mrr@2"] == pytest.approx((1 + 0.5 + 1) / 3)
    p = label_precision(np.array([[0, 1], [2, 3]]), ["x", "y"], ["x", "y", "y", None], ks=(1, 2))
    assert p == {"precision@1": 1.0, "precision@2": 0.5}
    q = np.eye(3, dtype=np.float32)
    assert top_k_exact(q, np.array([[0, 1, 0], [1, 0, 0.5]], np.float32), 2).tolist() == [[1, 0], [0, 1], [1, 0]]
