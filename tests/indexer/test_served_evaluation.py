"""`evaluate street2shop --served`: queries through the API's QueryEngine over the gallery indexed by the real
pipeline, one row per localisation mode."""

from __future__ import annotations

import csv
import json

import numpy as np
from click.testing import CliRunner
from PIL import Image

from indexer.datasets.pairs import GalleryImage, PairSet, QueryPair
from indexer.datasets.synthetic import SyntheticConfig, synthesize_street_photo
from indexer.settings import DEMO_CATALOG_CSV


def _pair_set(folder, n_gallery: int = 30, n_copies: int = 4, n_street: int = 4) -> PairSet:
    with DEMO_CATALOG_CSV.open(newline="") as fh:
        rows = list(csv.DictReader(fh))[::7][:n_gallery]
    gallery = [GalleryImage(r["id"], DEMO_CATALOG_CSV.parent / r["image"], r["id"], r["article_type"]) for r in rows]
    folder.mkdir(parents=True, exist_ok=True)
    pairs = [QueryPair(g.image, g.item_id, None, g.label) for g in gallery[:n_copies]]  # the shop photo itself
    rng = np.random.default_rng(0)
    for g in gallery[n_copies:n_copies + n_street]:
        path = folder / f"street-{g.item_id}.jpg"
        synthesize_street_photo(Image.open(g.image), rng, cfg=SyntheticConfig(size=200)).save(path, quality=90)
        pairs.append(QueryPair(path, g.item_id, None, g.label))
    return PairSet("test served", pairs, gallery)


def test_every_mode_is_measured_through_the_query_engine(settings, small_embedder, tmp_path):
    from indexer.evaluation.served import evaluate_served

    pair_set = _pair_set(tmp_path / "q")
    lines: list[str] = []
    report = evaluate_served(settings, small_embedder, pair_set, ks=(1, 5, 10, 20), synthetic=True,
                             echo=lines.append)
    rows = report.extra["served"]
    assert list(rows) == ["off", "crops", "auto"] and report.extra["default_mode"] == "auto"
    for row in rows.values():
        assert row["n_queries"] == 8 and 0.0 <= row["recall@1"] <= row["recall@20"] <= 1.0 and row["p50_ms"] > 0
    # A shop photo searched whole finds itself first: at least the 4 copies are hits at rank 1.
    assert rows["off"]["recall@1"] >= 0.5
    assert report.kind == "street2shop-served" and report.synthetic and report.n_gallery == 30
    assert report.metrics["recall@1"] == rows["auto"]["recall@1"]
    assert lines and lines[0].startswith("SYNTHETIC street2shop through the served QueryEngine")


def test_cli_served_flag_stores_a_run(config_path, small_embedder, tmp_path, monkeypatch):
    from indexer import cli_support
    from indexer.evaluation.cli import evaluate
    from indexer.evaluation.runs import list_evaluations
    from indexer.settings import load_settings
    from indexer.wiring import open_store

    pair_set = _pair_set(tmp_path / "q", n_gallery=24, n_copies=3, n_street=0)
    pairs_csv, gallery_csv = tmp_path / "pairs.csv", tmp_path / "gallery.csv"
    with pairs_csv.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["query_image", "item_id", "label"])
        w.writerows([str(p.query_image), p.item_id, p.label] for p in pair_set.pairs)
    with gallery_csv.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "image", "item_id", "label"])
        w.writerows([g.image_id, str(g.image), g.item_id, g.label] for g in pair_set.gallery)
    monkeypatch.setattr(cli_support, "embedder_for_eval", lambda settings, checkpoint: small_embedder)
    monkeypatch.setattr("indexer.evaluation.cli.embedder_for_eval", lambda settings, checkpoint: small_embedder)
    result = CliRunner().invoke(evaluate, ["street2shop", "--pairs", str(pairs_csv), "--gallery", str(gallery_csv),
                                           "--served", "--json", "--plot", str(tmp_path / "p.png")],
                                env={"LOOKALIKE_CONFIG": str(config_path)})
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["kind"] == "street2shop-served" and set(body["served"]) == {"off", "crops", "auto"}
    assert body["served"]["off"]["recall@1"] == 1.0  # every query is a gallery photo itself
    text = CliRunner().invoke(evaluate, ["street2shop", "--pairs", str(pairs_csv), "--gallery", str(gallery_csv),
                                         "--served", "--no-store", "--no-progress", "--plot", str(tmp_path / "q.png")],
                              env={"LOOKALIKE_CONFIG": str(config_path)})
    assert text.exit_code == 0, text.output
    assert "through the served QueryEngine" in text.output and "street2shop-served: 3 queries" in text.output
    store = open_store(load_settings(config_path, env={}))
    try:
        assert list_evaluations(store)[0]["kind"] == "street2shop-served"
    finally:
        store.close()
