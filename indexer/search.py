"""Search over the current index generation, and the SQL-vs-index consistency check.

SearchService is what the web app, the CLI and evaluation share: it loads the embedder once,
serves the current generation of the configured vector store (FAISS by default, or Milvus; see
indexer/vector_store.py), and swaps to a newer one (after verifying it) when CURRENT moves.
A generation that does not match SQL or the model is refused with a message naming the fix; if
one was already being served, that one keeps serving.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from indexer.generations import GenerationError, LoadedGeneration, current_name, ids_digest, load_generation
from indexer.store import Store
from indexer.vector_index import SearchParams, VectorSearcher

log = logging.getLogger(__name__)


@dataclass
class Hit:
    id: int
    score: float
    item: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {**self.item, "id": self.id, "score": round(float(self.score), 6)}


@dataclass
class CheckReport:
    ok: bool
    generation: str | None
    fingerprint: str
    index_count: int = 0
    sql_count: int = 0
    missing_from_index: list[int] = field(default_factory=list)
    extra_in_index: list[int] = field(default_factory=list)
    stale_vectors: bool = False
    stale_metadata: int = 0  # items whose filter fields in the vector store differ from SQL (Milvus only)
    not_embedded: int = 0
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "generation": self.generation, "fingerprint": self.fingerprint,
            "index_count": self.index_count, "sql_count": self.sql_count,
            "missing_from_index": self.missing_from_index[:100], "n_missing_from_index": len(self.missing_from_index),
            "extra_in_index": self.extra_in_index[:100], "n_extra_in_index": len(self.extra_in_index),
            "stale_vectors": self.stale_vectors, "stale_metadata": self.stale_metadata,
            "not_embedded": self.not_embedded, "problems": self.problems,
        }


def verify_generation(gen: LoadedGeneration, store: Store, embedder) -> None:  # noqa: ANN001 - engine.Embedder
    """Refuse a generation built by another model, of another dimension, or holding ids SQL does not know.

    Raises:
        GenerationError: the message names the fix.
    """
    m = gen.manifest
    if m.fingerprint != embedder.fingerprint:
        raise GenerationError(
            f"index {m.name} was built with model {m.fingerprint} but the configured model is "
            f"{embedder.fingerprint}: run `python manage.py index --rebuild`")
    if m.dim != embedder.dim:
        raise GenerationError(f"index {m.name} has dimension {m.dim}, the model gives {embedder.dim}: "
                              "run `python manage.py index --rebuild`")
    # Every id the index can return must be an item SQL knows (active or tombstoned). A newer
    # SQL (items added since) is fine: they are served after the next publish.
    known = store.get_items(gen.ids.tolist(), include_removed=True) if len(gen.ids) <= 200_000 else None
    if known is not None and len(known) != len(gen.ids):
        raise GenerationError(
            f"index {m.name} holds {len(gen.ids) - len(known)} ids unknown to the database "
            f"{store.engine.url.render_as_string(hide_password=True)}: run `python manage.py index --rebuild`")


def check_consistency(store: Store, index_dir: Path, fingerprint: str) -> CheckReport:
    """Compare SQL (active items, embeddings of this fingerprint) with the current generation."""
    state = store.state(fingerprint)
    report = CheckReport(ok=True, generation=current_name(index_dir), fingerprint=fingerprint,
                         sql_count=len(state.ids), not_embedded=state.not_embedded)
    if state.not_embedded:
        report.problems.append(f"{state.not_embedded} active items have no embedding from the current model: "
                               "run `python manage.py index`")
    try:
        gen = load_generation(index_dir)
    except GenerationError as exc:
        report.ok = False
        report.problems.append(str(exc))
        return report
    report.index_count = gen.manifest.count
    if gen.manifest.fingerprint != fingerprint:
        report.problems.append(f"index {gen.manifest.name} was built by model {gen.manifest.fingerprint}, the "
                               f"configured model is {fingerprint}: run `python manage.py index --rebuild`")
    sql_rev = dict(zip(state.ids.tolist(), state.revisions.tolist(), strict=True))
    index_ids = gen.ids.tolist()
    index_set = set(index_ids)
    report.missing_from_index = sorted(set(sql_rev) - index_set)
    report.extra_in_index = sorted(index_set - set(sql_rev))
    if gen.manifest.ids_sha256 != ids_digest(state.ids, state.revisions) and not (
        report.missing_from_index or report.extra_in_index
    ):
        # Same ids, different revisions: some vectors in the index are older than SQL's.
        report.stale_vectors = True
    if len(index_ids) != len(index_set):
        report.problems.append("the index holds duplicate ids")
    if report.missing_from_index:
        report.problems.append(f"{len(report.missing_from_index)} items in SQL are not in the index")
    if report.extra_in_index:
        report.problems.append(f"{len(report.extra_in_index)} ids in the index are not active items in SQL")
    if report.stale_vectors:
        report.problems.append("the index holds vectors older than SQL's")
    report.ok = not report.problems
    return report


class SearchService:
    """Embed queries and search the current generation; hydrate hits from SQL.

    Thread-safe: the served (generation, searcher) pair is swapped atomically under a lock.
    """

    def __init__(self, store: Store, embedder, index_dir: Path, params: SearchParams | None = None,
                 search_device: str = "auto", vector_store=None) -> None:  # noqa: ANN001 - vector_store.VectorStore
        self.store = store
        self.embedder = embedder
        self.index_dir = index_dir
        self.params = params or SearchParams()
        self.search_device = search_device
        if vector_store is None:
            from indexer.vector_store import FaissVectorStore

            vector_store = FaissVectorStore(index_dir, search_device=search_device, params=self.params)
        # FAISS generations in index_dir, or a Milvus collection (indexer/vector_store.py).
        self.vector_store = vector_store
        self._lock = threading.Lock()
        self._served: tuple[LoadedGeneration, VectorSearcher] | None = None
        self.last_error: str | None = None

    # ---- generation management -----------------------------------------------------------

    def _verify(self, gen: LoadedGeneration) -> None:
        verify_generation(gen, self.store, self.embedder)

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
            gen, searcher = self.vector_store.open(name, self.store, self.embedder)
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
        try:
            gen, searcher = self.served()
        except GenerationError as exc:
            return {"ok": False, "error": str(exc)}
        out = {"ok": True, "generation": gen.manifest.name, "count": gen.manifest.count, "spec": gen.manifest.spec,
               "backend": searcher.backend, "fingerprint": gen.manifest.fingerprint, "dim": gen.manifest.dim}
        if self.last_error:
            out["warning"] = self.last_error
        return out

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
        results: list[list[Hit]] = []
        for q in np.atleast_2d(queries):
            fetch = want
            while True:
                scores, ids = run(q[None, :], fetch)
                cand = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True)
                        if i >= 0 and int(i) not in exclude and (threshold is None or s >= threshold)]
                items = self.store.get_items([i for i, _ in cand])
                hits = [Hit(i, s, items[i]) for i, s in cand if i in items]
                exhausted = (ids[0] < 0).any() or (threshold is not None and len(cand) < len(ids[0]) - len(exclude))
                if len(hits) >= k or exhausted or fetch >= searcher.count:
                    break
                fetch = min(searcher.count, fetch * 2)
            results.append(hits[:k])
        return results

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
