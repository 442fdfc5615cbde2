"""Search speed and recall: Flat vs IVF (several nprobe) vs HNSW (several efSearch).

Two datasets, same run: (1) N synthetic unit vectors (default 1M) of the served model's dimension,
with low intrinsic dimension like real embeddings (indexer/vectors/synthetic_vectors.py), and (2) the real
catalog embeddings from the configured store, if it has been indexed (`make run` / `manage.py index`),
with 1,000 held-out catalog vectors as queries. recall@10 is measured against exact search (Flat);
queries/s single (one query per call) and batched (all queries in one call).

    python bench/search.py [--n 1000000] [--config config.toml]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from bench.report import markdown_table, update_section  # noqa: E402
from indexer.vectors.faiss_index import SearchParams, VectorSearcher, build_faiss_index, choose_spec
from indexer.vectors.synthetic_vectors import clustered_unit_vectors, recall_against

REPO = Path(__file__).resolve().parents[1]


def single_rate(searcher: VectorSearcher, queries: np.ndarray, k: int, budget_s: float) -> float:
    """Queries/s one query per call, over as many queries as fit the time budget (at least 5).

    One OpenMP thread, as a serving process answering concurrent requests would use per query (with
    two threads, OpenMP barriers make single queries erratic whenever the other core is busy).
    """
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    t0 = time.perf_counter()
    done = 0
    for q in queries:
        searcher.search(q[None, :], k)
        done += 1
        if done >= 5 and time.perf_counter() - t0 > budget_s:
            break
    rate = done / (time.perf_counter() - t0)
    faiss.omp_set_num_threads(threads)
    return rate


def batch_rate(searcher: VectorSearcher, queries: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    _, ids = searcher.search(queries, k)
    return len(queries) / (time.perf_counter() - t0), ids


def run_dataset(name: str, x: np.ndarray, q: np.ndarray, k: int, nprobes: list[int], efs: list[int],
                ivf_spec: str, hnsw_spec: str, budget_s: float) -> tuple[list[list[object]], dict]:
    ids = np.arange(len(x), dtype=np.int64)
    rows: list[list[object]] = []
    t0 = time.perf_counter()
    flat = VectorSearcher(build_faiss_index(x, ids, "Flat"), ids, None, backend="cpu")
    flat_build = time.perf_counter() - t0
    flat_batch, truth = batch_rate(flat, q, k)
    flat_single = single_rate(flat, q, k, budget_s)
    rows.append([name, "Flat", "-", f"{flat_build:.1f}", 1.0, flat_single, 1.0, flat_batch])
    summary = {"flat_single": flat_single}
    del flat
    for spec, knob, values in ((ivf_spec, "nprobe", nprobes), (hnsw_spec, "efSearch", efs)):
        t0 = time.perf_counter()
        index = build_faiss_index(x, ids, spec)
        build = time.perf_counter() - t0
        for v in values:
            params = SearchParams(nprobe=v) if knob == "nprobe" else SearchParams(ef_search=v)
            s = VectorSearcher(index, ids, None, backend="cpu", params=params)
            b_rate, found = batch_rate(s, q, k)
            s_rate = single_rate(s, q, k, budget_s)
            r = recall_against(found, truth)
            rows.append([name, spec, f"{knob}={v}", f"{build:.1f}", r, s_rate, s_rate / flat_single, b_rate])
            summary[(spec, v)] = (r, s_rate / flat_single)
        del index
    return rows, summary


def catalog_vectors(config: str) -> tuple[np.ndarray | None, str]:
    try:
        from indexer.settings import load_settings
        from indexer.vectors.generations import load_generation

        settings = load_settings(config)
        gen = load_generation(settings.index_dir)
        return np.ascontiguousarray(gen.vectors, np.float32), f"{gen.manifest.name} of {settings.index_dir}"
    except Exception as exc:  # noqa: BLE001 - the real-data part is optional
        return None, f"not available ({exc})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config.toml"))
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=0, help="default: the served model's embedding dimension")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--nprobe", default="4,8,16,32,64")
    ap.add_argument("--ef-search", default="16,32,64,128")
    ap.add_argument("--hnsw", default="HNSW32")
    ap.add_argument("--single-budget-s", type=float, default=8.0, help="time spent per single-query measurement")
    ap.add_argument("--datasets", default="synthetic,catalog", help="which of synthetic,catalog to run")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    nprobes = [int(v) for v in args.nprobe.split(",")]
    efs = [int(v) for v in args.ef_search.split(",")]

    datasets = set(args.datasets.split(","))
    real, real_src = catalog_vectors(args.config)
    served_dim = real.shape[1] if real is not None else 0
    dim = args.dim or served_dim
    if not served_dim:
        from indexer.embedders import create_embedder_from_settings
        from indexer.settings import load_settings

        served_dim = create_embedder_from_settings(load_settings(args.config)).dim
        dim = dim or served_dim
    header = ["dataset", "index", "setting", "build s", f"recall@{args.k}", "single q/s", "single vs Flat",
              "batched q/s"]
    threads = faiss.omp_get_max_threads()
    common = (f"{args.queries} queries, k={args.k}, faiss {faiss.__version__}; single queries on 1 thread, "
              f"batched on {threads}.")
    if "synthetic" in datasets:
        t0 = time.perf_counter()
        x = clustered_unit_vectors(args.n, dim, seed=0)
        q = clustered_unit_vectors(args.queries, dim, seed=1)
        print(f"synthetic {args.n}x{dim} generated in {time.perf_counter() - t0:.1f}s", flush=True)
        default_spec = choose_spec(args.n, dim)
        nlist = 2 ** round(math.log2(2 * math.sqrt(args.n)))
        ivf_spec = default_spec if default_spec.startswith("IVF") else f"IVF{nlist},Flat"
        rows, summary = run_dataset(f"synthetic {args.n:,}x{dim}", x, q, args.k, nprobes, efs, ivf_spec, args.hnsw,
                                    args.single_budget_s)
        del x
        chosen = [(f"{ivf_spec} nprobe={v}", *summary[(ivf_spec, v)]) for v in nprobes]
        chosen += [(f"{args.hnsw} efSearch={v}", *summary[(args.hnsw, v)]) for v in efs]
        ok = [(name, r, sp) for name, r, sp in chosen if r >= 0.95 and sp >= 20]
        from indexer.evaluation.sweep import configured_setting
        from indexer.settings import load_settings

        settings = load_settings(args.config)
        configured = configured_setting(settings, args.n, dim).label
        measured = next(((r, sp) for name, r, sp in chosen if name == configured), None)
        verdict = (f"Configured default at this size: `{configured}` (index.spec = \"{settings.index.spec}\" in "
                   f"{args.config}): "
                   + (f"recall@{args.k} {measured[0]:.4f} at {measured[1]:.0f}x Flat's single-query rate"
                      if measured else "not among the measured settings")
                   + f". Settings meeting recall@{args.k} >= 0.95 at >= 20x Flat's single-query rate: "
                   + (", ".join(f"{name} (recall {r:.3f}, {sp:.0f}x)" for name, r, sp in ok) or "**none**"))
        dim_note = " = the served model's" if dim == served_dim else f" (the served model gives {served_dim})"
        body = (f"{common} The vectors are **synthetic** (clustered, low intrinsic dimension, "
                f"indexer/vectors/synthetic_vectors.py); dimension {dim}"
                f"{dim_note}"
                ".\n\n"
                f"{markdown_table(header, rows)}\n\n{verdict}")
        print(body, flush=True)
        if not args.no_write:
            update_section("search", "Search at 1M: recall@10 vs exact and queries/s (synthetic vectors)", body)
    if "catalog" in datasets:
        if real is None:
            print(f"catalog embeddings {real_src}: skipped")
            return
        rng = np.random.default_rng(0)
        held = rng.choice(len(real), min(args.queries, len(real) // 10), replace=False)
        mask = np.ones(len(real), bool)
        mask[held] = False
        nlist = 2 ** max(4, round(math.log2(2 * math.sqrt(mask.sum()))))
        rows, _ = run_dataset(f"catalog {int(mask.sum()):,}x{real.shape[1]}", real[mask], real[held], args.k,
                              nprobes, efs, f"IVF{nlist},Flat", args.hnsw, args.single_budget_s)
        body = (f"{common} Real catalog embeddings from {real_src} (served model); queries are "
                f"{len(held)} held-out catalog vectors (left out of the indexed vectors; the database is not "
                f"changed).\n\n{markdown_table(header, rows)}")
        print(body, flush=True)
        if not args.no_write:
            update_section("search_catalog", "Search on the real catalog embeddings", body)


if __name__ == "__main__":
    main()
