#!/usr/bin/env python3
"""Indexing from a cold disk: the whole pipeline (CSV -> JPEG -> SQL + index) with the image files read one at a time
(`pipeline.read_workers = 1`) vs read ahead by several threads (the configured value, 8), side by side in one run.

A fresh machine's first `manage.py index` (what `make run` does) reads every catalog picture from disk for the first
time; a reader that waits for each file leaves the cores idle. Before every run the kernel's page cache is dropped
(`/proc/sys/vm/drop_caches`: needs root; the bench refuses to run without it rather than time a warm cache), then
the run indexes the first --rows rows of the configured catalog into a fresh database and index dir. The two settings
alternate for --repeats rounds; the ratio is of the medians.

    sudo python bench/cold_index.py [--rows 8000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import markdown_table, update_section  # noqa: E402
from indexer.catalog.source import open_catalog  # noqa: E402
from indexer.embedders import create_embedder_from_settings  # noqa: E402
from indexer.settings import load_settings  # noqa: E402
from indexer.store.db import upgrade_database  # noqa: E402
from indexer.wiring import create_pipeline, open_store  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def drop_page_cache() -> None:
    os.sync()
    DROP_CACHES.write_text("1\n")


def cold_run(settings, embedder, catalog: Path, images_root: Path, tmp: Path, name: str,
             read_workers: int) -> tuple[float, float]:
    """(items/s, CPU share used of all cores) of one index run with a dropped page cache."""
    db, index_dir = tmp / f"{name}.db", tmp / f"{name}-index"
    settings = dataclasses.replace(
        settings, database=dataclasses.replace(settings.database, url=f"sqlite:///{db}"),
        index=dataclasses.replace(settings.index, dir=str(index_dir)),
        pipeline=dataclasses.replace(settings.pipeline, read_workers=read_workers))
    upgrade_database(settings.database_url)
    store = open_store(settings)
    try:
        pipeline = create_pipeline(settings, store, embedder, progress=False)
        drop_page_cache()
        cpu0, t0 = time.process_time(), time.perf_counter()
        report = pipeline.run(open_catalog(catalog, images_root=images_root))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        store.close()
    if report.new == 0 or report.problems:
        raise SystemExit(f"run {name} indexed {report.new} items, problems: {report.problems[:3]}")
    return report.new / elapsed, cpu / elapsed / (os.cpu_count() or 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config.toml"))
    ap.add_argument("--rows", type=int, default=8000, help="first rows of the configured catalog")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args()
    try:
        drop_page_cache()
    except OSError as exc:
        raise SystemExit(f"error: cannot drop the page cache ({exc}); run as root, or the runs would be warm") from None

    settings = load_settings(args.config)
    src = settings.resolve_path(settings.catalog.default_csv)
    root = settings.resolve_path(settings.catalog.images_root) if settings.catalog.images_root else src.parent
    with src.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [r for _, r in zip(range(args.rows), reader, strict=False)]
        fields = reader.fieldnames or []
    embedder = create_embedder_from_settings(settings)
    configured = settings.pipeline.read_workers
    rates: dict[int, list[float]] = {1: [], configured: []}
    cpu: dict[int, list[float]] = {1: [], configured: []}
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="lookalike-cold-") as tmp:
        folder = Path(tmp)
        catalog = folder / "catalog.csv"
        with catalog.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        for r in range(args.repeats):
            for workers in (1, configured):
                rate, share = cold_run(settings, embedder, catalog, root, folder, f"r{r}-w{workers}", workers)
                rates[workers].append(rate)
                cpu[workers].append(share)
                print(f"round {r + 1}: read_workers {workers}: {rate:.1f} items/s, {share:.0%} of the cores busy",
                      flush=True)
    load_end = os.getloadavg()
    one, many = statistics.median(rates[1]), statistics.median(rates[configured])
    table = markdown_table(
        ["image files read by", "items/s (median)", "runs", "share of the cores busy (median)"],
        [["1 thread (one file at a time)", one, ", ".join(f"{v:.1f}" for v in rates[1]),
          f"{statistics.median(cpu[1]):.0%}"],
         [f"{configured} threads (pipeline.read_workers)", many, ", ".join(f"{v:.1f}" for v in rates[configured]),
          f"{statistics.median(cpu[configured]):.0%}"]])
    body = "\n".join([
        f"The first {len(rows):,} rows of the configured catalog ({src}), indexed by the real pipeline (model "
        f"fingerprint {embedder.fingerprint[:12]}, runtime {embedder.runtime}, batch {settings.model.batch_size}) "
        "into a fresh database and index dir, with the kernel's page cache dropped before every run (as on a fresh "
        "machine's first `manage.py index`); the two settings alternate, "
        f"{args.repeats} rounds.",
        "",
        table,
        "",
        f"**Reading ahead: {many / one:.2f}x** the items/s of reading one file at a time. Load average (1/5/15 min) "
        f"at start {load_start[0]:.1f}/{load_start[1]:.1f}/{load_start[2]:.1f}, at end "
        f"{load_end[0]:.1f}/{load_end[1]:.1f}/{load_end[2]:.1f}.",
    ])
    print(body)
    if not args.no_write:
        update_section("cold-index", "Indexing from a cold disk", body)
        print("updated BENCHMARKS.md (section cold-index)")


if __name__ == "__main__":
    main()
