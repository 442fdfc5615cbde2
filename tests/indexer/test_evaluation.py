"""Evaluation with exact ground truth: a colour "embedder" over solid-colour images, searched through FAISS.

The gallery and queries are images whose only content is a colour, and the stub embedder maps an image to its
mean colour, so every rank is known in advance and the metrics can be checked exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from indexer.datasets.pairs import GalleryImage, PairSet, QueryPair
from indexer.evaluation.retrieval import LabelledImage, evaluate_category, evaluate_street2shop, write_plot
from indexer.evaluation.runs import list_evaluations, record_evaluation

METRIC_KEYS = {"recall@1", "recall@5", "recall@10", "recall@20", "mAP", "n_queries"}


class ColourEmbedder:
    """Embeds an image as its mean colour (minus grey), L2-normalised: the Embedder API in miniature."""

    dim = 3
    input_size = 8
    name = "colour"
    fingerprint = "c0l0ur"

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        arr = np.asarray(img.convert("RGB").resize((8, 8)), np.float32) / 255.0 - 0.5
        return torch.from_numpy(arr.mean(axis=(0, 1)).copy())

    def embed_tensors(self, batch: torch.Tensor) -> np.ndarray:
        return torch.nn.functional.normalize(batch.reshape(len(batch), -1), dim=1).numpy()

    def describe(self) -> dict:
        return {"name": self.name, "weights": "none", "checkpoint": "", "input_size": 8, "dim": 3,
                "fingerprint": self.fingerprint}


def colour_image(path: Path, rgb: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 16), rgb).save(path, "PNG")
    return path


def hue(i: int, n: int) -> tuple[int, int, int]:
    """n clearly different colours around the colour wheel."""
    a = 2 * np.pi * i / n
    return tuple(int(128 + 120 * np.cos(a + k * 2 * np.pi / 3)) for k in range(3))


@pytest.fixture
def pair_set(tmp_path: Path) -> PairSet:
    n = 40
    gallery = [GalleryImage(f"g{i}", colour_image(tmp_path / "g" / f"{i}.png", hue(i, n)), f"item{i}",
                            "even" if i % 2 == 0 else "odd") for i in range(n)]
    # item0 has a second shop image; query 39 shows item39's colour but claims item0 (a known miss).
    gallery.append(GalleryImage("g0b", colour_image(tmp_path / "g" / "0b.png", hue(0, n)), "item0", "even"))
    pairs = [QueryPair(colour_image(tmp_path / "q" / f"{i}.png", hue(i, n)), f"item{i}", None,
                     "even" if i % 2 == 0 else "odd") for i in range(n - 1)]
    pairs.append(QueryPair(colour_image(tmp_path / "q" / "wrong.png", hue(20, n)), "item0", None, "even"))
    pairs.append(QueryPair(tmp_path / "q" / "missing.png", "item1"))
    return PairSet("test", pairs, gallery)


def test_street2shop_metrics_are_exact(pair_set: PairSet) -> None:
    report = evaluate_street2shop(ColourEmbedder(), pair_set, spec="Flat", search_device="cpu", synthetic=True)
    m = report.metrics
    assert set(m) == METRIC_KEYS
    assert m["n_queries"] == 40  # the missing image is reported, not counted
    assert any("missing.png" in p for p in report.problems)
    # 39 queries find their item at rank 1; the "wrong" query's item0 lies opposite its colour on the wheel.
    assert m["recall@1"] == pytest.approx(39 / 40)
    assert m["recall@20"] == pytest.approx(39 / 40)
    assert report.per_label["odd"]["recall@1"] == 1.0 and report.per_label["odd"]["n_queries"] == 19
    assert report.per_label["even"]["recall@1"] == pytest.approx(20 / 21)
    # Query 0 (item0 has two identical shop images): AP 1; the wrong query ranks item0's images last (40 and 41).
    ap_wrong = (1 / 40 + 2 / 41) / 2
    assert m["mAP"] == pytest.approx((39 + ap_wrong) / 40)
    assert report.n_gallery == 41 and report.index_spec == "Flat" and report.synthetic
    out = report.as_dict()
    assert METRIC_KEYS <= set(out) and out["synthetic"] is True
    json.dumps(out)


def test_dataset_hash_follows_the_image_bytes(pair_set: PairSet) -> None:
    a = evaluate_street2shop(ColourEmbedder(), pair_set, spec="Flat", search_device="cpu")
    b = evaluate_street2shop(ColourEmbedder(), pair_set, spec="Flat", search_device="cpu")
    assert a.dataset_sha256 == b.dataset_sha256
    colour_image(pair_set.gallery[5].image, (0, 0, 0))
    c = evaluate_street2shop(ColourEmbedder(), pair_set, spec="Flat", search_device="cpu")
    assert c.dataset_sha256 != a.dataset_sha256


def test_category_leave_one_out(tmp_path: Path) -> None:
    items = []
    for label, base in (("red", (200, 30, 30)), ("green", (30, 200, 30)), ("blue", (30, 30, 200))):
        for j in range(8):
            rgb = tuple(min(255, c + 3 * j) for c in base)
            items.append(LabelledImage(f"{label}{j}", colour_image(tmp_path / f"{label}{j}.png", rgb), label))
    items.append(LabelledImage("lonely", colour_image(tmp_path / "lonely.png", (200, 200, 30)), "yellow"))
    items.append(LabelledImage("unlabelled", colour_image(tmp_path / "u.png", (1, 2, 3)), ""))
    report = evaluate_category(ColourEmbedder(), items, "colour", spec="Flat", search_device="cpu")
    assert report.metrics == {"recall@1": 1.0, "recall@5": 1.0, "recall@10": 1.0, "recall@20": 1.0, "mAP": 1.0,
                              "n_queries": 24}
    assert report.extra["n_singletons"] == 1 and report.n_gallery == 25
    assert set(report.per_label) == {"red", "green", "blue"}


def test_runs_are_stored_in_sql_and_plotted(settings, pair_set: PairSet, tmp_path: Path) -> None:
    from indexer.wiring import open_store

    store = open_store(settings)
    report = evaluate_street2shop(ColourEmbedder(), pair_set, spec="Flat", search_device="cpu")
    plot = write_plot(report, tmp_path / "plot.png")
    with Image.open(plot) as img:
        assert img.format == "PNG" and img.size == (720, 480)
    run_id = record_evaluation(store, report)
    runs = list_evaluations(store)
    assert runs[0]["id"] == run_id and runs[0]["kind"] == "street2shop"
    assert runs[0]["metrics"] == report.metrics and runs[0]["model_fingerprint"] == "c0l0ur"
    assert runs[0]["index_spec"] == "Flat" and runs[0]["dataset_sha256"] == report.dataset_sha256
