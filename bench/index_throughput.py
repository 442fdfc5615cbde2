"""Indexing throughput: the whole pipeline (CSV -> JPEG -> SQL + index) vs the embedder's own forward rate.

Same model, same batch size, same images, same run. The forward rate is measured on tensors
decoded and preprocessed beforehand (so it is the ceiling the pipeline can reach). The machine may be
shared and its speed drifts, so forward-only and whole-pipeline runs alternate (--repeats rounds, each
pipeline run into a fresh database and index dir, a last forward run after them) and the ratio is of
the medians.

    python bench/index_throughput.py [--n 2000] [--repeats 3] [--config config.toml]
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

import torch  # noqa: E402

from bench.report import markdown_table, update_section  # noqa: E402
from indexer.catalog import open_catalog  # noqa: E402
from indexer.db import upgrade_database  # noqa: E402
from indexer.images import decode_image  # noqa: E402
from indexer.service import create_embedder_from_settings, create_pipeline, open_store  # noqa: E402
from indexer.settings import load_settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def forward_rate(embedder, tensors: list[torch.Tensor], batch: int) -> float:
    """Images/s of embed_tensors alone over pre-decoded tensors."""
    embedder.embed_tensors(torch.stack(tensors[:batch]))  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(tensors), batch):
        embedder.embed_tensors(torch.stack(tensors[i:i + batch]))
    return len(tensors) / (time.perf_counter() - t0)


def pipeline_rate(settings, embedder, catalog: Path, images_root: Path, tmp: Path, name: str) -> float:
    """Items/s of one full `manage.py index` run over the catalog into a fresh database and index dir."""
    db, index_dir = tmp / f"{name}.db", tmp / f"{name}-index"
    settings = dataclasses.replace(settings, database=dataclasses.replace(settings.database, url=f"sqlite:///{db}"),
                                   index=dataclasses.replace(settings.index, dir=str(index_dir)))
    upgrade_database(settings.database_url)
    store = open_store(settings)
    try:
        pipeline = create_pipeline(settings, store, embedder, progress=False)
        t0 = time.perf_counter()
        report = pipeline.run(open_catalog(catalog, images_root=images_root))
        elapsed = time.perf_counter() - t0
    finally:
        store.close()
    if report.new == 0 or report.problems:
        raise SystemExit(f"pipeline run {name} indexed {report.new} items, problems: {report.problems[:3]}")
    return report.new / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config.toml"))
    ap.add_argument("--n", type=int, default=2000, help="catalog items (seeded sample of the default catalog)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of forward-only then pipeline; medians")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args()

    settings = load_settings(args.config)
    src = settings.resolve_path(settings.catalog.default_csv)
    with src.open(newline="") as fh:
        rows = list(csv.DictReader(fh))[: args.n]
    embedder = create_embedder_from_settings(settings)
    batch = settings.model.batch_size
    tensors = [embedder.preprocess(decode_image((src.parent / r["image"]).read_bytes())) for r in rows]
    fwd: list[float] = []
    pipe: list[float] = []
    with tempfile.TemporaryDirectory(prefix="lookalike-bench-") as tmp_name:
        tmp = Path(tmp_name)
        sub = tmp / "catalog.csv"
        with sub.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
            w.writeheader()
            w.writerows(rows)
        for i in range(args.repeats):
            fwd.append(forward_rate(embedder, tensors, batch))
            pipe.append(pipeline_rate(settings, embedder, sub, src.parent, tmp, f"run{i}"))
            print(f"round {i + 1}: forward {fwd[-1]:.1f}/s, pipeline {pipe[-1]:.1f}/s", flush=True)
        fwd.append(forward_rate(embedder, tensors, batch))
    f, p = statistics.median(fwd), statistics.median(pipe)
    ratio = p / f
    load = os.getloadavg()[0]

    def spread(v: list[float]) -> str:
        return f"{min(v):.1f}-{max(v):.1f}"

    table = markdown_table(
        ["stage", "runs", "items/s (median)", "range", "ratio to forward"],
        [["embedder forward only (pre-decoded tensors)", len(fwd), f, spread(fwd), 1.0],
         ["whole pipeline: CSV -> JPEG decode -> embed -> SQL -> index generation", len(pipe), p, spread(pipe),
          f"**{ratio:.3f}**"]],
    )
    body = (f"{args.n} catalog items, model `{embedder.name}` input {embedder.input_size}px, batch {batch}, "
            f"{settings.pipeline.decode_workers} decode threads, {torch.get_num_threads()} torch threads, "
            f"device {embedder.device}; real catalog images (60x80 JPEGs). Forward-only runs before, between and "
            f"after the pipeline runs (each pipeline run indexes into a fresh database and index dir); medians. "
            f"1-min load average at the end: {load:.1f}.\n\n{table}\n\n"
            f"Acceptance (issue 2): ratio >= 0.85 -> **{'met' if ratio >= 0.85 else 'NOT met'}** ({ratio:.3f}).")
    print(body)
    if not args.no_write:
        update_section("index_throughput", "Indexing throughput (pipeline vs forward-only)", body)


if __name__ == "__main__":
    main()
