#!/usr/bin/env python3
"""Street photos through the served path: recall of the API's QueryEngine per localisation mode, on SYNTHETIC
street photos of test-split products, an easy set and issue 16's hard set, side by side in one run.

Both sets are made by `make-pairs synthetic` code from the test split of the served checkpoint's splits.csv (products
never used in training): the gallery is --gallery products (every one of them indexed by the real pipeline into a
temporary database), the queries are SYNTHETIC photos of a seeded sample of --queries of them. easy = the default
generator (product 65-95% of the frame); hard = `--preset hard` (20-55% of a cluttered frame, rotated, cut off,
occluded, colour cast, blur, JPEG 25-70). Rows: whole photo only (`localize=off`), whole + grid + activation crops
(`crops`), `auto` without a detector (grid + activation crops; the API default before issue 16), and `detector`:
`auto` with the built-in garment detector (web.detector = "builtin", models/detector; the API default now), with the
engine's own p50 time in this process and how often a crop's wrong
result came first. Writes BENCHMARKS.md section "street".

    python bench/street.py [--gallery 2000] [--queries 300] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.report import markdown_table, update_section  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=REPO / "config.toml")
    ap.add_argument("--gallery", type=int, default=2000, help="Test products indexed as the gallery.")
    ap.add_argument("--queries", type=int, default=300, help="SYNTHETIC query photos per set.")
    ap.add_argument("--size", type=int, default=320, help="Query photo size in px.")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--detection-scenes", type=int, default=300, help="SYNTHETIC test scenes for the detector's AP.")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    from indexer.datasets.make_pairs import make_synthetic_pairs
    from indexer.datasets.pairs import PairSet, read_pair_set
    from indexer.datasets.synthetic import SyntheticConfig, hard_street_config
    from indexer.embedders import create_embedder_from_settings, detector_from_settings, query_embedder_from_settings
    from indexer.evaluation.served import SERVED_MODES, evaluate_served
    from indexer.settings import load_settings

    settings = load_settings(args.config, env={})
    catalog = settings.resolve_path(settings.catalog.default_csv)
    splits = settings.resolve_path(settings.model.checkpoint).parent / "splits.csv"
    if not catalog.is_file() or not splits.is_file():
        raise SystemExit(f"error: needs the catalog ({catalog}) and the checkpoint's splits ({splits})")
    embedder = create_embedder_from_settings(settings)
    detector, why_not = detector_from_settings(settings, embedder, spec="builtin")
    if detector is None:
        raise SystemExit(f"error: {why_not}")
    query_embedder, why_served = query_embedder_from_settings(settings, embedder)
    street = query_embedder is not embedder
    if not street:
        print(f"no street encoder ({why_served}): the street row is left out", flush=True)
    modes = (*SERVED_MODES, "detector", *(("street",) if street else ()))
    from indexer.evaluation.detection import evaluate_detection

    detection = evaluate_detection(settings, detector, catalog, None, splits, args.detection_scenes, progress=False)
    print(f"detector AP@0.5 {detection.metrics['AP@0.5']:.3f} on {args.detection_scenes} SYNTHETIC test scenes",
          flush=True)
    started, load_start = time.perf_counter(), os.getloadavg()
    rows, raw = [], {}
    with tempfile.TemporaryDirectory(prefix="lookalike-street-") as tmp:
        for name, cfg in (("easy", SyntheticConfig(size=args.size)), ("hard", hard_street_config(args.size))):
            out = Path(tmp) / name
            make_synthetic_pairs(catalog, out, None, splits, "test", 1, args.seed, cfg, args.gallery,
                                 progress=False, echo=lambda _m: None)
            full = read_pair_set(out / "pairs.csv", out / "gallery.csv")
            picks = sorted(random.Random(args.seed).sample(range(len(full.pairs)), min(args.queries,
                                                                                       len(full.pairs))))
            pair_set = PairSet(full.source, [full.pairs[i] for i in picks], full.gallery, full.problems)
            report = evaluate_served(settings, embedder, pair_set, synthetic=True, ks=(1, 5, 10, 20),
                                     query_embedder=query_embedder,
                                     detector=detector)
            raw[name] = report.extra["served"]
            for mode in modes:
                r = raw[name][mode]
                rows.append([name, mode, r["n_queries"], f"{r['recall@1']:.3f}", f"{r['recall@5']:.3f}",
                             f"{r['recall@10']:.3f}", f"{r['recall@20']:.3f}", f"{r['p50_ms']:.1f}",
                             r["crop_ranked_first_over_the_right_item"], r["queries_with_garments"]])
            print(f"{name}: " + ", ".join(f"{m} r@1 {raw[name][m]['recall@1']:.3f}" for m in modes), flush=True)
    load_end = os.getloadavg()
    table = markdown_table(["set (SYNTHETIC)", "localize", "queries", "recall@1", "recall@5", "recall@10",
                            "recall@20", "engine p50 ms", "a crop's wrong result first",
                            "queries with garments detected"], rows)
    gain = raw["hard"]["auto"]["recall@1"] - raw["hard"]["off"]["recall@1"]
    det_gain = raw["hard"]["detector"]["recall@1"] - raw["hard"]["auto"]["recall@1"]
    street_gain = raw["hard"]["street"]["recall@1"] - raw["hard"]["detector"]["recall@1"] if street else None
    det_meta = detector.meta
    slot_ap = ", ".join(f"{slot} {m['AP@0.5']:.3f}" for slot, m in detection.per_slot.items())
    body = "\n".join([
        f"SYNTHETIC street photos of test-split products (never used in training) against a gallery of "
        f"{args.gallery:,} test products indexed by the real pipeline; {args.queries} queries per set, {args.size} px. "
        f"Served model: fingerprint {embedder.fingerprint[:12]} ({embedder.dim}-d, {embedder.input_size} px, runtime "
        f"{embedder.runtime}); every query through the API's QueryEngine (`evaluate street2shop --served`). `auto` = "
        "grid crops + activation crop merged by best evidence (no detector); `detector` = the built-in garment "
        f"detector (models/detector, trained on SYNTHETIC scenes of train products only, {det_meta['input_size']} px "
        f"trunk, threshold {settings.web.detector_threshold}, {detector.runtime}): garments searched one by "
        "one in the photo's batch; the default answer starts with the garment of highest centrality^4 x best match "
        "similarity (the whole photo steps in only when 0.05 more similar), then every garment and the whole photo "
        "by best evidence; no grid crop unless nothing is detected." + (
            f" `street` = `detector` with the photo and its garments embedded by the street encoder "
            f"({os.path.relpath(query_embedder.checkpoint, REPO)}, fine-tuned on SYNTHETIC crops of train products "
            "only; the index keeps "
            "the served model's vectors)" if street else ""),
        "",
        f"Detector on {args.detection_scenes} SYNTHETIC scenes of test products (`manage.py evaluate detection`): "
        f"AP@0.5 {detection.metrics['AP@0.5']:.3f} (mean over slots; {slot_ap}), recall@0.5 "
        f"{detection.metrics['recall@0.5']:.3f} at the served threshold, {detection.metrics['n_objects']} garments.",
        "",
        table,
        "",
        f"On the hard set grid localisation adds {gain * 100:+.1f} points of recall@1 over the whole photo alone, "
        f"the detector {det_gain * 100:+.1f} points over grid localisation (`auto`)"
        + (f", the street encoder {street_gain * 100:+.1f} points over the detector alone. " if street else ". ")
        +
        f"Load average (1/5/15 min) at start {load_start[0]:.1f}/{load_start[1]:.1f}/{load_start[2]:.1f}, at end "
        f"{load_end[0]:.1f}/{load_end[1]:.1f}/{load_end[2]:.1f}; the p50 times are in-process and move with the "
        f"load of the shared 2 cores (bench/latency.py measures latency). Run took "
        f"{(time.perf_counter() - started) / 60:.1f} min.",
    ])
    print(body)
    if not args.no_write:
        update_section("street", "Street photos through the served path (SYNTHETIC)", body)
        print("updated BENCHMARKS.md (section street)")


if __name__ == "__main__":
    main()
