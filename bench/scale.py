"""Scale-out: indexing throughput with Ray (1 and 2 local workers) vs the single-process pipeline, and
Milvus-lite vs FAISS recall@10 and queries/s on catalog embeddings. Same run, same machine, side by side.

Part 1: the same N real catalog images (seeded slice of catalog.default_csv) indexed into fresh SQL stores by
(a) the single-process pipeline (run before and after the Ray runs, averaged: the machine is shared),
(b) `index --ray` with 1 embedding actor, (c) with 2 actors, on one local Ray cluster started on loopback.
Wall time of the whole job (CSV -> images -> embeddings -> SQL -> index), Ray's actor start-up included.

Part 2: vectors of a real catalog index: the configured database if it holds embeddings of the configured model,
else a sample of catalog.default_csv embedded here (said in the table). Q of them are held out as queries (removed
from SQL before publishing); the rest are published to FAISS and to a milvus-lite collection with the same
index settings; recall@10 against exact search, single-query q/s (one query per call, the serving pattern).

    python bench/scale.py [--n 400] [--sample 5000] [--queries 300] [--config config.toml]
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

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.report import markdown_table, update_section  # noqa: E402
from indexer.catalog.source import open_catalog
from indexer.embedders import create_embedder_from_settings
from indexer.pipeline.plan import IndexReport
from indexer.pipeline.ray_pipeline import RayOptions, connect_ray
from indexer.settings import Settings, load_settings  # noqa: E402
from indexer.store.db import upgrade_database
from indexer.vectors.faiss_index import SearchParams, VectorSearcher, build_faiss_index
from indexer.vectors.milvus_store import MilvusVectorStore, release_local_server
from indexer.wiring import create_pipeline, create_ray_pipeline, open_store

REPO = Path(__file__).resolve().parents[1]
K = 10


def fresh_settings(config: str, folder: Path) -> Settings:
    env = dict(os.environ)
    env.update({"LOOKALIKE_DATABASE__URL": f"sqlite:///{folder}/bench.db", "LOOKALIKE_INDEX__DIR": f"{folder}/index",
                "LOOKALIKE_MILVUS__URI": f"{folder}/milvus.db", "LOOKALIKE_INDEX__STORE": "faiss"})
    folder.mkdir(parents=True, exist_ok=True)
    settings = load_settings(config, env=env)
    upgrade_database(settings.database_url)
    return settings


def write_subset(src: Path, out: Path, n: int, offset: int = 0) -> Path:
    with src.open(newline="") as fh:
        rows = list(csv.DictReader(fh))[offset:offset + n]
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    return out


# ---- part 1: throughput ------------------------------------------------------------------------------------------

def throughput(config: str, tmp: Path, embedder, n: int) -> tuple[list[list[object]], dict[str, float]]:
    base = load_settings(config)
    src = base.resolve_path(base.catalog.default_csv)
    catalog = write_subset(src, tmp / "throughput.csv", n)
    source = open_catalog(catalog, images_root=src.parent)
    results: dict[str, tuple[float, IndexReport, str]] = {}
    steady: dict[str, float] = {}

    def timed(label: str, make) -> None:  # noqa: ANN001
        settings = fresh_settings(config, tmp / label.replace(" ", "-"))
        store = open_store(settings)
        pipeline = make(settings, store)
        t0 = time.perf_counter()
        report = pipeline.run(source)
        wall = time.perf_counter() - t0
        assert report.new == n, report.as_dict()
        results[label] = (wall, report, getattr(pipeline, "runner", "") or f"1 process, {torch.get_num_threads()} "
                                                                              "torch threads")
        first = getattr(pipeline, "first_batch", None)
        steady[label] = (n - first[1]) / (wall - first[0]) if first else n / wall
        store.close()
        print(f"{label}: {n / wall:.1f} items/s ({wall:.1f} s)", flush=True)

    timed("single-process 1", lambda s, st: create_pipeline(s, st, embedder, progress=False))
    owns = connect_ray(RayOptions(address="auto"))
    try:
        for workers in (1, 2):
            timed(f"ray {workers}", lambda s, st, w=workers: create_ray_pipeline(
                s, st, embedder, RayOptions(workers=w), progress=False))
    finally:
        if owns:
            import ray

            ray.shutdown(wait_for_processes=True)
    timed("single-process 2", lambda s, st: create_pipeline(s, st, embedder, progress=False))
    single = n / ((results["single-process 1"][0] + results["single-process 2"][0]) / 2)
    rows: list[list[object]] = []
    for label, (wall, _report, runner) in results.items():
        rate = n / wall
        rows.append([label, runner, n, round(wall, 1), rate, f"{rate / single:.2f}x", steady[label],
                     f"{steady[label] / single:.2f}x"])
    rates = {"single": single, "ray1": n / results["ray 1"][0], "ray2": n / results["ray 2"][0],
             "ray1_steady": steady["ray 1"], "ray2_steady": steady["ray 2"],
             "forward_single": n / max(1e-9, (results["single-process 1"][1].embedded_seconds
                                              + results["single-process 2"][1].embedded_seconds) / 2)}
    return rows, rates


def decode_rates(config: str, embedder, n: int = 200) -> dict[str, float | str]:
    """Images/s of decode + letterbox + normalise on one thread: the catalog's own small JPEGs, and the same
    pictures re-encoded at 1080x1440 (JPEG q90), the size of a typical e-commerce product photo."""
    import io

    from PIL import Image

    from indexer.catalog.images import decode_image

    settings = load_settings(config)
    src = settings.resolve_path(settings.catalog.default_csv)
    with src.open(newline="") as fh:
        rows = list(csv.DictReader(fh))[:n]
    small = [(src.parent / r["image"]).read_bytes() for r in rows]
    large = []
    for data in small[:50]:
        buf = io.BytesIO()
        decode_image(data).resize((1080, 1440), Image.BICUBIC).save(buf, "JPEG", quality=90)
        large.append(buf.getvalue())
    torch.set_num_threads(1)
    out = {}
    try:
        for label, blobs in (("small", small), ("large", large)):
            t0 = time.perf_counter()
            for data in blobs:
                embedder.preprocess(decode_image(data))
            out[label] = len(blobs) / (time.perf_counter() - t0)
        out["large_kb"] = sum(len(b) for b in large) / len(large) / 1024
        out["small_kb"] = sum(len(b) for b in small) / len(small) / 1024
        out["small_px"] = "x".join(str(v) for v in decode_image(small[0]).size)
    finally:
        torch.set_num_threads(os.cpu_count() or 1)
    return out


def sql_write_rate(config: str, tmp: Path, dim: int, batch: int, n: int = 20_000) -> float:
    """Rows/s that Store.write_embedded commits (item + vector, one transaction per batch) into a fresh SQLite
    store: the ceiling of the one writer (the driver) that every embedding worker feeds."""
    settings = fresh_settings(config, tmp / "sql-write")
    store = open_store(settings)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((batch, dim)).astype(np.float32)
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        rows = [{"external_id": f"x{start + i}", "existing_id": None, "image_path": f"/images/{start + i}.jpg",
                 "content_sha256": f"{start + i:064x}", "title": f"Product {start + i}",
                 "taxonomy": {"gender": "Men", "article_type": "Tshirts"}, "price": None, "attributes": {}}
                for i in range(batch)]
        with store.sessions.begin() as session:
            store.write_embedded(session, rows, vectors, "bench")
    rate = n / (time.perf_counter() - t0)
    store.close()
    return rate


# ---- part 2: Milvus-lite vs FAISS ----------------------------------------------------------------------------------

def catalog_vectors(config: str, tmp: Path, embedder, sample: int) -> tuple[Settings, str]:
    """A SQL store holding catalog embeddings of the configured model: the configured one, or a fresh sample."""
    configured = load_settings(config)
    try:
        store = open_store(configured)
        count = len(store.state(embedder.fingerprint).ids)
        store.close()
    except Exception:  # no database, not migrated, unreachable: embed a sample instead
        count = 0
    if count >= 2000:
        return configured, f"the configured index ({count} catalog items, model {embedder.fingerprint[:8]})"
    settings = fresh_settings(config, tmp / "sample")
    src = settings.resolve_path(settings.catalog.default_csv)
    catalog = write_subset(src, tmp / "sample.csv", sample, offset=1000)
    store = open_store(settings)
    t0 = time.perf_counter()
    report = create_pipeline(settings, store, embedder, progress=False).run(open_catalog(catalog, src.parent))
    store.close()
    print(f"embedded a {report.new}-item sample in {time.perf_counter() - t0:.0f} s", flush=True)
    return settings, (f"{report.new} catalog items (rows 1001-{1000 + sample} of catalog.csv) embedded here, "
                      f"model {embedder.name}@{embedder.input_size}px ({embedder.fingerprint[:8]})")


def single_rate(search, queries: np.ndarray) -> tuple[float, np.ndarray]:  # noqa: ANN001
    """Queries/s with one query per call (faiss on one OpenMP thread, as a serving process), and the ids found."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    found = []
    t0 = time.perf_counter()
    for q in queries:
        found.append(search(q[None, :])[0])
    rate = len(queries) / (time.perf_counter() - t0)
    faiss.omp_set_num_threads(threads)
    return rate, np.stack(found)


def compare_stores(settings: Settings, tmp: Path, embedder, n_queries: int, specs: list[str]) \
        -> list[list[object]]:  # noqa: ANN001
    from indexer.store.catalog_store import Store

    db = settings.database_url
    if not db.startswith("sqlite:///") or not Path(db[len("sqlite:///"):]).is_file():
        raise SystemExit(f"part 2 needs a SQLite store, got {db}")
    # Work on a copy: queries are held out by tombstoning them in SQL.
    copy = tmp / "compare.db"
    copy.write_bytes(Path(db[len("sqlite:///"):]).read_bytes())
    store = Store.from_url(f"sqlite:///{copy}")
    fp = embedder.fingerprint
    ids, _, vectors = store.load_vectors(fp)
    rng = np.random.default_rng(0)
    held = np.sort(rng.choice(len(ids), min(n_queries, len(ids) // 10), replace=False))
    queries = vectors[held]
    externals = [store.get_items([int(i)])[int(i)]["external_id"] for i in ids[held]]
    store.mark_removed(externals)
    gallery_ids, _, gallery = store.load_vectors(fp)
    truth_scores = queries @ gallery.T
    # The catalog holds identical pictures (same vector, several items): any of a tie counts, so recall is
    # "found ids scoring at least the k-th best score" rather than "the ids exact search happened to list".
    kth = -np.partition(-truth_scores, K - 1, axis=1)[:, K - 1]
    row_of = {int(i): r for r, i in enumerate(gallery_ids)}

    def recall(found: np.ndarray) -> float:
        hits = [sum(1 for i in f[:K] if i >= 0 and truth_scores[q, row_of[int(i)]] >= kth[q] - 1e-5) / K
                for q, f in enumerate(found)]
        return float(np.mean(hits))
    params = SearchParams(nprobe=settings.index.nprobe, ef_search=settings.index.ef_search)
    rows: list[list[object]] = []
    for spec in specs:
        t0 = time.perf_counter()
        fs = VectorSearcher(build_faiss_index(gallery, gallery_ids, spec), gallery_ids, gallery, backend="cpu",
                            params=params)
        f_build = time.perf_counter() - t0
        f_rate, f_found = single_rate(lambda q, s=fs: s.search(q, K)[1], queries)
        uri = str(tmp / f"milvus-{spec.replace(',', '-')}.db")
        ms = MilvusVectorStore(uri, collection="bench", spec=spec, params=params, batch_size=1000)
        try:
            t0 = time.perf_counter()
            ms.publish(store, embedder, IndexReport(), force=True)
            m_build = time.perf_counter() - t0
            _, searcher = ms.open(ms.current_name(store), store, embedder)
            m_rate, m_found = single_rate(lambda q, s=searcher: s.search(q, K)[1], queries)
        finally:
            ms.close()
            release_local_server(uri)
        fr, mr = recall(f_found), recall(m_found)
        label = ms.spec
        rows.append([spec, label, len(gallery_ids), len(queries), round(f_build, 1), round(m_build, 1), fr, mr,
                     f_rate, m_rate, f"{m_rate / f_rate:.3f}x"])
        print(f"{spec}: FAISS recall {fr:.4f} {f_rate:.0f} q/s | Milvus-lite recall {mr:.4f} {m_rate:.0f} q/s",
              flush=True)
    store.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config.toml"))
    ap.add_argument("--n", type=int, default=3000, help="catalog images per throughput run")
    ap.add_argument("--sample", type=int, default=5000, help="catalog items to embed when no index exists")
    ap.add_argument("--queries", type=int, default=300, help="held-out query vectors for recall@10 / q/s")
    ap.add_argument("--specs", default="Flat;HNSW32;IVF64,Flat", help="index settings compared (FAISS spec)")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args()

    load_start = os.getloadavg()
    t_start = time.perf_counter()
    settings = load_settings(args.config)
    embedder = create_embedder_from_settings(settings)
    with tempfile.TemporaryDirectory(prefix="lookalike-scale-") as tmp_name:
        tmp = Path(tmp_name)
        t_rows, rates = ([], {}) if args.skip_throughput else throughput(args.config, tmp, embedder, args.n)
        decode = decode_rates(args.config, embedder)
        sql_rate = sql_write_rate(args.config, tmp, embedder.dim, settings.pipeline.commit_every)
        store_settings, source = catalog_vectors(args.config, tmp, embedder, args.sample)
        c_rows = compare_stores(store_settings, tmp, embedder, args.queries, args.specs.split(";"))
    load_end = os.getloadavg()
    minutes = (time.perf_counter() - t_start) / 60
    parts = [f"Model `{embedder.name}` at {embedder.input_size} px (dim {embedder.dim}), batch "
             f"{settings.model.batch_size}, device {embedder.device}. 1-min load average {load_start[0]:.1f} at the "
             f"start and {load_end[0]:.1f} at the end (this 2-core machine is shared with other jobs); the run took "
             f"{minutes:.1f} min."]
    if t_rows:
        parts.append(
            f"**Indexing throughput**: the same {args.n} real catalog images into a fresh SQL store + FAISS "
            "generation each time; wall time of the whole job, Ray's cluster already up but actor start-up and "
            "model load included. Local Ray cluster on loopback, same machine (so Ray's workers share the same "
            "2 cores: this measures the overhead of the Ray path, not a speed-up).\n\n"
            + markdown_table(["run", "how", "items", "wall s", "items/s", "vs single-process (mean of 2)",
                              "items/s after the first batch", "vs single-process"], t_rows)
            + "\n\n\"After the first batch\" leaves out the time to the first embedded batch (Ray: actor start-up "
              "and model load, paid once per window of 200,000 rows; single-process: nothing is left out)."
            + f"\n\nSingle-process forward pass alone: {rates['forward_single']:.1f} images/s (the ceiling per "
              "machine of this kind); docs/scaling.md turns these rates into the 100M-image estimate.")
    parts.append(
        f"**Decode + preprocess on one core** (PIL decode, letterbox, normalise to {embedder.input_size} px): "
        f"catalog JPEGs ({decode['small_kb']:.1f} KB, e.g. {decode['small_px']} px) {decode['small']:.0f} images/s; "
        f"the same pictures at 1080x1440 px ({decode['large_kb']:.0f} KB JPEG q90, a typical shop photo) "
        f"{decode['large']:.1f} images/s. **SQL writes** (item + {embedder.dim}-d vector, "
        f"{settings.pipeline.commit_every} per transaction, fresh SQLite file): {sql_rate:,.0f} rows/s, the ceiling of "
        "the single writer that all embedding workers feed.")
    parts.append(
        f"**Milvus-lite vs FAISS** on catalog embeddings: {source}; {args.queries} of them held out as queries "
        f"(tombstoned in SQL before publishing), the rest published to both stores with the same settings "
        f"(index.nprobe = {settings.index.nprobe}, index.ef_search = {settings.index.ef_search}). recall@{K} against "
        "exact search over the same vectors (a returned id counts when it scores at least the exact k-th score: the "
        "catalog has identical pictures, so ties are common); single-query q/s through each store's searcher "
        "(FAISS in-process on one thread; milvus-lite through pymilvus over its in-process gRPC server, "
        "pure-Python engine).\n\n"
        + markdown_table(["index.spec", "Milvus index", "vectors", "queries", "FAISS build s", "Milvus publish s",
                          "FAISS recall@10", "Milvus-lite recall@10", "FAISS q/s", "Milvus-lite q/s",
                          "Milvus-lite / FAISS q/s"], c_rows)
        + "\n\nmilvus-lite is a single-process development engine; a Milvus cluster's numbers are not measured "
          "here (docs/scaling.md).")
    body = "\n\n".join(parts)
    print(body)
    if not args.no_write:
        update_section("scale", "Scale-out: Ray indexing throughput, Milvus-lite vs FAISS (bench/scale.py)", body)


if __name__ == "__main__":
    main()
