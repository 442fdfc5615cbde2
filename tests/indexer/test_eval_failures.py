"""Failure gallery data (issue 9): the worst failed queries, what came back instead, and a query thumbnail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from indexer.evaluation.failures import collect_failures, thumbnail_data_url


def test_collect_failures_worst_first_with_results(tmp_path: Path):
    img = tmp_path / "q.png"
    Image.new("RGB", (300, 200), (10, 200, 30)).save(img)
    first_hit = np.array([0, 12, 3, 30, 9])  # depth 30: query 3's item was not ranked at all
    top = np.arange(50).reshape(5, 10)
    top[4, 7:] = -1
    out = collect_failures(first_hit, top, [{"query": f"q{i}", "item_id": f"i{i}", "label": "x"} for i in range(5)],
                           lambda row: {"item_id": f"g{row}"}, [(img, None)] * 4 + [(tmp_path / "gone.jpg", None)],
                           depth=30, k=5, limit=3)
    assert out["k"] == 5 and out["n_failed"] == 3 and out["n_queries"] == 5
    assert [q["query"] for q in out["queries"]] == ["q3", "q1", "q4"]
    assert out["queries"][0]["true_rank"] is None and out["queries"][1]["true_rank"] == 13
    assert [r["item_id"] for r in out["queries"][1]["returned"]] == ["g10", "g11", "g12", "g13", "g14"]
    assert out["queries"][0]["thumb"].startswith("data:image/jpeg;base64,")
    assert out["queries"][2]["thumb"] is None  # unreadable file: no thumbnail, no error


def test_thumbnail_is_small_and_cropped(tmp_path: Path):
    import base64
    import io

    img = tmp_path / "big.png"
    Image.new("RGB", (1000, 500), "white").save(img)
    url = thumbnail_data_url(img, (0, 0, 250, 500), side=64)
    thumb = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert thumb.size == (32, 64)


class _ColourEmbedder:
    """Mean colour (minus grey) as a 3-d embedding: ranks are known in advance."""

    dim = 3
    fingerprint = "colourfp"

    def preprocess(self, img):
        import torch

        arr = np.asarray(img.convert("RGB").resize((4, 4)), np.float32) / 255.0 - 0.5
        return torch.from_numpy(arr.mean(axis=(0, 1)).copy())

    def embed_tensors(self, batch):
        import torch

        return torch.nn.functional.normalize(batch.reshape(len(batch), -1), dim=1).numpy()

    def describe(self):
        return {"name": "colour", "weights": "none", "checkpoint": "", "input_size": 4, "dim": 3,
                "fingerprint": self.fingerprint}


def test_category_evaluation_stores_failures_for_the_run_page(tmp_path: Path, settings):
    from indexer.evaluation.retrieval import LabelledImage, evaluate_category
    from indexer.evaluation.runs import get_run, record_evaluation
    from indexer.wiring import open_store

    items = []
    # 30 reds and 30 blues; item x0 is labelled blue but is red, so no blue comes back in its top k.
    for i in range(60):
        colour, label = ((220, 30 + i, 30), "red") if i < 30 else ((30, 30 + i, 220), "blue")
        if i == 0:
            label = "blue"
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (8, 8), colour).save(path)
        items.append(LabelledImage(f"x{i}", path, label))
    report = evaluate_category(_ColourEmbedder(), items, "colour", spec="Flat", search_device="cpu")
    assert report.failures["n_failed"] >= 1
    assert "failures" not in report.as_dict()  # --json output is unchanged
    store = open_store(settings)
    try:
        run = get_run(store, record_evaluation(store, report))
    finally:
        store.close()
    failed = {q["query"]: q for q in run["failures"]["queries"]}
    assert "x0" in failed and failed["x0"]["true_rank"] > 10
    assert all(r["label"] == "red" for r in failed["x0"]["returned"]) and len(failed["x0"]["returned"]) == 10
    assert failed["x0"]["thumb"].startswith("data:image/jpeg")
