"""The taxonomy classifier mixed into the embedding: the formula, checkpoints, the weight override, the fit."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine import EmbedderError, EmbeddingNet, ProjectionHead, create_embedder, save_checkpoint
from engine.models.heads import TaxonomyClassifier
from indexer.training.classifier import ClassifierConfig, choose_weight, fit_classifier, mix, weight_grid_metrics

SIZE = 64
CLASSES = ["Tshirts", "Shirts", "Jeans", "Watches", "Heels"]


def net_with_classifier(weight: float, hidden: int = 0) -> tuple[EmbeddingNet, dict]:
    torch.manual_seed(0)
    base = create_embedder("efficientnet_lite0", weights="random", input_size=SIZE, device="cpu")
    head = ProjectionHead(base.dim, 16)
    clf = TaxonomyClassifier(base.dim, CLASSES, hidden=hidden)
    net = EmbeddingNet(base.module.backbone, head, clf, weight)
    meta = {"backbone": "efficientnet_lite0", "input_size": SIZE, "head": head.spec,
            "classifier": {**clf.spec, "weight": weight}}
    return net.eval(), meta


def test_mixed_similarity_is_appearance_plus_bhattacharyya() -> None:
    net, _ = net_with_classifier(0.3, hidden=8)
    x = torch.randn(4, 3, SIZE, SIZE)
    with torch.no_grad():
        out = net(x)
        feats = net.backbone(x)
        e = F.normalize(net.head(feats), dim=1)
        p = torch.softmax(net.classifier(feats), dim=1)
    assert out.shape == (4, 16 + len(CLASSES))
    assert torch.allclose(out.norm(dim=1), torch.ones(4), atol=1e-5)
    sim = out @ out.T
    expected = 0.7 * (e @ e.T) + 0.3 * (p.sqrt() @ p.sqrt().T)
    assert torch.allclose(sim, expected, atol=1e-5)
    # the numpy helper that chooses the weight on val computes exactly what the served net computes
    assert np.allclose(mix(net.head(feats).detach().numpy(), p.numpy(), 0.3), out.numpy(), atol=1e-5)
    assert torch.allclose(net.classify(x), p, atol=1e-6)
    with pytest.raises(ValueError):
        EmbeddingNet(net.backbone, net.head, net.classifier, 1.5)


def test_checkpoint_with_classifier_serves_mixed_embeddings(tmp_path: Path) -> None:
    net, meta = net_with_classifier(0.25)
    path = tmp_path / "model.pt"
    save_checkpoint(path, net.state_dict(), meta)
    emb = create_embedder(checkpoint=str(path), input_size=SIZE, device="cpu")
    assert emb.dim == 16 + len(CLASSES) and emb.classifier_spec["weight"] == 0.25
    assert emb.describe()["classifier"] == {"level": "article_type", "classes": len(CLASSES), "weight": 0.25}
    batch = torch.randn(3, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = F.normalize(net(batch), dim=1).numpy()
    assert np.allclose(emb.embed_tensors(batch), expected, atol=1e-5)

    # The weight can be overridden (model.taxonomy_weight); it changes the vectors and so the fingerprint.
    other = create_embedder(checkpoint=str(path), input_size=SIZE, device="cpu", taxonomy_weight=0.0)
    assert other.fingerprint != emb.fingerprint
    vec = other.embed_tensors(batch)
    assert np.allclose(vec[:, 16:], 0.0) and np.allclose(np.linalg.norm(vec[:, :16], axis=1), 1.0, atol=1e-5)
    with pytest.raises(EmbedderError, match="model.taxonomy_weight"):
        create_embedder(checkpoint=str(path), input_size=SIZE, device="cpu", taxonomy_weight=1.5)

    # A checkpoint whose classifier spec does not fit its tensors is refused with the config key to fix.
    bad = dict(meta, classifier={**meta["classifier"], "classes": CLASSES[:3]})
    save_checkpoint(tmp_path / "bad.pt", net.state_dict(), bad)
    with pytest.raises(EmbedderError, match="model.checkpoint"):
        create_embedder(checkpoint=str(tmp_path / "bad.pt"), input_size=SIZE, device="cpu")
    missing = dict(meta, classifier={k: v for k, v in meta["classifier"].items() if k != "classes"})
    save_checkpoint(tmp_path / "missing.pt", net.state_dict(), missing)
    with pytest.raises(EmbedderError, match="classifier spec"):
        create_embedder(checkpoint=str(tmp_path / "missing.pt"), input_size=SIZE, device="cpu")


def test_fit_classifier_learns_separable_classes() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(len(CLASSES), 24)).astype(np.float32) * 3
    y = rng.integers(0, len(CLASSES), 600)
    x = centres[y] + rng.normal(size=(600, 24)).astype(np.float32)
    y_noisy = y.copy()
    y_noisy[:20] = -1  # unknown labels are ignored
    cfg = ClassifierConfig(hidden=32, epochs=15, batch_size=64, lr=5e-3, dropout=0.1)
    clf = fit_classifier(x[:500], y_noisy[:500], CLASSES, cfg)
    with torch.no_grad():
        acc = (clf(torch.from_numpy(x[500:])).argmax(1).numpy() == y[500:]).mean()
    assert acc > 0.95
    again = fit_classifier(x[:500], y_noisy[:500], CLASSES, cfg)  # seeded: the same weights
    assert all(torch.equal(a, b) for a, b in zip(clf.state_dict().values(), again.state_dict().values(), strict=True))
    with pytest.raises(ValueError):
        fit_classifier(x[:5], np.full(5, -1), CLASSES, cfg)


def test_weight_grid_and_choice() -> None:
    rng = np.random.default_rng(1)
    n, v, d = 40, 2, 8
    labels = np.arange(n) % 4
    emb = rng.normal(size=(n, 1, d)).repeat(v, axis=1) + 0.05 * rng.normal(size=(n, v, d))
    post = np.eye(4)[labels][:, None, :].repeat(v, axis=1) * 0.9 + 0.025  # confident, correct posteriors
    rows = weight_grid_metrics(emb.astype(np.float32), post.astype(np.float32), labels, (0.0, 0.2, 0.5))
    assert [r["weight"] for r in rows] == [0.0, 0.2, 0.5]
    assert rows[0]["category_r@1"] < 0.5 < 0.9 < rows[-1]["category_r@1"]
    assert all(math.isfinite(r["street_r@20"]) for r in rows)
    # the best category recall wins only among weights that keep street-to-shop recall@20
    table = [{"weight": 0.0, "category_r@1": 0.70, "street_r@20": 0.95},
             {"weight": 0.2, "category_r@1": 0.78, "street_r@20": 0.949},
             {"weight": 0.4, "category_r@1": 0.81, "street_r@20": 0.92}]
    assert choose_weight(table) == 0.2
    assert choose_weight(table, tolerance=0.05) == 0.4
    small = [{k: v for k, v in r.items() if k != "street_r@20"} | {"street_r@1": 0.9 - r["weight"]} for r in table]
    assert choose_weight(small) == 0.0 and choose_weight(small, tolerance=0.25) == 0.2  # r@1 stands in for r@20
    assert choose_weight([{k: v for k, v in r.items() if k == "weight" or k.startswith("cat")} for r in table]) == 0.4
    few = weight_grid_metrics(emb[:10].astype(np.float32), post[:10].astype(np.float32), labels[:10], (0.0, 0.5))
    assert all("street_r@20" not in r and "street_r@1" in r for r in few)
