"""Quality floor of the served configuration: an item's own catalog image finds it at rank 1.

Uses the repository's config.toml model settings (the default served model) with a temp store.
1,000 catalog items are sampled (seeded) as queries and indexed together with 1,000 other
sampled items as distractors.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from indexer.catalog.images import decode_image
from indexer.catalog.source import open_catalog
from indexer.embedders import create_embedder_from_settings
from indexer.settings import load_settings
from indexer.store.db import upgrade_database
from indexer.wiring import create_pipeline, create_search_service, open_store
from tests.conftest import CATALOG_CSV, REPO, SHARED_DATA

pytestmark = pytest.mark.slow


def test_own_image_is_rank_one_for_99_percent(tmp_path: Path, shared_data):
    with CATALOG_CSV.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    rng = np.random.default_rng(2026)
    picked = rng.choice(len(rows), 2000, replace=False)
    sub = tmp_path / "catalog.csv"
    with sub.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        w.writeheader()
        for i in sorted(picked):
            w.writerow(rows[i])
    env = {"LOOKALIKE_DATABASE__URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
           "LOOKALIKE_INDEX__DIR": str(tmp_path / "index")}
    settings = load_settings(REPO / "config.toml", env=env)
    upgrade_database(settings.database_url)
    store = open_store(settings)
    embedder = create_embedder_from_settings(settings)
    report = create_pipeline(settings, store, embedder, progress=False).run(
        open_catalog(sub, images_root=SHARED_DATA))
    assert report.new == 2000 and not report.problems
    service = create_search_service(settings, store, embedder)
    queries = [rows[i] for i in picked[:1000]]
    images = [decode_image((SHARED_DATA / r["image"]).read_bytes()) for r in queries]
    hits = service.search_vectors(service.embed(images), k=1)
    top = [h[0].item["external_id"] if h else None for h in hits]
    rate = float(np.mean([t == r["id"] for t, r in zip(top, queries, strict=True)]))
    print(f"own image at rank 1 for {rate:.2%} of 1,000 items")
    assert rate >= 0.99, f"own image at rank 1 for only {rate:.3%} of 1,000 items"
    store.close()
