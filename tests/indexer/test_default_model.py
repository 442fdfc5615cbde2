"""The fine-tuned default model that `make run` serves: it is the configured one, intact, trained without the test
products, and better than its own backbone on a seeded sample of test products (synthetic street photos and
category neighbours). The full measurement is bench/quality.py; this is the guard that runs in `make test`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from engine import create_embedder
from engine.files import file_sha256
from engine.metrics import category_recall_at_1, synthetic_recall
from engine.models.checkpoints import load_checkpoint
from indexer.catalog.splits import read_splits
from indexer.datasets.synthetic import StreetPhotoSynthesizer
from indexer.settings import load_settings
from indexer.training.embedding import TaxonomyVocab, read_products
from tests.conftest import CATALOG_CSV, REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_model() -> dict:
    settings = load_settings(REPO / "config.toml", env={})
    m = settings.model
    if not m.checkpoint:
        # Issue 4 is open: the fine-tuned model has not been made the served default yet (config.toml has no
        # checkpoint). Once it is, every check below applies.
        pytest.skip("config.toml [model] checkpoint is empty: the fine-tuned default is not in place yet (issue 4)")
    path = settings.resolve_path(m.checkpoint)
    ckpt = load_checkpoint(path)  # verifies the sha256 in the manifest beside it
    meta = ckpt["meta"]
    # The serving size may differ from the training size (chosen on validation products, docs/training.md); the
    # test below measures the model at the configured size, so a size that loses the fine-tuning's gain fails it.
    assert m.input_size >= meta["input_size"], "serving below the training size was not validated"
    return {"settings": settings, "path": path, "meta": meta}


def test_trained_on_non_test_products_only(default_model: dict) -> None:
    meta = default_model["meta"]
    splits_path = REPO / meta["data"]["splits"]
    assert file_sha256(splits_path) == meta["data"]["splits_sha256"]
    splits = read_splits(splits_path)
    counts = meta["data"]["split_counts"]
    assert counts == {s: sum(1 for v in splits.values() if v == s) for s in ("train", "val", "test")}
    assert meta["data"]["train_products"] <= counts["train"] and counts["test"] > 1000
    manifest = json.loads((default_model["path"].parent / "model.pt.json").read_text())
    assert manifest["bytes"] < 20_000_000
    if "classifier" in meta:  # the taxonomy classifier, too, was fitted on train products and tuned on val only
        fit = meta["classifier"]["fit"]
        assert fit["splits_sha256"] == meta["data"]["splits_sha256"]
        assert fit["train_products"] <= counts["train"] and fit["val_products"] <= counts["val"]


def test_fine_tuned_beats_its_backbone_on_test_products(default_model: dict) -> None:
    settings, meta = default_model["settings"], default_model["meta"]
    splits = read_splits(REPO / meta["data"]["splits"])
    products, _ = read_products(CATALOG_CSV)
    test = [p for p in products if splits.get(p.id) == "test"]
    rng = np.random.default_rng(0)
    sample = [test[i] for i in np.sort(rng.choice(len(test), 300, replace=False))]
    paths = {p.id: p.image for p in sample}

    def load(pid: str) -> Image.Image:
        with Image.open(paths[pid]) as img:
            return img.convert("RGB")

    synth = StreetPhotoSynthesizer(load, list(paths), seed=1)
    shops = [load(p.id) for p in sample]
    streets = [synth.view(p.id, 0, shop) for p, shop in zip(sample[:150], shops[:150], strict=True)]
    labels = TaxonomyVocab.fit(sample, meta["taxonomy"]["levels"]).encode(sample)[:, -1]
    size = settings.model.input_size
    scores = {}
    for name, ckpt in (("base", ""), ("tuned", str(default_model["path"]))):
        emb = create_embedder(settings.model.backbone, checkpoint=ckpt, input_size=size, device="cpu")
        shop_vec = emb.embed_images(shops)
        street_vec = emb.embed_images(streets)
        s2s = synthetic_recall(np.stack([shop_vec[:150], street_vec], axis=1), ks=(1, 20))
        scores[name] = (s2s[1], s2s[20], category_recall_at_1(shop_vec, labels))
    (b1, _, bcat), (t1, t20, tcat) = scores["base"], scores["tuned"]
    assert t1 >= b1 + 0.10, scores  # street-to-shop recall@1 (150-image gallery; synthetic)
    assert t20 >= 0.9, scores
    assert tcat >= bcat + 0.03, scores  # category neighbours (300 products)
