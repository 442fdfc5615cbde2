"""The street encoder: `manage.py train-street-encoder` (resumable, checkpoint keyed to the served model), loading it as
the query embedder (model.street_encoder) with a clear fallback to the served model, and the served evaluation's
street row going through it; on the demo catalog with the small ImageNet model (quality is not the point here:
bench/street.py and the committed checkpoint's manifest measure it)."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from indexer.catalog.splits import assign_splits, write_splits
from indexer.embedders import create_embedder_from_settings, query_embedder_from_settings
from indexer.settings import DEMO_CATALOG_CSV, load_settings
from tests.conftest import run_manage


class _Counting:
    """An embedder that counts its forward passes (everything else is the wrapped one's)."""

    def __init__(self, inner) -> None:
        self.inner, self.batches = inner, 0

    def embed_tensors(self, batch):
        self.batches += 1
        return self.inner.embed_tensors(batch)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A street encoder trained for the tests' small model: (config path, its folder, the first run's output)."""
    from tests.conftest import write_config

    tmp = tmp_path_factory.mktemp("street")
    config = write_config(tmp / "cfg")
    with DEMO_CATALOG_CSV.open(newline="") as fh:
        ids = [r["id"] for r in csv.DictReader(fh)]
    splits = write_splits(tmp / "splits.csv", assign_splits(ids, 0.2, 0.3, seed=0))
    out = tmp / "street"
    args = ["train-street-encoder", "--catalog", str(DEMO_CATALOG_CSV), "--splits", str(splits), "--out", str(out),
            "--work-dir", str(tmp / "work"), "--products", "12", "--val-products", "6", "--views", "2",
            "--unfreeze-blocks", "2", "--batch-size", "8", "--workers", "0", "--no-progress"]
    first = run_manage(*args, "--epochs", "1", config=config)
    assert first.returncode == 0, first.stderr
    again = run_manage(*args, "--epochs", "2", "--resume", config=config)
    assert again.returncode == 0, again.stderr
    return config, out, first.stdout


def test_train_writes_a_checkpoint_keyed_to_the_served_model_and_resumes(trained):
    config, out, stdout = trained
    assert "SYNTHETIC street crops: 1 per product of 12 train and 6 val products" in stdout
    assert "served model on SYNTHETIC val crops: recall@1" in stdout and "wrote" in stdout
    served = create_embedder_from_settings(load_settings(config, env={}))
    [ckpt] = out.glob("*.pt")
    assert ckpt.stem == served.fingerprint
    meta = json.loads((out / f"{ckpt.name}.json").read_text())["meta"]
    street = meta["street_encoder"]
    assert street["gallery_fingerprint"] == served.fingerprint and street["synthetic"] is True
    assert [h["epoch"] for h in street["history"]] == [1, 2]  # the second run resumed after epoch 1
    assert {"val_crop_r@1", "val_shop_self_r@1", "loss"} <= set(street["history"][-1])


def test_query_embedder_is_the_street_encoder_only_when_it_fits(trained, tmp_path):
    config, out, _ = trained
    settings = load_settings(config, env={})
    served = create_embedder_from_settings(settings)
    assert query_embedder_from_settings(settings, served) == (served, "model.street_encoder is empty")

    with_street = dataclasses.replace(settings, model=dataclasses.replace(settings.model, street_encoder=str(out)))
    query, why = query_embedder_from_settings(with_street, served)
    assert why is None and query is not served and query.dim == served.dim
    assert query.fingerprint != served.fingerprint  # other weights: a query-side model, the index is untouched
    img = Image.open(next(DEMO_CATALOG_CSV.parent.rglob("*.jpg"))).convert("RGB")
    a, b = served.embed_images([img])[0], query.embed_images([img])[0]
    assert 0.5 < float(a @ b) < 0.99999  # trained from the served model, towards the same catalog vectors

    missing = dataclasses.replace(settings, model=dataclasses.replace(settings.model,
                                                                      street_encoder=str(tmp_path / "none")))
    same, why = query_embedder_from_settings(missing, served)
    assert same is served and "no street encoder for the served model" in why and "train-street-encoder" in why

    other = tmp_path / "other"
    shutil.copytree(out, other)
    [manifest] = other.glob("*.pt.json")
    body = json.loads(manifest.read_text())
    body["meta"]["street_encoder"]["gallery_fingerprint"] = "0" * 32
    manifest.write_text(json.dumps(body))
    mismatched = dataclasses.replace(settings, model=dataclasses.replace(settings.model, street_encoder=str(other)))
    same, why = query_embedder_from_settings(mismatched, served)
    assert same is served and "answers for image model 000" in why

    body["meta"]["street_encoder"]["gallery_fingerprint"] = served.fingerprint
    manifest.write_text(json.dumps(body))
    [pt] = other.glob("*.pt")
    pt.write_bytes(pt.read_bytes()[:-100] + b"x" * 100)  # edited weights: the sha256 no longer matches
    same, why = query_embedder_from_settings(mismatched, served)
    assert same is served and "cannot be loaded" in why and "sha256" in why


def test_served_evaluation_street_row_goes_through_the_street_encoder(trained, small_embedder, tmp_path):
    from indexer.evaluation.served import evaluate_served
    from tests.indexer.test_served_evaluation import _pair_set

    config, out, _ = trained
    settings = load_settings(config, env={})
    with_street = dataclasses.replace(settings, model=dataclasses.replace(settings.model, street_encoder=str(out)))
    query, why = query_embedder_from_settings(with_street, create_embedder_from_settings(settings))
    assert why is None
    counting = _Counting(query)
    report = evaluate_served(settings, small_embedder, _pair_set(tmp_path / "q"), ks=(1, 20), synthetic=True,
                             query_embedder=counting)
    rows = report.extra["served"]
    assert list(rows) == ["off", "crops", "auto", "street"] and report.extra["default_mode"] == "street"
    assert counting.batches >= rows["street"]["n_queries"]  # every street query embedded by the street encoder
    assert np.isfinite([rows["street"]["recall@1"]]).all()


def test_cli_search_embeds_a_street_photo_with_the_street_encoder(trained, tmp_path):
    """`manage.py search PHOTO` answers as the API would: a street photo through the street encoder, a product shot
    through the served model (the scores are those models' cosines)."""
    from indexer.catalog.images import decode_image
    from indexer.datasets.synthetic import SyntheticConfig, synthesize_street_photo
    from indexer.wiring import open_store
    from tests.conftest import index_in_process, write_config, write_small_catalog

    config, out, _ = trained
    catalog = write_small_catalog(tmp_path / "cat", 12)
    cfg = write_config(tmp_path / "cfg", model={"street_encoder": str(out)})
    settings = load_settings(cfg, env={})
    served = create_embedder_from_settings(settings)
    index_in_process(cfg, catalog, served)
    street_model, why = query_embedder_from_settings(settings, served)
    assert why is None
    with catalog.open(newline="") as fh:
        row = next(csv.DictReader(fh))
    shot_path = catalog.parent / row["image"]
    street_path = tmp_path / "street.jpg"
    synthesize_street_photo(Image.open(shot_path), np.random.default_rng(3), cfg=SyntheticConfig(size=200)).save(
        street_path, quality=90)
    for path, model in ((street_path, street_model), (shot_path, served)):
        done = run_manage("search", str(path), "-k", "3", "--json", config=cfg)
        assert done.returncode == 0, done.stderr
        top = json.loads(done.stdout)["results"][0]
        store = open_store(settings)
        try:
            item = store.get_vector(int(top["id"]), served.fingerprint)
        finally:
            store.close()
        image = decode_image(path.read_bytes(), settings.web.max_image_pixels, settings.web.decode_min_side)
        assert top["score"] == pytest.approx(float(model.embed_images([image])[0] @ item), abs=2e-3)
