"""Search over the current generation of the vector store, with hits hydrated from SQL.

SearchService is what the web app, the CLI and evaluation share: it loads the embedder once,
serves the current generation of the configured vector store (FAISS by default, or Milvus; see
indexer/vectors/base.py), and swaps to a newer one (after verifying it) when CURRENT moves.
A generation that does not match SQL or the model is refused with a message naming the fix; if
one was already being served, that one keeps serving. A vector store that cannot answer (Milvus unreachable, its
collection gone) raises SearchUnavailableError, a GenerationError, so every caller answers it as "index not
available" (the API: 503). status() is what /healthz reports: it answers a probe search through the served store.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from indexer.store.catalog_store import Store
from indexer.vectors.base import VectorStoreError
from indexer.vectors.faiss_index import SearchParams, VectorSearcher
from indexer.vectors.generations import GenerationError, LoadedGeneration

log = logging.getLogger(__name__)


class SearchUnavailableError(GenerationError):
    """The served vector store cannot answer a search now (unreachable, its collection gone, a probe failed)."""


@dataclass
class Hit:
    id: int
    score: float
    item: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {**self.item, "id": self.id, "score": round(float(self.score), 6)}


class SearchService:
    """Embed queries and search the current generation; hydrate hits from SQL.

    Thread-safe: the served (generation, searcher) pair is swapped atomically under a lock.
    """

    PROBE_TTL_S = 5.0  # how long status() trusts its last probe search (keeps /healthz cheap under polling)

    def __init__(self, store: Store, embedder, index_dir: Path, params: SearchParams | None = None,
                 search_device: str = "auto", vector_store=None) -> None:  # noqa: ANN001 - vector_store.VectorStore
        self.store = store
        self.embedder = embedder
        self.index_dir = index_dir
        self.params = params or SearchParams()
        self.search_device = search_device
        if vector_store is None:
            from indexer.vectors.faiss_store import FaissVectorStore

            vector_store = FaissVectorStore(index_dir, search_device=search_device, params=self.params)
        # FAISS generations in index_dir, or a Milvus collection (indexer/vectors/faiss_store.py).
        self.vector_store = vector_store
        self._lock = threading.Lock()
        self._served: tuple[LoadedGeneration, VectorSearcher] | None = None
        self.last_error: str | None = None
        self._probe_lock = threading.Lock()
        self._probe: tuple[Any, float, float | str] | None = None  # (searcher, when, ms or the failure)

    # ---- generation management -----------------------------------------------------------

    def refresh(self) -> str | None:
        """Serve the current generation if it changed. Returns the served name.

        Raises:
            GenerationError: nothing can be served (no good generation now or before).
        """
        name = self.vector_store.current_name(self.store)
        with self._lock:
            served = self._served
        if served is not None and served[0].manifest.name == name:
            return name
        try:
            try:
                gen, searcher = self.vector_store.open(name, self.store, self.embedder)
            except VectorStoreError as exc:
                raise SearchUnavailableError(str(exc)) from None
        except GenerationError as exc:
            self.last_error = str(exc)
            if served is not None:
                log.error("not switching to index %s: %s (still serving %s)", name, exc, served[0].manifest.name)
                return served[0].manifest.name
            raise
        with self._lock:
            self._served = (gen, searcher)
        self.last_error = None
        log.info("serving index %s (%d vectors, %s, %s)", gen.manifest.name, gen.manifest.count,
                 gen.manifest.spec, searcher.backend)
        return gen.manifest.name

    def served(self) -> tuple[LoadedGeneration, VectorSearcher]:
        self.refresh()
        assert self._served is not None
        return self._served

    def status(self) -> dict[str, Any]:
        """Whether a search can be answered now: the served generation answered a probe search (k=1, a unit
        vector; at most one every PROBE_TTL_S seconds) and SQL answered for its hit. {"ok": False, "error": why}
        otherwise."""
        try:
            gen, searcher = self.served()
            probe_ms = self.probe(searcher)
        except GenerationError as exc:
            return {"ok": False, "error": str(exc)}
        out = {"ok": True, "generation": gen.manifest.name, "count": gen.manifest.count, "spec": gen.manifest.spec,
               "backend": searcher.backend, "fingerprint": gen.manifest.fingerprint, "dim": gen.manifest.dim,
               "probe_ms": probe_ms}
        if self.last_error:
            out["warning"] = self.last_error
        return out

    def probe(self, searcher: VectorSearcher) -> float:
        """Milliseconds a probe search through this searcher took (the cached result if younger than PROBE_TTL_S).

        Raises:
            SearchUnavailableError: the probe failed, or found nothing in a non-empty index.
        """
        with self._probe_lock:
            last = self._probe
            if last is None or last[0] is not searcher or time.monotonic() - last[1] >= self.PROBE_TTL_S:
                last = self._probe = (searcher, time.monotonic(), self._run_probe(searcher))
        if isinstance(last[2], str):
            raise SearchUnavailableError(last[2])
        return last[2]

    def _run_probe(self, searcher: VectorSearcher) -> float | str:
        t0 = time.perf_counter()
        query = np.zeros((1, searcher.dim), np.float32)
        query[0, 0] = 1.0
        try:
            _, ids = searcher.search(query, 1)
            if searcher.count > 0 and ids[0, 0] < 0:
                return f"a probe search found nothing in an index of {searcher.count} vectors: " \
                       "run `python manage.py check`"
            if ids[0, 0] >= 0:
                self.store.get_items([int(ids[0, 0])])  # hydrating a hit needs SQL too
        except (VectorStoreError, GenerationError) as exc:
            return f"a probe search failed: {exc}"
        except Exception as exc:  # noqa: BLE001 - health reports whatever stops a search, in one line
            log.warning("probe search failed", exc_info=True)
            return f"a probe search failed: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        return round((time.perf_counter() - t0) * 1000, 2)

    # ---- queries -------------------------------------------------------------------------

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.embedder.embed_images(list(images))

    def search_vectors(self, queries: np.ndarray, k: int, filters: Mapping[str, Sequence[str]] | None = None,
                       threshold: float | None = None, exclude_ids: Sequence[int] = ()) -> list[list[Hit]]:
        """Top-k hits per query vector, filtered inside the search, hydrated from SQL.

        Ids that SQL no longer holds as active (removed since the generation was built) are dropped,
        and the search asks for more so that k hits remain where k exist.
        """
        _, searcher = self.served()
        if filters and getattr(searcher, "filters_in_store", False):
            # The vector store holds the filterable metadata (Milvus): the filter becomes its own expression.
            run = functools.partial(searcher.search, filters=self.store.validate_filters(filters))
        else:
            run = functools.partial(searcher.search, allowed_ids=self.store.filter_ids(filters) if filters else None)
        exclude = {int(i) for i in exclude_ids}
        want = k + len(exclude)
        queries = np.atleast_2d(queries)

        def search(q: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
            try:
                return run(q, fetch)
            except VectorStoreError as exc:
                log.error("search failed: %s", exc)
                raise SearchUnavailableError(str(exc)) from None

        def candidates(scores: np.ndarray, ids: np.ndarray) -> list[tuple[int, float]]:
            return [(int(i), float(s)) for i, s in zip(ids, scores, strict=True)
                    if i >= 0 and int(i) not in exclude and (threshold is None or s >= threshold)]

        def done(cand: list[tuple[int, float]], hits: list[Hit], ids: np.ndarray, fetch: int) -> bool:
            exhausted = (ids < 0).any() or (threshold is not None and len(cand) < len(ids) - len(exclude))
            return len(hits) >= k or exhausted or fetch >= searcher.count

        # One vector search and one SQL read for all queries (a street photo's regions) ...
        scores, ids = search(queries, want) if len(queries) else (np.empty((0, want)), np.empty((0, want)))
        cands = [candidates(scores[r], ids[r]) for r in range(len(queries))]
        items = self.store.get_items(sorted({i for cand in cands for i, _ in cand}))
        results: list[list[Hit]] = []
        for r, q in enumerate(queries):
            cand, fetch, row_ids = cands[r], want, ids[r]
            hits = [Hit(i, s, items[i]) for i, s in cand if i in items]
            # ... and, for a query that lost hits to removed items or the threshold, a deeper search of its own.
            while not done(cand, hits, row_ids, fetch):
                fetch = min(searcher.count, fetch * 2)
                more_scores, more_ids = search(q[None, :], fetch)
                row_ids = more_ids[0]
                cand = candidates(more_scores[0], row_ids)
                found = self.store.get_items([i for i, _ in cand])
                hits = [Hit(i, s, found[i]) for i, s in cand if i in found]
            results.append(hits[:k])
        return results

    def search_exact(self, score: Callable[[LoadedGeneration], np.ndarray], k: int,
                     filters: Mapping[str, Sequence[str]] | None = None, threshold: float | None = None,
                     exclude_ids: Sequence[int] = ()) -> list[Hit]:
        """Top-k hits by a score over every vector of the served generation (exact), filtered, hydrated from SQL.

        ``score(generation)`` gives one score per row of the served generation (word queries whose score is not an
        inner product alone: indexer/search/label_terms.py). Ids SQL no longer holds as active are dropped.
        """
        gen, _ = self.served()
        scores = np.array(score(gen), np.float32)
        ids = np.asarray(gen.ids)
        if filters:
            scores[~np.isin(ids, self.store.filter_ids(filters))] = -np.inf
        if len(exclude_ids):
            scores[np.isin(ids, np.asarray(list(exclude_ids), np.int64))] = -np.inf
        if threshold is not None:
            scores[scores < threshold] = -np.inf
        eligible = int(np.isfinite(scores).sum())
        fetch = min(eligible, k)
        hits: list[Hit] = []
        while fetch > 0:
            part = np.argpartition(-scores, fetch - 1)[:fetch]
            rows = part[np.argsort(-scores[part], kind="stable")]
            items = self.store.get_items([int(ids[r]) for r in rows])
            hits = [Hit(int(ids[r]), float(scores[r]), items[int(ids[r])]) for r in rows if int(ids[r]) in items]
            if len(hits) >= k or fetch >= eligible:
                break
            fetch = min(eligible, fetch * 2)
        return hits[:k]

    def search_image(self, image: Image.Image, k: int, filters: Mapping[str, Sequence[str]] | None = None,
                     threshold: float | None = None) -> list[Hit]:
        return self.search_vectors(self.embed([image]), k, filters, threshold)[0]

    def similar_to_item(self, item_id: int, k: int, filters: Mapping[str, Sequence[str]] | None = None,
                        threshold: float | None = None) -> list[Hit] | None:
        """Items most similar to a catalog item (itself excluded); None if the item is unknown."""
        vec = self.store.get_vector(item_id, self.embedder.fingerprint)
        if vec is None:
            return None
        return self.search_vectors(vec[None, :], k, filters, threshold, exclude_ids=[item_id])[0]
