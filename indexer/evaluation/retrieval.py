"""`manage.py evaluate`: street-to-shop and category retrieval, with the model and search code that serve users.

Both evaluations embed images with the configured ``Embedder`` (same preprocessing, same checkpoint), put the
gallery vectors in a FAISS index built by ``indexer.vectors.faiss_index.build_faiss_index`` from the configured spec and
query it through ``VectorSearcher`` - the classes behind ``SearchService``. The ranked lists are scored with
``engine.query_stats`` (docs/metrics.md gives the exact definitions), broken down per label, plotted, and each run is
stored in SQL as an ``EvaluationRun``.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from engine.metrics import DEFAULT_KS
from engine.query_stats import QueryStats, query_stats, recall_curve, summarize
from indexer.catalog.images import ImageDecodeError, decode_image
from indexer.datasets.pairs import GalleryImage, PairSet, QueryPair, crop_query
from indexer.evaluation.failures import FAILURE_K, collect_failures
from indexer.evaluation.plots import plot_recall_curves
from indexer.vectors.faiss_index import SearchParams, VectorSearcher, build_faiss_index, choose_spec

# Ranked depth used for mAP when the gallery is larger than this (recall@k needs only max(ks)).
MAX_DEPTH = 10_000
QUERY_CHUNK = 256
@dataclass
class EvaluationReport:
    """One evaluation run: the metrics, where they came from, and the breakdown."""

    kind: str
    metrics: dict[str, float]
    per_label: dict[str, dict[str, float]]
    curve: list[float]
    n_gallery: int
    depth: int
    index_spec: str
    search_backend: str
    model: dict[str, Any]
    dataset: str
    dataset_sha256: str
    synthetic: bool
    label_column: str
    seconds: float
    problems: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    label_curves: dict[str, list[float]] = field(default_factory=dict)
    run_id: int | None = None
    plot: str | None = None
    # The worst failed queries (indexer/evaluation/failures.py); stored in the run's details, not printed by --json.
    failures: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON output: the metric keys (``recall@1`` ... ``mAP``, ``n_queries``) at the top level, then context."""
        return {**self.metrics, "kind": self.kind, "synthetic": self.synthetic, "n_gallery": self.n_gallery,
                "map_depth": self.depth, "label_column": self.label_column, "per_label": self.per_label,
                "recall_curve": [round(r, 6) for r in self.curve], "index_spec": self.index_spec,
                "search_backend": self.search_backend, "model": self.model, "dataset": self.dataset,
                "dataset_sha256": self.dataset_sha256, "seconds": round(self.seconds, 1),
                "problems": self.problems[:100], "n_problems": len(self.problems), **self.extra,
                "run_id": self.run_id, "plot": self.plot}


# ---- embedding ---------------------------------------------------------------------------------------------------

@dataclass
class _Loaded:
    image: Image.Image | None
    sha256: str
    problem: str = ""


def _load(path: Path, bbox: tuple[float, float, float, float] | None, max_pixels: int) -> _Loaded:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _Loaded(None, "", f"{path}: {exc.strerror or exc}")
    sha = hashlib.sha256(data).hexdigest()
    try:
        img = decode_image(data, max_pixels)
    except ImageDecodeError as exc:
        return _Loaded(None, sha, f"{path}: {exc}")
    return _Loaded(crop_query(img, bbox), sha)


def embed_files(embedder, items: Sequence[tuple[Path, tuple[float, float, float, float] | None]],
                batch_size: int = 64, workers: int = 2, max_pixels: int = 40_000_000, progress: bool = False,
                desc: str = "embedding") -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Decode (as uploads are decoded), crop, preprocess and embed image files in batches.

    Returns:
        (vectors of the usable images, their indices into ``items``, sha256 of every file ("" if unreadable),
        problems as text).
    """
    vectors, kept, shas, problems = [], [], [""] * len(items), []

    def prepare(i: int) -> tuple[int, Any]:
        path, bbox = items[i]
        loaded = _load(Path(path), bbox, max_pixels)
        shas[i] = loaded.sha256
        if loaded.image is None:
            return i, loaded.problem
        return i, embedder.preprocess(loaded.image)

    bar = tqdm(total=len(items), unit="img", desc=desc, disable=not progress, mininterval=5.0)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(items), batch_size):
            results = list(pool.map(prepare, range(start, min(len(items), start + batch_size))))
            tensors = [(i, t) for i, t in results if not isinstance(t, str)]
            problems += [t for _, t in results if isinstance(t, str)]
            if tensors:
                from engine.models.preprocess import stack_tensors

                vectors.append(embedder.embed_tensors(stack_tensors([t for _, t in tensors])))
                kept += [i for i, _ in tensors]
            bar.update(len(results))
    bar.close()
    dim = embedder.dim
    out = np.concatenate(vectors) if vectors else np.empty((0, dim), np.float32)
    return out, np.asarray(kept, np.int64), shas, problems


# ---- searching ---------------------------------------------------------------------------------------------------

def make_searcher(vectors: np.ndarray, spec: str = "auto", search_device: str = "auto",
                  params: SearchParams | None = None) -> tuple[VectorSearcher, str]:
    """FAISS index over gallery vectors (ids = gallery row numbers) behind the serving ``VectorSearcher``.

    Returns:
        (searcher, the resolved factory string).
    """
    resolved = choose_spec(len(vectors), vectors.shape[1]) if spec == "auto" else spec
    ids = np.arange(len(vectors), dtype=np.int64)
    index = build_faiss_index(vectors, ids, resolved)
    return VectorSearcher(index, ids, vectors, backend=search_device, params=params), resolved


def _ranked(searcher: VectorSearcher, queries: np.ndarray, depth: int, exclude: np.ndarray | None = None) -> \
        np.ndarray:
    """Ranked gallery rows per query; with ``exclude`` (one row per query) that row is removed from its list."""
    if exclude is None:
        return searcher.search(queries, depth)[1]
    _, ids = searcher.search(queries, min(searcher.count, depth + 1))
    out = np.full((len(queries), depth), -1, np.int64)
    for q, row in enumerate(ids):
        row = row[row != exclude[q]][:depth]
        out[q, :len(row)] = row
    return out


# ---- street to shop ----------------------------------------------------------------------------------------------

def dataset_digest(kind: str, rows: Sequence[str], shas: Sequence[str]) -> str:
    h = hashlib.sha256(kind.encode())
    for row, sha in zip(rows, shas, strict=True):
        h.update(f"\n{row}|{sha}".encode())
    return h.hexdigest()


def _per_label(stats: QueryStats, labels: Sequence[str],
               ks: Sequence[int]) -> tuple[dict[str, dict[str, float]], dict[str, list[float]]]:
    """Metrics and recall@1..max(ks) curves per label, largest label first."""
    arr = np.asarray(labels, dtype=object)
    metrics, curves = {}, {}
    for label, _ in Counter(labels).most_common():
        mask = arr == label
        metrics[label or "(none)"] = summarize(stats, ks, mask)
        curves[label or "(none)"] = recall_curve(stats, max(ks), mask)
    return metrics, curves


def evaluate_street2shop(embedder, pair_set: PairSet, spec: str = "auto", search_device: str = "auto",
                         params: SearchParams | None = None, ks: Sequence[int] = DEFAULT_KS,
                         batch_size: int = 64, workers: int = 2, progress: bool = False, synthetic: bool = False,
                         dataset: str = "", max_pixels: int = 40_000_000) -> EvaluationReport:
    """Street-to-shop retrieval: each query photo against the gallery; relevant = gallery images of its item.

    Args:
        embedder: The Embedder that serves users.
        pair_set: Queries and gallery (``indexer.datasets.pairs``).
        spec: FAISS factory string for the gallery index ("auto" = as ``manage.py index`` chooses).
        search_device / params: As for serving (``index.search_device``, nprobe / efSearch).
        ks: Cut-offs for recall@k.
        synthetic: The pairs are synthetic (recorded and printed as such).
        dataset: Description stored with the run.

    Returns:
        The report (not yet stored; see ``record_evaluation``).
    """
    t0 = time.perf_counter()
    problems = list(pair_set.problems)
    gallery: list[GalleryImage] = pair_set.gallery
    g_vec, g_kept, g_sha, g_prob = embed_files(embedder, [(g.image, None) for g in gallery], batch_size, workers,
                                               max_pixels, progress, "gallery")
    problems += [f"gallery: {p}" for p in g_prob]
    pairs: list[QueryPair] = pair_set.pairs
    q_vec, q_kept, q_sha, q_prob = embed_files(embedder, [(p.query_image, p.bbox) for p in pairs], batch_size,
                                               workers, max_pixels, progress, "queries")
    problems += [f"query: {p}" for p in q_prob]
    if len(g_vec) == 0 or len(q_vec) == 0:
        raise ValueError("nothing to evaluate: no usable gallery image or no usable query")
    item_rows: dict[str, list[int]] = {}
    for row, gi in enumerate(g_kept):
        item_rows.setdefault(gallery[gi].item_id, []).append(row)
    used = [i for i in q_kept if pairs[i].item_id in item_rows]
    if len(used) < len(q_kept):
        problems.append(f"{len(q_kept) - len(used)} queries dropped: their item has no usable gallery image")
    pos = {int(i): r for r, i in enumerate(q_kept)}
    queries = q_vec[[pos[i] for i in used]]
    relevant = [set(item_rows[pairs[i].item_id]) for i in used]
    n_rel = np.array([len(r) for r in relevant])
    searcher, resolved = make_searcher(g_vec, spec, search_device, params)
    depth = min(len(g_vec), MAX_DEPTH)
    if max(ks) > depth:
        raise ValueError(f"recall@{max(ks)} needs a gallery of at least {max(ks)} images, got {depth}")
    parts, tops = [], []
    for s in range(0, len(queries), QUERY_CHUNK):
        ranked = _ranked(searcher, queries[s:s + QUERY_CHUNK], depth)
        parts.append(query_stats(ranked, relevant[s:s + QUERY_CHUNK], n_rel[s:s + QUERY_CHUNK]))
        tops.append(ranked[:, :FAILURE_K])
    stats = QueryStats.concat(parts)
    failures = collect_failures(
        stats.first_hit, np.concatenate(tops), [{"query": str(pairs[i].query_image), "item_id": pairs[i].item_id,
                                                  "label": pairs[i].label} for i in used],
        lambda row: {"item_id": gallery[g_kept[row]].item_id, "image_id": gallery[g_kept[row]].image_id},
        [(pairs[i].query_image, pairs[i].bbox) for i in used], depth, max_pixels=max_pixels)
    per_label, curves = _per_label(stats, [pairs[i].label for i in used], ks)
    rows = [f"q|{p.query_image}|{p.item_id}|{p.bbox}" for p in pairs] + \
        [f"g|{g.image_id}|{g.image}|{g.item_id}" for g in gallery]
    return EvaluationReport(
        kind="street2shop", metrics=summarize(stats, ks), per_label=per_label, label_curves=curves,
        curve=recall_curve(stats, max(ks)), n_gallery=len(g_vec), depth=depth, index_spec=resolved,
        search_backend=searcher.backend, model=model_summary(embedder), dataset=dataset or pair_set.source,
        dataset_sha256=dataset_digest("street2shop", rows, q_sha + g_sha), synthetic=synthetic,
        label_column="label", seconds=time.perf_counter() - t0, problems=problems,
        extra={"n_items": len(item_rows)}, failures=failures)


# ---- category ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LabelledImage:
    """A catalog image with the label category retrieval matches on."""

    id: str
    image: Path
    label: str


def catalog_items(catalog: str | os.PathLike, images_root: str | os.PathLike | None, label_column: str,
                  splits_file: str | os.PathLike | None = None, split: str = "test",
                  limit: int | None = None, seed: int = 0) -> tuple[list[LabelledImage], str]:
    """Labelled images of a catalog CSV (the ``manage.py index`` reader), optionally one split, optionally sampled.

    Returns:
        (items, a description of the dataset for the stored run).

    Raises:
        ValueError: When the catalog has no such label column.
    """
    from indexer.catalog.source import CatalogRow, iter_catalog, open_catalog
    from indexer.catalog.splits import read_splits

    rows = [r for r in iter_catalog(open_catalog(catalog, images_root)) if isinstance(r, CatalogRow)]
    if rows and not any(label_column in r.taxonomy or label_column in r.attributes for r in rows[:100]):
        raise ValueError(f"catalog {catalog} has no column {label_column!r}")
    desc = f"category catalog={catalog} label={label_column}"
    if splits_file:
        splits = read_splits(splits_file)
        rows = [r for r in rows if splits.get(r.external_id) == split]
        desc += f" split={split} splits={splits_file}"
    if limit is not None and len(rows) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), limit, replace=False))
        rows = [rows[i] for i in keep]
        desc += f" limit={limit}"
    items = [LabelledImage(r.external_id, r.image_path,
                           str(r.taxonomy.get(label_column) or r.attributes.get(label_column) or "")) for r in rows]
    return items, desc


def evaluate_category(embedder, items: Sequence[LabelledImage], label_column: str, spec: str = "auto",
                      search_device: str = "auto", params: SearchParams | None = None,
                      ks: Sequence[int] = DEFAULT_KS, batch_size: int = 64, workers: int = 2, progress: bool = False,
                      dataset: str = "", max_pixels: int = 40_000_000) -> EvaluationReport:
    """Leave-one-out category retrieval: every item queries all the others; relevant = same label.

    Items with an empty label are left out. Items whose label no other item has cannot be retrieved and are left
    out of the queries (still in the gallery); their number is reported as ``n_singletons``.
    """
    t0 = time.perf_counter()
    items = [it for it in items if it.label]
    vec, kept, shas, problems = embed_files(embedder, [(it.image, None) for it in items], batch_size, workers,
                                            max_pixels, progress, "items")
    if len(vec) < 2:
        raise ValueError("category retrieval needs at least two usable labelled images")
    labels = np.array([items[i].label for i in kept], dtype=object)
    counts = Counter(labels.tolist())
    n_rel_all = np.array([counts[lab] - 1 for lab in labels])
    queries = np.flatnonzero(n_rel_all > 0)
    if len(queries) == 0:
        raise ValueError(f"no two items share a {label_column}: nothing to retrieve")
    searcher, resolved = make_searcher(vec, spec, search_device, params)
    depth = min(len(vec) - 1, MAX_DEPTH)
    if max(ks) > depth:
        raise ValueError(f"recall@{max(ks)} needs at least {max(ks) + 1} items, got {len(vec)}")
    by_label: dict[str, np.ndarray] = {}
    for lab in counts:
        by_label[lab] = np.flatnonzero(labels == lab)
    parts, tops = [], []
    for s in range(0, len(queries), QUERY_CHUNK):
        rows = queries[s:s + QUERY_CHUNK]
        ranked = _ranked(searcher, vec[rows], depth, exclude=rows)
        relevant = [by_label[labels[r]][by_label[labels[r]] != r] for r in rows]
        parts.append(query_stats(ranked, relevant, n_rel_all[rows]))
        tops.append(ranked[:, :FAILURE_K])
    stats = QueryStats.concat(parts)
    failures = collect_failures(
        stats.first_hit, np.concatenate(tops),
        [{"query": items[kept[r]].id, "item_id": items[kept[r]].id, "label": labels[r]} for r in queries],
        lambda row: {"item_id": items[kept[row]].id, "label": labels[row]},
        [(items[kept[r]].image, None) for r in queries], depth, max_pixels=max_pixels)
    per_label, curves = _per_label(stats, labels[queries].tolist(), ks)
    digest_rows = [f"{it.id}|{it.image}|{it.label}" for it in items]
    return EvaluationReport(
        kind="category", metrics=summarize(stats, ks), per_label=per_label, label_curves=curves,
        curve=recall_curve(stats, max(ks)), n_gallery=len(vec), depth=depth, index_spec=resolved,
        search_backend=searcher.backend, model=model_summary(embedder), dataset=dataset,
        dataset_sha256=dataset_digest(f"category:{label_column}", digest_rows, shas), synthetic=False,
        label_column=label_column, seconds=time.perf_counter() - t0, problems=problems,
        extra={"n_labels": len(counts), "n_singletons": int((n_rel_all == 0).sum())}, failures=failures)


# ---- storing and plotting ----------------------------------------------------------------------------------------

def model_summary(embedder) -> dict[str, Any]:
    d = embedder.describe()
    return {k: d[k] for k in ("name", "weights", "checkpoint", "input_size", "dim", "fingerprint")}


def write_plot(report: EvaluationReport, path: str | os.PathLike, extra_curves: dict[str, list[float]] | None = None,
               top_labels: int = 5) -> Path:
    """PNG of recall@k: the overall curve plus the ``top_labels`` most frequent labels' curves."""
    curves: dict[str, list[float]] = {"all": report.curve}
    curves.update(extra_curves or {})
    for label, _m in sorted(report.per_label.items(), key=lambda kv: -kv[1]["n_queries"])[:top_labels]:
        curves[label] = report.label_curves.get(label, [])
    curves = {k: v for k, v in curves.items() if v}
    kind = "synthetic street-to-shop" if report.synthetic and report.kind == "street2shop" else report.kind
    title = f"{kind}: recall@k ({report.metrics['n_queries']} queries, {report.n_gallery} gallery, " \
            f"model {report.model['fingerprint'][:8]})"
    report.plot = str(plot_recall_curves(curves, path, title))
    return Path(report.plot)


def format_report(report: EvaluationReport, echo: Callable[[str], None]) -> None:
    """Human-readable summary: the metrics, then the ten largest labels."""
    m = report.metrics
    kind = f"SYNTHETIC {report.kind}" if report.synthetic else report.kind
    echo(f"{kind}: {m['n_queries']} queries, gallery {report.n_gallery} ({report.index_spec}, "
         f"{report.search_backend}), model {report.model['fingerprint'][:12]} ({report.model['name']}, "
         f"{report.model['checkpoint'] or 'no checkpoint'}, {report.model['input_size']}px)")
    echo("  " + "  ".join(f"{k} {v:.4f}" for k, v in m.items() if k != "n_queries"))
    for label, lm in sorted(report.per_label.items(), key=lambda kv: -kv[1]["n_queries"])[:10]:
        echo(f"    {label[:24]:<24} n={lm['n_queries']:<6} recall@1 {lm['recall@1']:.3f}  recall@20 "
             f"{lm.get('recall@20', float('nan')):.3f}" + (f"  mAP {lm['mAP']:.3f}" if "mAP" in lm else ""))
    if report.problems:
        echo(f"  {len(report.problems)} problem(s); first: {report.problems[0]}")


