"""The training recipe's data side: view caching (resumable), and that the exported checkpoint, loaded by
``create_embedder`` as serving does, computes exactly what training optimised."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import create_embedder
from engine.models.backbone_split import split_backbone
from engine.train.trainer import TrainConfig
from indexer.datasets.synthetic import StreetPhotoSynthesizer
from indexer.training import embedding as training
from indexer.training.embedding import (
    TaxonomyVocab,
    TrainOptions,
    cache_seconds,
    cache_views,
    image_loader,
    read_products,
    train_from_catalog,
    view_images,
)
from tests.conftest import write_small_catalog


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_catalog(tmp_path_factory.mktemp("cat"), 40, step=97)


def test_view_cache_resumes_after_an_interruption(small_catalog: Path, tmp_path: Path) -> None:
    products, problems = read_products(small_catalog)
    assert not problems and len(products) == 40
    products = products[:5]
    emb = create_embedder("efficientnet_lite0", "random", input_size=64, device="cpu")
    split = split_backbone(emb.module.backbone, 2)
    synth = StreetPhotoSynthesizer(image_loader(products), [p.id for p in products], seed=0)
    path = tmp_path / "train.npy"
    first = np.array(cache_views(products, emb, split, synth, 3, path, chunk=2, progress=False))
    assert first.shape == (5, 3, 192, 2, 2) and first.dtype == np.float16
    record = json.loads(Path(f"{path}.done").read_text())
    assert record["done"] == 5 and record["seconds"] >= 0
    # A kill after the first chunk: rows past it may be garbage, the progress file says 2.
    arr = np.load(path, mmap_mode="r+")
    arr[2:] = 0
    arr.flush()
    del arr
    Path(f"{path}.done").write_text(json.dumps({"done": 2, "seconds": 100.0}))
    again = np.array(cache_views(products, emb, split, synth, 3, path, chunk=2, progress=False))
    np.testing.assert_array_equal(again, first)
    # The time of the interrupted run is kept and the resumed run's time is added to it.
    assert json.loads(Path(f"{path}.done").read_text())["done"] == 5
    assert cache_seconds(path) > 100.0


def test_view_cache_is_the_same_made_in_worker_processes_or_in_the_main_process(
        small_catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    products = read_products(small_catalog)[0][:5]
    emb = create_embedder("efficientnet_lite0", "random", input_size=64, device="cpu")
    split = split_backbone(emb.module.backbone, 2)
    pids = tmp_path / "pids.txt"

    def logged_views(*args, **kwargs):  # records which process made each product's views (forks inherit it)
        with pids.open("a") as f:
            f.write(f"{os.getpid()}\n")
        return view_images(*args, **kwargs)

    monkeypatch.setattr(training, "view_images", logged_views)

    def cache(workers: int, path: Path) -> np.ndarray:
        pids.unlink(missing_ok=True)
        synth = StreetPhotoSynthesizer(image_loader(products), [p.id for p in products], seed=0)
        return np.array(cache_views(products, emb, split, synth, 3, path, chunk=2, workers=workers, progress=False))

    def makers() -> list[int]:
        return [int(line) for line in pids.read_text().split()]

    me = os.getpid()
    in_main = cache(0, tmp_path / "main.npy")
    assert makers() == [me] * 6  # a shape probe, then the 5 products
    forked = cache(2, tmp_path / "forked.npy")
    workers = makers()
    assert workers.count(me) == 1 and len(workers) == 6 and len(set(workers) - {me}) == 2  # the probe stays here
    assert in_main.shape == (5, 3, 192, 2, 2) and np.abs(in_main).sum() > 0
    assert np.array_equal(in_main, forked)  # chunks come back in order, and the synthetic views are seeded per product
    # A cache cut short in worker processes is finished in the main process: still the same array.
    path = tmp_path / "forked.npy"
    arr = np.load(path, mmap_mode="r+")
    arr[2:] = 0
    arr.flush()
    del arr
    Path(f"{path}.done").write_text(json.dumps({"done": 2, "seconds": 1.0}))
    assert np.array_equal(cache(0, path), in_main)
    assert makers() == [me] * 4  # the probe, then only the 3 unfinished products


def test_the_whole_backbone_caches_the_preprocessed_views(small_catalog: Path, tmp_path: Path) -> None:
    products = read_products(small_catalog)[0][:3]
    emb = create_embedder("efficientnet_lite0", "random", input_size=64, device="cpu")
    split = split_backbone(emb.module.backbone, 18)
    synth = StreetPhotoSynthesizer(image_loader(products), [p.id for p in products], seed=0)
    arr = np.array(cache_views(products, emb, split, synth, 2, tmp_path / "x.npy", chunk=2, workers=2,
                               progress=False))
    assert arr.shape == (3, 2, 3, 64, 64) and arr.dtype == np.float16
    images = [img for p in products for img in view_images(p, synth, 2)]
    expected = emb.preprocess_batch(images).numpy().astype(np.float16).reshape(arr.shape)
    assert np.array_equal(arr, expected)


def test_taxonomy_vocabulary_marks_unknown_values(small_catalog: Path) -> None:
    products, _ = read_products(small_catalog)
    vocab = TaxonomyVocab.fit(products[:20], ("master_category", "sub_category", "article_type"))
    codes = vocab.encode(products)
    assert codes.shape == (40, 3) and (codes[:20] >= 0).all()
    unseen = {p.taxonomy[2] for p in products[20:]} - set(vocab.classes[2])
    assert ((codes[20:, 2] == -1) == np.array([p.taxonomy[2] in unseen for p in products[20:]])).all()


@pytest.mark.parametrize("half", [False, True])
def test_the_served_checkpoint_computes_what_training_optimised(small_catalog: Path, tmp_path: Path,
                                                               half: bool) -> None:
    out = tmp_path / "model" / "model.pt"
    opts = TrainOptions(catalog=small_catalog, out=out, work_dir=tmp_path / "work", input_size=64,
                        device="cpu", val_fraction=0.2, test_fraction=0.2, n_views=3, unfreeze_blocks=6, half=half,
                        progress=False)
    cfg = TrainConfig(embed_dim=16, products_per_batch=4, views_per_product=3, epochs_frozen=1, epochs_unfrozen=1,
                      tail_lr=3e-4)
    result = train_from_catalog(opts, cfg, echo=lambda _line: None)
    assert [h.stage for h in result.history] == ["frozen", "unfrozen"]
    meta = result.manifest["meta"]
    assert meta["stored_dtype"] == ("float16" if half else "float32") and meta["base_weights"] == ""

    served = create_embedder("efficientnet_lite0", checkpoint=str(out), input_size=64, device="cpu")
    base = create_embedder("efficientnet_lite0", input_size=64, device="cpu")
    assert served.dim == 16 and served.fingerprint != base.fingerprint
    # The tail really was fine-tuned (its weights differ from the base's), the trunk was not.
    tuned, orig = served.module.backbone.state_dict(), base.module.backbone.state_dict()
    assert not torch.equal(tuned["_conv_head.weight"], orig["_conv_head.weight"])
    assert torch.equal(tuned["_blocks.3._depthwise_conv.weight"], orig["_blocks.3._depthwise_conv.weight"])

    # Training's view of the first products (cached trunk output -> tail -> head) vs serving's (images -> model).
    products = [p for p in read_products(small_catalog)[0]]
    splits = {line.split(",")[0]: line.split(",")[1] for line in (out.parent / "splits.csv").read_text().split()[1:]}
    all_train = [p for p in products if splits[p.id] == "train"]
    train_products = all_train[:4]
    cache = np.load(next((tmp_path / "work").glob("cache-*/train.npy")), mmap_mode="r")[:4]
    split = split_backbone(served.module.backbone, 6)
    with torch.inference_mode():
        pooled = split.tail.eval()(torch.from_numpy(np.asarray(cache, np.float32).reshape(-1, *cache.shape[2:])))
        from_cache = torch.nn.functional.normalize(served.module.head(pooled), dim=1).numpy()
    synth = StreetPhotoSynthesizer(image_loader(all_train), [p.id for p in all_train], seed=0)
    images = [img for p in train_products for img in view_images(p, synth, 3)]
    from_images = served.embed_images(images)
    cosine = (from_cache * from_images).sum(axis=1)
    assert cosine.min() > 0.995, cosine  # equal up to the cache's float16 rounding ...
    other = (from_cache * np.roll(from_images, 3, axis=0)).sum(axis=1)
    assert other.mean() < 0.97, other  # ... and not because every picture embeds alike
