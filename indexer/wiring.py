"""Wiring from Settings to the library objects (store, vector store, pipelines, search); shared by the CLI, the web
app and benches. The one place that knows how the pieces fit; the pieces never import it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from indexer.pipeline.crash_safety import CrashHook, writer_lock
from indexer.pipeline.indexing import IndexingPipeline
from indexer.pipeline.plan import IndexReport
from indexer.search.service import SearchService
from indexer.settings import Settings, settings_as_dict
from indexer.store.catalog_store import Store
from indexer.vectors.base import VectorStore
from indexer.vectors.factory import create_vector_store
from indexer.vectors.faiss_index import SearchParams


def open_store(settings: Settings, check_migrated: bool = True) -> Store:
    """Connect to the configured database (raises StoreError if it is not migrated)."""
    return Store.from_url(settings.database_url, settings.database.busy_timeout_s, check_migrated=check_migrated)


def pipeline_options(settings: Settings) -> dict[str, Any]:
    """IndexingPipeline keyword arguments from settings (shared by the single-process and the Ray pipeline)."""
    p = settings.pipeline
    return {"spec": settings.index.spec, "batch_size": settings.model.batch_size, "decode_workers": p.decode_workers,
            "prefetch_batches": p.prefetch_batches, "commit_every": p.commit_every,
            "max_pixels": settings.web.max_image_pixels, "settings_snapshot": settings_as_dict(settings)}


def create_pipeline(settings: Settings, store: Store, embedder, crash_hook: CrashHook | None = None,
                    progress: bool = True, vector_store: VectorStore | None = None) -> IndexingPipeline:
    """The single-process indexing pipeline, writing to the configured vector store (index.store)."""
    return IndexingPipeline(store, embedder, settings.index_dir, crash_hook=crash_hook, progress=progress,
                            vector_store=vector_store or create_vector_store(settings), **pipeline_options(settings))


def create_ray_pipeline(settings: Settings, store: Store, embedder, ray_options, crash_hook: CrashHook | None = None,
                        progress: bool = True, vector_store: VectorStore | None = None):  # noqa: ANN001
    """The indexing pipeline with the embedding on a Ray cluster (indexer/pipeline/ray_pipeline.py); same SQL and
    store path."""
    from indexer.pipeline.ray_pipeline import RayIndexingPipeline

    return RayIndexingPipeline(store, embedder, settings.index_dir, settings=settings, ray_options=ray_options,
                               crash_hook=crash_hook, progress=progress,
                               vector_store=vector_store or create_vector_store(settings), **pipeline_options(settings))


def create_search_service(settings: Settings, store: Store, embedder,
                          vector_store: VectorStore | None = None) -> SearchService:
    """Search over the configured vector store (index.store)."""
    params = SearchParams(nprobe=settings.index.nprobe, ef_search=settings.index.ef_search)
    return SearchService(store, embedder, settings.index_dir, params=params,
                         search_device=settings.index.search_device,
                         vector_store=vector_store or create_vector_store(settings))


def remove_items(settings: Settings, store: Store, embedder, external_ids: Iterable[str],
                 crash_hook: CrashHook | None = None) -> dict[str, Any]:
    """Remove items from SQL and the index: tombstone, publish a generation without them, purge.

    Every step is safe to interrupt: a tombstoned item is never returned by search, and the next
    `index` or `remove` run finishes the job.
    """
    index_dir: Path = settings.index_dir
    lock = writer_lock(index_dir)
    try:
        marked, unknown = store.mark_removed(external_ids)
        if crash_hook:
            crash_hook("remove-after-sql")
        pipeline = create_pipeline(settings, store, embedder, crash_hook=crash_hook, progress=False)
        report = IndexReport()
        pipeline.publish(report, force=False)
        if crash_hook:
            crash_hook("remove-before-purge")
        purged = store.purge_removed()
    finally:
        lock.release()
    return {"removed": len(marked), "unknown": unknown, "purged": purged,
            "generation": report.generation or pipeline.vector_store.current_name(store),
            "count": report.generation_count}


def settings_summary(settings: Settings) -> dict[str, Any]:
    return dataclasses.asdict(settings)


def servable_image_roots(settings: Settings, store: Store) -> tuple[Path, ...]:
    """Folders item pictures may be served from: the configured ones (web.image_roots, else the default catalog's
    folder) and the image folder of every catalog indexed into the store."""
    roots = list(settings.image_roots)
    roots += [Path(r) for r in store.catalog_roots() if Path(r) not in roots]
    return tuple(roots)


def unservable_images(store: Store, roots: tuple[Path, ...], limit: int = 10) -> tuple[int, list[tuple[str, str]]]:
    """(how many active items have a picture outside every root, the first `limit` of them as (id, path))."""
    resolved = [r.resolve() for r in roots]
    count, examples = 0, []
    for external_id, path in store.iter_image_paths():
        real = Path(path).resolve()
        if not any(real.is_relative_to(r) for r in resolved):
            count += 1
            if len(examples) < limit:
                examples.append((external_id, path))
    return count, examples
