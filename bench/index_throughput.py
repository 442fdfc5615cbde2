"""Indexing throughput: the whole pipeline (CSV -> JPEG -> SQL + index) vs the embedder's own forward rate.

Same model, same batch size, same images, same run. The forward rate is measured on tensors
decoded and preprocessed beforehand (so it is the ceiling the pipeline can reach); it is measured
before and after the pipeline run and averaged, since the machine may be shared.

    python bench/index_throughput.py [--n 2000] [--config config.toml]
"""

from __future__ import annotations

import argparse
import csv
import os
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config.toml"))
    ap.add_argument("--n", type=int, default=2000, help="catalog items (seeded sample of the default catalog)")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="lookalike-bench-") as tmp:
        env = dict(os.environ)
        env.update({"LOOKALIKE_DATABASE__URL": f"sqlite:///{tmp}/bench.db", "LOOKALIKE_INDEX__DIR": f"{tmp}/index"})
        settings = load_settings(args.config, env=env)
        src = settings.resolve_path(settings.catalog.default_csv)
        with src.open(newline="") as fh:
            rows = list(csv.DictReader(fh))[: args.n]
        sub = Path(tmp) / "catalog.csv"
        with sub.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
            w.writeheader()
            w.writerows(rows)
        embedder = create_embedder_from_settings(settings)
        batch = settings.model.batch_size
        tensors = [embedder.preprocess(decode_image((src.parent / r["image"]).read_bytes())) for r in rows]

        fwd_before = forward_rate(embedder, tensors, batch)
        upgrade_database(settings.database_url)
        store = open_store(settings)
        pipeline = create_pipeline(settings, store, embedder, progress=False)
        t0 = time.perf_counter()
        report = pipeline.run(open_catalog(sub, images_root=src.parent))
        elapsed = time.perf_counter() - t0
        store.close()
        fwd_after = forward_rate(embedder, tensors, batch)
    assert report.new == len(rows), report.as_dict()
    pipe_rate = report.new / elapsed
    fwd = (fwd_before + fwd_after) / 2
    ratio = pipe_rate / fwd
    load = os.getloadavg()[0]
    table = markdown_table(
        ["stage", "items", "items/s"],
        [["embedder forward only (pre-decoded tensors), before", len(rows), fwd_before],
         ["embedder forward only (pre-decoded tensors), after", len(rows), fwd_after],
         ["whole pipeline: CSV -> JPEG decode -> embed -> SQL -> index generation", report.new, pipe_rate],
         ["**ratio pipeline / forward**", "", ratio]],
    )
    body = (f"Model `{embedder.name}` input {embedder.input_size}px, batch {batch}, "
            f"{settings.pipeline.decode_workers} decode threads, {torch.get_num_threads()} torch threads, "
            f"device {embedder.device}; real catalog images (60x80 JPEGs). "
            f"1-min load average at the end: {load:.1f}.\n\n{table}\n\n"
            f"Acceptance (issue 2): ratio >= 0.85 -> **{'met' if ratio >= 0.85 else 'NOT met'}**.")
    print(body)
    if not args.no_write:
        update_section("index_throughput", "Indexing throughput (pipeline vs forward-only)", body)


if __name__ == "__main__":
    main()
