#!/usr/bin/env python3
"""Street-photo localisation: does searching crops find the product better than the whole photo?

Indexes a small catalog (real catalog photos from ../shared), makes SYNTHETIC street photos of some of its
products (indexer/datasets/synthetic.py: the product cut out of its white background, warped and pasted at 30-50% of
the frame height on a cluttered scene) and searches each with `localize` = off (whole photo only), auto
(whole + 5 crops + activation crop, merged by best evidence) and each region kind alone. Reports top-1/5/10,
MRR and milliseconds per query. The catalog has no real street photos; real ones will differ.

    python bench/localize.py                 # default model input (224), writes BENCHMARKS.md "localize"
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.latency import SHARED, write_catalog, write_config  # noqa: E402
from bench.report import markdown_table, update_section  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog-size", type=int, default=300)
    ap.add_argument("--photos", type=int, default=60)
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    import torch
    from PIL import Image

    torch.set_num_threads(args.torch_threads)
    from indexer.catalog.source import open_catalog
    from indexer.datasets.synthetic import SyntheticConfig, synthesize_street_photo
    from indexer.embedders import create_embedder_from_settings
    from indexer.search.query import QueryEngine, QueryOptions
    from indexer.settings import load_settings
    from indexer.store.db import upgrade_database
    from indexer.wiring import create_pipeline, create_search_service, open_store

    with tempfile.TemporaryDirectory(prefix="lookalike-localize-") as tmp:
        folder = Path(tmp)
        csv_path = write_catalog(folder, args.catalog_size, 37)
        settings = load_settings(write_config(folder, args.input_size, args.torch_threads), env={})
        upgrade_database(settings.database_url)
        store = open_store(settings)
        embedder = create_embedder_from_settings(settings)
        create_pipeline(settings, store, embedder, progress=False).run(open_catalog(csv_path, SHARED))
        engine = QueryEngine(create_search_service(settings, store, embedder))
        engine.warm_up()
        with csv_path.open(newline="") as fh:
            rows = random.Random(args.seed).sample(list(csv.DictReader(fh)), args.photos)
        cfg = SyntheticConfig(size=320, min_product_height=0.3, max_product_height=0.5)
        rng = np.random.default_rng(args.seed)
        photos = [(r["id"], synthesize_street_photo(Image.open(SHARED / r["image"]), rng, cfg=cfg)) for r in rows]
        ranks: dict[str, list[int]] = {"off": [], "auto": []}
        ms: dict[str, list[float]] = {"off": [], "auto": []}
        best_source: dict[str, int] = {}
        for external_id, photo in photos:
            for mode in ranks:
                t0 = time.perf_counter()
                result = engine.search(photo, QueryOptions(k=args.catalog_size, localize=mode))
                ms[mode].append((time.perf_counter() - t0) * 1000)
                ids = [h.item["external_id"] for h in result.hits]
                rank = ids.index(external_id) + 1 if external_id in ids else args.catalog_size + 1
                ranks[mode].append(rank)
                if mode == "auto" and rank <= args.catalog_size:
                    source = result.regions[result.region_of_hit[rank - 1]].region.source
                    best_source[source] = best_source.get(source, 0) + 1
        store.close()

    rows_out = []
    for mode, label in (("off", "whole photo only (`localize=off`)"),
                        ("auto", "whole + 5 crops + activation crop, best evidence (`auto`)")):
        r = np.array(ranks[mode])
        rows_out.append([label, f"{(r <= 1).mean():.2f}", f"{(r <= 5).mean():.2f}", f"{(r <= 10).mean():.2f}",
                         f"{(1 / r).mean():.3f}", round(float(np.median(ms[mode])), 1)])
    table = markdown_table(["query", "top-1", "top-5", "top-10", "MRR", "ms/query (median)"], rows_out)
    sources = ", ".join(f"{k}: {v}" for k, v in sorted(best_source.items(), key=lambda kv: -kv[1]))
    body = "\n".join([
        f"{args.photos} SYNTHETIC street photos (indexer/datasets/synthetic.py: product cut out, warped, pasted at "
        f"30-50% of the frame height on a cluttered scene, 320 px) of products of a {args.catalog_size}-item "
        "catalog; the "
        f"true product's rank among all items. Model efficientnet_lite0 at input {args.input_size} px, "
        f"{args.torch_threads} torch thread(s). Real street photos will differ: none are available offline.",
        "",
        table,
        "",
        f"Region that found the true product (auto): {sources}.",
    ])
    print(body)
    if not args.no_write:
        update_section("localize", "Street-photo localisation (synthetic street photos)", body)
        print("updated BENCHMARKS.md (section localize)")


if __name__ == "__main__":
    main()
