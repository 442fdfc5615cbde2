"""Bulk indexing: catalog rows -> image bytes -> decoded tensors -> embeddings -> SQL -> index generation.

Stages are plain callables joined here. A producer thread reads and hashes image files and decodes
them on a small thread pool into letterboxed pixels, normalised straight into batch arrays, keeping
`prefetch_batches` batches ready while the main thread embeds; a writer thread commits the embedded
batches to SQL meanwhile (items + vectors, one transaction per `commit_every` items, in order). SQL
is written first: the index generation is derived from SQL at the end and made current by an atomic
swap. A kill at any moment loses at most the uncommitted batches, which the next run redoes; nothing
is duplicated because items are keyed by external id and embeddings by item id.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from indexer.catalog.images import ImageDecodeError, decode_image
from indexer.catalog.source import CatalogSource, RowProblem, count_rows, iter_catalog
from indexer.pipeline.crash_safety import CrashHook, writer_lock
from indexer.pipeline.plan import (
    IndexReport,
    WorkItem,
    classify,
    note_unchanged,
    read_work,
    row_dict,
)
from indexer.store.catalog_store import Store
from indexer.vectors.base import VectorStore
from indexer.vectors.faiss_store import FaissVectorStore
from indexer.vectors.generations import prune_generations

log = logging.getLogger(__name__)

@dataclass
class _Batch:
    works: list[WorkItem]
    tensor: Any  # torch.Tensor (N, 3, S, S)


_DONE = object()


class IndexingPipeline:
    """Runs one `manage.py index` job. Construct with the pieces, call run()."""

    def __init__(self, store: Store, embedder, index_dir: Path, *, spec: str = "auto", batch_size: int = 64,
                 decode_workers: int = 1, prefetch_batches: int = 4, commit_every: int = 512,
                 max_pixels: int = 40_000_000, settings_snapshot: dict[str, Any] | None = None,
                 crash_hook: CrashHook | None = None, progress: bool = True,
                 vector_store: VectorStore | None = None) -> None:
        self.store = store
        self.embedder = embedder
        self.index_dir = index_dir
        self.spec = spec
        # Where publish() puts SQL's vectors; FAISS generations in index_dir unless told otherwise.
        self.vector_store = vector_store or FaissVectorStore(index_dir, spec=spec)
        self.batch_size = max(1, batch_size)
        self.decode_workers = max(1, decode_workers)
        self.prefetch_batches = max(1, prefetch_batches)
        self.commit_every = max(1, commit_every)
        self.max_pixels = max_pixels
        self.settings_snapshot = settings_snapshot or {}
        self.hook = crash_hook or (lambda _p: None)
        self.progress = progress

    # ---- stage 1+2: read, hash, decide, decode (producer thread) ---------------------------

    def _plan(self, source: CatalogSource, report: IndexReport, bar: tqdm) -> Iterator[WorkItem]:
        existing = self.store.existing_items()
        fp = self.embedder.fingerprint
        pending_meta: list[tuple[int, dict[str, Any]]] = []
        for rec in iter_catalog(source):
            if isinstance(rec, RowProblem):
                report.problems.append(rec)
                bar.update(1)
                continue
            report.rows += 1
            data, err = read_work(rec)
            if data is None:
                report.problems.append(RowProblem(rec.row, rec.external_id, err or "unreadable"))
                bar.update(1)
                continue
            sha = hashlib.sha256(data).hexdigest()
            old = existing.get(rec.external_id)
            kind = classify(old, sha, fp)
            if kind is None:
                note_unchanged(rec, old, pending_meta, report)
                bar.update(1)
                continue
            yield WorkItem(rec, data, sha, old, kind)
        self._write_metadata(pending_meta, report)

    def _write_metadata(self, pending_meta: list[tuple[int, dict[str, Any]]], report: IndexReport) -> None:
        """Update titles/taxonomy of items whose image is already embedded (one transaction)."""
        if pending_meta:
            with self.store.sessions.begin() as s:
                for item_id, row in pending_meta:
                    self.store.update_metadata(s, item_id, row)
                self.hook("mid-metadata-update")
            report.metadata_updated += len(pending_meta)

    def _decode(self, work: WorkItem):
        try:
            img = decode_image(work.data, self.max_pixels)
            return work, self.embedder.preprocessor.pixels(img), None
        except ImageDecodeError as exc:
            return work, None, str(exc)

    def _producer(self, source: CatalogSource, report: IndexReport, bar: tqdm, out: queue.Queue,
                  stop: threading.Event) -> None:
        try:
            with ThreadPoolExecutor(self.decode_workers, thread_name_prefix="decode") as pool:
                chunk: list[WorkItem] = []

                def flush(works: list[WorkItem]) -> None:
                    good, pixels = [], []
                    for work, px, err in pool.map(self._decode, works):
                        if err is not None:
                            report.problems.append(RowProblem(work.row.row, work.row.external_id,
                                                              f"undecodable image: {err}"))
                            bar.update(1)
                        else:
                            good.append(work)
                            pixels.append(px)
                    if good:
                        out.put(_Batch(good, self.embedder.preprocessor.batch_from_pixels(pixels)))

                for work in self._plan(source, report, bar):
                    if stop.is_set():
                        return
                    chunk.append(work)
                    if len(chunk) == self.batch_size:
                        flush(chunk)
                        chunk = []
                if chunk:
                    flush(chunk)
        except BaseException as exc:  # surfaced in the main thread
            out.put(exc)
        finally:
            out.put(_DONE)

    # ---- stage 3+4: embed, write SQL (main thread) -----------------------------------------

    def _write(self, pending: list[tuple[WorkItem, np.ndarray]], report: IndexReport) -> None:
        if not pending:
            return
        rows = []
        for work, _ in pending:
            row = row_dict(work.row)
            row["existing_id"] = work.existing.id if work.existing is not None else None
            row["content_sha256"] = work.sha
            rows.append(row)
        vectors = np.stack([v for _, v in pending])
        with self.store.sessions.begin() as s:
            self.store.write_embedded(s, rows, vectors, self.embedder.fingerprint)
            self.hook("mid-batch")
        self.hook("after-sql-commit")
        for work, _ in pending:
            if work.kind == "new":
                report.new += 1
            elif work.kind == "changed":
                report.changed += 1
            else:
                report.reembedded += 1

    def _start_run(self, source: CatalogSource) -> None:
        """What every run does first, under the writer lock: drop unreferenced generations, and record the catalog's
        image folder before any item, so every stored image path lies under a recorded root (served by the web app)."""
        prune_generations(self.index_dir)
        image_folder = source.path if source.is_folder else source.images_root  # a folder holds its images
        self.store.record_catalog_source(str(source.path), str(image_folder))

    def run(self, source: CatalogSource, rebuild: bool = False) -> IndexReport:
        """Index a catalog, then publish a new generation if SQL changed (or rebuild was asked)."""
        report = IndexReport()
        t0 = time.perf_counter()
        lock = writer_lock(self.index_dir)
        try:
            self._start_run(source)
            total = count_rows(source)
            bar = tqdm(total=total, unit="item", desc="indexing", disable=not self.progress, smoothing=0.05,
                       dynamic_ncols=True)
            q: queue.Queue = queue.Queue(maxsize=self.prefetch_batches)
            stop = threading.Event()
            producer = threading.Thread(target=self._producer, args=(source, report, bar, q, stop),
                                        name="index-producer", daemon=True)
            producer.start()
            pending: list[tuple[WorkItem, np.ndarray]] = []
            # SQL transactions run on their own thread while the next batches are embedded; one at a time and in
            # order (the next waits for the one before, whose error surfaces here), all committed before publish.
            writer = ThreadPoolExecutor(1, thread_name_prefix="sql-writer")
            in_flight: Future | None = None
            try:
                while True:
                    item = q.get()
                    if item is _DONE:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    te = time.perf_counter()
                    vecs = self.embedder.embed_tensors(item.tensor)
                    report.embedded_seconds += time.perf_counter() - te
                    pending.extend(zip(item.works, vecs, strict=True))
                    if len(pending) >= self.commit_every:
                        if in_flight is not None:
                            in_flight.result()
                        in_flight = writer.submit(self._write, pending, report)
                        pending = []
                    bar.update(len(item.works))
                if in_flight is not None:
                    in_flight.result()
                self._write(pending, report)
            finally:
                writer.shutdown(wait=True)  # a transaction under way finishes (it is committed work) before we go on
                stop.set()
                while producer.is_alive():  # drain so the producer can exit
                    try:
                        q.get(timeout=0.1)
                    except queue.Empty:
                        pass
                bar.close()
            self._publish_and_purge(report, rebuild)
        finally:
            lock.release()
        report.elapsed_seconds = time.perf_counter() - t0
        return report

    # ---- stage 5: index generation -------------------------------------------------------

    def _publish_and_purge(self, report: IndexReport, rebuild: bool) -> None:
        """The end of every run: bring the vector store in line with SQL, then purge removed items' rows (in this
        order, so a kill in between leaves rows that the next run purges, never ids the index serves without rows)."""
        self.publish(report, force=rebuild)
        purged = self.store.purge_removed(keep_ids=())
        if purged:
            log.info("purged %d removed items", purged)

    def publish(self, report: IndexReport | None = None, force: bool = False) -> bool:
        """Bring the vector store in line with SQL (a new FAISS generation, or Milvus upserts/deletes), unless it
        already matches; force rebuilds it from SQL."""
        report = report or IndexReport()
        return self.vector_store.publish(self.store, self.embedder, report, force=force,
                                         settings_snapshot=self.settings_snapshot, hook=self.hook)
