"""Indexing throughput: the whole pipeline (CSV -> JPEG -> SQL + index) vs the embedder's own forward rate, and the
forward rate of each runtime (torch eager, ONNX Runtime fp32, ONNX Runtime int8) side by side.

Same model, same batch size, same images, same run. Forward rates are measured on tensors decoded and preprocessed
beforehand (so they are the ceiling the pipeline can reach). The machine may be shared and its speed drifts, so the
forward-only runs of every runtime and the whole-pipeline runs (with the configured runtime, model.runtime) alternate
(--repeats rounds, each pipeline run into a fresh database and index dir, a last forward run after them) and ratios
are of the medians. int8's quality cost is measured on the same images: cosine to the torch vectors, and how many of
each image's 10 nearest neighbours among them (torch vectors) it keeps.

    python bench/index_throughput.py [--n 2000] [--repeats 3] [--config config.toml] [--other-decode-workers 2]

Each round also runs the whole pipeline with ``--other-decode-workers`` decode threads (0: not), so the configured
pipeline.decode_workers is compared side by side with another count in the same run.
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

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.report import markdown_table, update_section  # noqa: E402
from engine.models.onnx_runtime import attach_onnx_runtime  # noqa: E402
from indexer.catalog.images import decode_image  # noqa: E402
from indexer.catalog.source import open_catalog  # noqa: E402
from indexer.embedders import create_embedder_from_settings  # noqa: E402
from indexer.settings import load_settings  # noqa: E402
from indexer.store.db import upgrade_database  # noqa: E402
from indexer.wiring import create_pipeline, open_store  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def forward_rate(embedder, tensors: list[torch.Tensor], batch: int) -> float:
    """Images/s of embed_tensors alone over batches decoded, preprocessed and stacked beforehand (nothing but the
    forward pass is timed)."""
    batches = [torch.stack(tensors[i:i + batch]) for i in range(0, len(tensors), batch)]
    embedder.embed_tensors(batches[0])  # warm-up
    t0 = time.perf_counter()
    for b in batches:
        embedder.embed_tensors(b)
    return len(tensors) / (time.perf_counter() - t0)


def embed_all(embedder, tensors: list[torch.Tensor], batch: int) -> np.ndarray:
    return np.concatenate([embedder.embed_tensors(torch.stack(tensors[i:i + batch]))
                           for i in range(0, len(tensors), batch)])


def neighbour_overlap(ref: np.ndarray, got: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's k nearest neighbours under ``ref`` that ``got`` also ranks in its k nearest."""
    def top(v: np.ndarray) -> np.ndarray:
        sims = v @ v.T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1)[:, :k]

    a, b = top(ref), top(got)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b, strict=True)]))


def runtime_embedders(settings) -> dict[str, object]:
    """The configured model once per runtime (each its own module copy), graphs cached in model.onnx_dir."""
    onnx_dir = settings.resolve_path(settings.model.onnx_dir)
    out = {}
    for runtime in ("torch", "onnxruntime", "onnxruntime-int8"):
        emb = create_embedder_from_settings(dataclasses.replace(
            settings, model=dataclasses.replace(settings.model, runtime="torch")))
        got = attach_onnx_runtime(emb, runtime, onnx_dir, settings.model.threads)
        if got != runtime:
            raise SystemExit(f"runtime {runtime} is not available here (got {got}); see the warning above")
        out[runtime] = emb
    return out


def pipeline_rate(settings, embedder, catalog: Path, images_root: Path, tmp: Path, name: str) -> tuple[float, float]:
    """Items/s of one full `manage.py index` run over the catalog into a fresh database and index dir, and the rate of
    its forward passes alone inside it (slower than forward-only when the other stages take CPU from them)."""
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
    return report.new / elapsed, report.new / report.embedded_seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config.toml"))
    ap.add_argument("--n", type=int, default=2000, help="catalog items (seeded sample of the default catalog)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of forward-only then pipeline; medians")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    ap.add_argument("--other-decode-workers", type=int, default=2,
                    help="also run the pipeline with this many decode threads each round (0: not)")
    args = ap.parse_args()

    settings = load_settings(args.config)
    src = settings.resolve_path(settings.catalog.default_csv)
    with src.open(newline="") as fh:
        rows = list(csv.DictReader(fh))[: args.n]
    embedder = create_embedder_from_settings(settings)  # the configured runtime: what the pipeline runs
    runtimes = runtime_embedders(settings)
    batch = settings.model.batch_size
    tensors = [embedder.preprocess(decode_image((src.parent / r["image"]).read_bytes())) for r in rows]
    vectors = {name: embed_all(emb, tensors, batch) for name, emb in runtimes.items()}
    fwd: dict[str, list[float]] = {name: [] for name in runtimes}
    pipe: list[float] = []
    inside: list[float] = []
    other_workers = args.other_decode_workers if args.other_decode_workers != settings.pipeline.decode_workers else 0
    other_settings = dataclasses.replace(settings, pipeline=dataclasses.replace(settings.pipeline,
                                                                                decode_workers=other_workers))
    other: list[float] = []
    with tempfile.TemporaryDirectory(prefix="lookalike-bench-") as tmp_name:
        tmp = Path(tmp_name)
        sub = tmp / "catalog.csv"
        with sub.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
            w.writeheader()
            w.writerows(rows)
        for i in range(args.repeats):
            for name, emb in runtimes.items():
                fwd[name].append(forward_rate(emb, tensors, batch))
            rate, forward_inside = pipeline_rate(settings, embedder, sub, src.parent, tmp, f"run{i}")
            pipe.append(rate)
            inside.append(forward_inside)
            if other_workers:
                other.append(pipeline_rate(other_settings, embedder, sub, src.parent, tmp, f"other{i}")[0])
            rates = ", ".join(f"{name} {v[-1]:.1f}/s" for name, v in fwd.items())
            print(f"round {i + 1}: forward {rates}; pipeline ({embedder.runtime}) {pipe[-1]:.1f}/s"
                  + (f", with {other_workers} decode threads {other[-1]:.1f}/s" if other else ""), flush=True)
        for name, emb in runtimes.items():
            fwd[name].append(forward_rate(emb, tensors, batch))
    med = {name: statistics.median(v) for name, v in fwd.items()}
    f, p = med[embedder.runtime], statistics.median(pipe)
    ratio = p / f
    speedup = med["onnxruntime"] / med["torch"]
    load = os.getloadavg()[0]
    cos = {name: (vectors["torch"] * v).sum(axis=1) for name, v in vectors.items()}
    overlap = {name: neighbour_overlap(vectors["torch"], v) for name, v in vectors.items()}

    def spread(v: list[float]) -> str:
        return f"{min(v):.1f}-{max(v):.1f}"

    labels = {"torch": "torch eager", "onnxruntime": "ONNX Runtime fp32", "onnxruntime-int8": "ONNX Runtime int8"}
    rows_out = [[f"forward only, {labels[name]} (pre-decoded tensors)", len(v), med[name], spread(v),
                 f"{med[name] / med['torch']:.2f}x", f"{cos[name].min():.7f} / {cos[name].mean():.7f}",
                 f"{overlap[name]:.3f}"] for name, v in fwd.items()]
    rows_out.append([f"whole pipeline ({labels[embedder.runtime]}): CSV -> JPEG decode -> embed -> SQL -> index "
                     f"generation", len(pipe), p, spread(pipe), f"**{ratio:.3f}** of its forward", "", ""])
    rows_out.append([f"its forward passes inside the pipeline ({labels[embedder.runtime]})", len(inside),
                     statistics.median(inside), spread(inside),
                     f"{statistics.median(inside) / f:.3f} of forward-only", "", ""])
    if other:
        rows_out.append([f"whole pipeline with {other_workers} decode threads instead of "
                         f"{settings.pipeline.decode_workers} (same rounds)", len(other), statistics.median(other),
                         spread(other), f"{statistics.median(other) / f:.3f} of its forward", "", ""])
    table = markdown_table(["stage", "runs", "items/s (median)", "range", "vs torch eager",
                            "cosine to torch (min / mean)", "10-NN kept"], rows_out)
    threads = settings.model.threads or os.cpu_count()
    body = (f"{args.n} catalog items, model `{embedder.name}` input {embedder.input_size}px, batch {batch}, "
            f"{settings.pipeline.decode_workers} decode threads, {torch.get_num_threads()} torch threads, "
            f"{threads} ONNX Runtime intra-op threads (model.threads), device {embedder.device}, pipeline runtime "
            f"`{embedder.runtime}` (model.runtime = \"{settings.model.runtime}\"); real catalog images (60x80 JPEGs). "
            f"Forward-only runs of each runtime before, between and after the pipeline runs (each pipeline run "
            f"indexes into a fresh database and index dir); medians. \"10-NN kept\": mean share of each image's 10 "
            f"nearest neighbours among these {args.n} images (torch vectors) that the runtime's vectors keep. "
            f"1-min load average at the end: {load:.1f}.\n\n{table}\n\n"
            f"Acceptance (issue 22): ONNX Runtime fp32 forward >= 2.5x torch eager -> "
            f"**{'met' if speedup >= 2.5 else 'NOT met'}** ({speedup:.2f}x); whole pipeline >= 0.85 of its forward "
            f"rate -> **{'met' if ratio >= 0.85 else 'NOT met'}** ({ratio:.3f}).")
    print(body)
    if not args.no_write:
        update_section("index_throughput", "Indexing throughput (pipeline vs forward-only)", body)


if __name__ == "__main__":
    main()
