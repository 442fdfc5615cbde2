"""Street-to-shop quality through the served path: every query photo goes through the API's own QueryEngine.

`evaluate street2shop` (indexer/evaluation/retrieval.py) embeds each query photo whole and searches a bare
index, which measures the model. What a shopper gets also depends on localisation (grid crops, the activation
crop, a detector when one is configured) and on how the regions' results are merged. Here the gallery is indexed
by the real pipeline into a temporary database and index (the configured model, runtime and index settings), and
every query runs through ``QueryEngine.search`` once per localisation mode, side by side:

- ``off``: the whole photo only;
- ``crops``: whole photo + grid crops + activation crop, merged by best evidence;
- ``auto``: the API's default without a detector (web.localize; product shots searched whole);
- ``detector`` (when a detector is given, e.g. the built-in one): ``auto`` with it: the detected garments
  searched one by one, the default answer is the garment the shopper most likely means (grid crops only when
  nothing is detected);
- ``street`` (when a street encoder is given, ``model.street_encoder``): ``detector`` (or ``auto``) with query photos
  and their regions embedded by the street encoder instead of the served model.

A hit is a gallery image of the query's item; recall@k is the share of queries with one in the first k results.
The per-query time is the engine's own (decode excluded), in this process.
"""

from __future__ import annotations

import csv
import dataclasses
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from engine.files import file_sha256
from engine.metrics import DEFAULT_KS
from indexer.catalog.images import ImageDecodeError, decode_image
from indexer.datasets.pairs import PairSet
from indexer.evaluation.retrieval import EvaluationReport, dataset_digest, model_summary
from indexer.settings import Settings

SERVED_MODES = ("off", "crops", "auto")


def _index_gallery(settings: Settings, embedder, pair_set: PairSet, folder: Path, progress: bool):
    """The gallery as a catalog in a fresh database and index under folder; returns (settings, store)."""
    from indexer.catalog.source import open_catalog
    from indexer.store.db import upgrade_database
    from indexer.wiring import create_pipeline, open_store

    csv_path = folder / "gallery.csv"
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "image", "title"])
        for g in pair_set.gallery:
            writer.writerow([g.image_id, str(Path(g.image).resolve()), g.item_id])
    local = dataclasses.replace(
        settings, database=dataclasses.replace(settings.database, url=f"sqlite:///{folder / 'gallery.db'}"),
        index=dataclasses.replace(settings.index, dir=str(folder / "index")))
    upgrade_database(local.database_url)
    store = open_store(local)
    report = create_pipeline(local, store, embedder, progress=progress).run(open_catalog(csv_path, images_root="/"))
    if not report.published:
        store.close()
        raise ValueError("the gallery could not be indexed: " + "; ".join(str(p) for p in report.problems[:3]))
    return local, store


def evaluate_served(settings: Settings, embedder, pair_set: PairSet, modes: Sequence[str] = SERVED_MODES,
                    ks: Sequence[int] = DEFAULT_KS, progress: bool = False, synthetic: bool = False,
                    dataset: str = "", detector=None,  # noqa: ANN001 - engine.localize.Detector or None
                    echo: Callable[[str], None] | None = None,
                    query_embedder=None) -> EvaluationReport:  # noqa: ANN001 - engine Embedder or None
    """Run every query of ``pair_set`` through the served QueryEngine in each mode; the report's metrics are those
    of the API's default mode (``web.localize``), every mode's row is in ``extra["served"]``."""
    from indexer.search.query import LOCALIZE_MODES, QueryEngine, QueryOptions
    from indexer.wiring import create_search_service

    bad = [m for m in modes if m not in LOCALIZE_MODES]
    if bad:
        raise ValueError(f"unknown localisation mode {bad[0]!r}; use {', '.join(LOCALIZE_MODES)}")
    t0 = time.perf_counter()
    k_max = max(ks)
    problems = list(pair_set.problems)
    item_of_image = {g.image_id: g.item_id for g in pair_set.gallery}
    with tempfile.TemporaryDirectory(prefix="lookalike-served-eval-") as tmp:
        local, store = _index_gallery(settings, embedder, pair_set, Path(tmp), progress)
        try:
            service = create_search_service(local, store, embedder)
            engine = QueryEngine(service, None, settings.web.localize)
            engine.warm_up()
            engines = {m: (engine, m) for m in modes}
            if detector is not None:
                with_detector = QueryEngine(service, detector, settings.web.localize)
                with_detector.warm_up()
                engines["detector"] = (with_detector, "auto")
            if query_embedder is not None and query_embedder is not embedder:
                street = QueryEngine(service, detector, settings.web.localize, query_embedder=query_embedder)
                street.warm_up()
                engines["street"] = (street, "auto")
            ranks: dict[str, list[int | None]] = {m: [] for m in engines}
            millis: dict[str, list[float]] = {m: [] for m in engines}
            background_wins = {m: 0 for m in engines}
            with_garments = {m: 0 for m in engines}
            labels: list[str] = []
            bar = tqdm(pair_set.pairs, desc="served queries", unit="q", disable=not progress)
            for pair in bar:
                try:
                    image = decode_image(Path(pair.query_image).read_bytes(), settings.web.max_image_pixels,
                                         settings.web.decode_min_side)
                except (OSError, ImageDecodeError) as exc:
                    problems.append(f"query {pair.query_image}: {exc}")
                    continue
                crop = None
                if pair.bbox is not None:
                    x0, y0, x1, y1 = pair.bbox
                    w, h = image.info.get("original_size", image.size)
                    crop = (x0 / w, y0 / h, x1 / w, y1 / h)
                labels.append(pair.label)
                for mode, (eng, localize) in engines.items():
                    s = time.perf_counter()
                    result = eng.search(image, QueryOptions(k=k_max, crop=crop, localize=localize))
                    with_garments[mode] += bool(result.garments)
                    millis[mode].append((time.perf_counter() - s) * 1000)
                    found = [item_of_image.get(h.item.get("external_id", "")) for h in result.hits]
                    rank = next((r for r, item in enumerate(found) if item == pair.item_id), None)
                    ranks[mode].append(rank)
                    sources = [result.regions[r].region.source for r in result.region_of_hit]
                    if rank != 0 and sources and sources[0] not in ("whole", "user", "detector"):
                        background_wins[mode] += 1  # a crop's wrong result came first
            bar.close()
        finally:
            store.close()
    if not labels:
        raise ValueError("nothing to evaluate: no usable query photo")
    rows: dict[str, dict[str, float]] = {}
    for mode in ranks:
        r = np.array([np.inf if v is None else v for v in ranks[mode]])
        rows[mode] = {**{f"recall@{k}": float(np.mean(r < k)) for k in ks},
                      "p50_ms": float(np.median(millis[mode])), "n_queries": int(len(r)),
                      "crop_ranked_first_over_the_right_item": int(background_wins[mode]),
                      "queries_with_garments": int(with_garments[mode])}
    default = next((m for m in ("street", "detector") if m in rows), None) if settings.web.localize == "auto" else None
    default = default or (settings.web.localize if settings.web.localize in rows else modes[-1])
    per_label: dict[str, dict[str, float]] = {}
    r_default = np.array([np.inf if v is None else v for v in ranks[default]])
    for label in sorted(set(labels)):
        sel = np.array([lab == label for lab in labels])
        per_label[label or "(none)"] = {**{f"recall@{k}": float(np.mean(r_default[sel] < k)) for k in ks},
                                        "n_queries": int(sel.sum())}
    curve = [float(np.mean(r_default < k)) for k in range(1, k_max + 1)]
    digest_rows = [f"q|{p.query_image}|{p.item_id}|{p.bbox}" for p in pair_set.pairs] + \
        [f"g|{g.image_id}|{g.image}|{g.item_id}" for g in pair_set.gallery]
    files = [p.query_image for p in pair_set.pairs] + [g.image for g in pair_set.gallery]
    shas = [file_sha256(Path(f)) if Path(f).is_file() else "" for f in files]
    report = EvaluationReport(
        kind="street2shop-served", metrics={**{k: v for k, v in rows[default].items() if k.startswith("recall@")},
                                            "n_queries": rows[default]["n_queries"]},
        per_label=per_label, curve=curve, n_gallery=len(pair_set.gallery), depth=k_max,
        index_spec=settings.index.spec, search_backend="served", model=model_summary(embedder),
        dataset=dataset or pair_set.source, dataset_sha256=dataset_digest("street2shop-served", digest_rows, shas),
        synthetic=synthetic, label_column="label", seconds=time.perf_counter() - t0, problems=problems,
        extra={"served": rows, "default_mode": default,
               "detector": type(detector).__name__ if detector is not None else None})
    if echo is not None:
        echo(format_served_rows(rows, ks, synthetic, default))
    return report


def format_served_rows(rows: dict[str, dict[str, Any]], ks: Sequence[int], synthetic: bool,
                       default: str = "") -> str:
    """The modes side by side, one line each; ``default`` is marked as the API's default."""
    names = {"off": "whole photo only", "crops": "whole + grid/activation crops", "auto": "auto without detector",
             "detector": "auto with the detector", "street": "detector + street encoder"}
    names = {m: n + (" (API default)" if m == default else "") for m, n in names.items()}
    head = ("SYNTHETIC " if synthetic else "") + "street2shop through the served QueryEngine:"
    lines = [head]
    for mode, row in rows.items():
        recalls = "  ".join(f"r@{k} {row[f'recall@{k}']:.3f}" for k in ks)
        lines.append(f"  {names.get(mode, mode):32s} {recalls}  p50 {row['p50_ms']:.1f} ms  "
                     f"crop first over the right item: {row['crop_ranked_first_over_the_right_item']}")
    return "\n".join(lines)
