"""Vector stores: where the SQL store's vectors are searched. One interface, two implementations.

- FaissVectorStore (the embedded default): index generations in index.dir, built from SQL and made current
  by an atomic swap (indexer/generations.py).
- MilvusVectorStore (indexer/milvus_store.py): a Milvus collection kept in step with SQL by upserts and
  deletes; milvus-lite for a local file URI, a Milvus cluster for an http(s) URI.

Both keep SQL as the source of truth (ids = SQL primary keys), so either can be rebuilt from SQL without
re-embedding, and both answer the same consistency check. `index.store` in config.toml picks one.

The interface, as the pipeline, SearchService and `manage.py check` use it:
    kind                                   "faiss" | "milvus"
    publish(store, embedder, report, force, settings_snapshot, hook) -> bool
                                           bring the vector store in line with SQL; True when something changed
    current_name(store) -> str | None      name of what is served now (changes whenever publish changes something)
    open(name, store, embedder) -> (served, searcher)
                                           served has .manifest (name, count, spec, fingerprint, dim), .ids and
                                           .vectors; searcher has .search(queries, k, allowed_ids), .count, .backend
    check(store, fingerprint) -> CheckReport
    close()
"""

from __future__ import annotations

import importlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from indexer.generations import (
    GenerationError,
    current_name,
    ids_digest,
    load_generation,
    make_current,
    read_manifest,
    write_generation,
)
from indexer.vector_index import SearchParams, VectorSearcher, build_faiss_index, choose_spec

if TYPE_CHECKING:
    from indexer.search import CheckReport
    from indexer.settings import Settings
    from indexer.store import Store

log = logging.getLogger(__name__)

STORES = ("faiss", "milvus")
SCALE_EXTRA = "pip install -e '.[scale]'"


class MissingExtraError(RuntimeError):
    """An optional dependency (pymilvus, milvus-lite, ray) is not installed; the message names the extra."""


class VectorStoreError(RuntimeError):
    """The vector store cannot be reached or used; the message says what to check."""


def require_module(name: str, purpose: str):
    """Import an optional module, or raise MissingExtraError naming the `scale` extra."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MissingExtraError(f"{purpose} needs the Python package {exc.name or name!r}, which is not installed: "
                                f"{SCALE_EXTRA} (the `scale` extra: pymilvus, milvus-lite, ray[data])") from None


class VectorStore(Protocol):
    kind: str

    def publish(self, store: Store, embedder, report, force: bool = False,  # noqa: ANN001
                settings_snapshot: dict[str, Any] | None = None, hook=None) -> bool: ...

    def current_name(self, store: Store) -> str | None: ...

    def open(self, name: str | None, store: Store, embedder) -> tuple[Any, Any]: ...  # noqa: ANN001

    def check(self, store: Store, fingerprint: str) -> CheckReport: ...

    def close(self) -> None: ...


class FaissVectorStore:
    """FAISS index generations in index_dir (see indexer/generations.py): the embedded default."""

    kind = "faiss"

    def __init__(self, index_dir: Path, spec: str = "auto", search_device: str = "auto",
                 params: SearchParams | None = None) -> None:
        self.index_dir = index_dir
        self.spec = spec
        self.search_device = search_device
        self.params = params or SearchParams()

    def current_name(self, store: Store | None = None) -> str | None:
        return current_name(self.index_dir)

    def publish(self, store: Store, embedder, report, force: bool = False,  # noqa: ANN001
                settings_snapshot: dict[str, Any] | None = None, hook=None) -> bool:
        """Build a generation from SQL and make it current, unless the current one already matches."""
        hook = hook or (lambda _p: None)
        fp = embedder.fingerprint
        state = store.state(fp)
        digest = ids_digest(state.ids, state.revisions)
        cur = current_name(self.index_dir)
        if cur and not force:
            try:
                m = read_manifest(self.index_dir / cur)
                if m.fingerprint == fp and m.ids_sha256 == digest:
                    load_generation(self.index_dir, cur)  # verifies files; raises if corrupt
                    report.generation, report.generation_count, report.spec = cur, m.count, m.spec
                    return False
            except GenerationError as exc:
                log.warning("current generation unusable (%s); rebuilding", exc)
        tb = time.perf_counter()
        ids, revs, vectors = store.load_vectors(fp)
        if len(ids) == 0:
            vectors = np.zeros((0, embedder.dim), np.float32)
        spec = self.spec if self.spec != "auto" else choose_spec(len(ids), vectors.shape[1])
        if spec.startswith("IVF") and self.spec == "auto" and len(ids) < 39 * 2:
            spec = "Flat"
        index = build_faiss_index(vectors, ids, spec)
        hook("before-index-save")
        manifest = write_generation(
            self.index_dir, index, ids, vectors,
            {"spec": spec, "metric": "inner_product", "dim": int(vectors.shape[1]), "count": int(len(ids)),
             "fingerprint": fp, "high_water": int(revs.max()) if len(revs) else 0,
             "ids_sha256": ids_digest(ids, revs), "model": embedder.describe(),
             "settings": settings_snapshot or {}, "build_seconds": round(time.perf_counter() - tb, 3)},
            crash_hook=hook, floor=store.last_generation_number(),
        )
        hook("before-swap")
        make_current(self.index_dir, manifest.name)
        hook("after-swap")
        store.record_generation(manifest)
        report.generation, report.generation_count, report.spec, report.published = (
            manifest.name, manifest.count, spec, True)
        return True

    def open(self, name: str | None, store: Store, embedder) -> tuple[Any, VectorSearcher]:  # noqa: ANN001
        """Load and verify a generation (the current one when name is None) and a searcher over it.

        Raises:
            GenerationError: nothing built, corrupt files, or a generation that does not fit SQL or the model.
        """
        from indexer.search import verify_generation

        gen = load_generation(self.index_dir, name)
        verify_generation(gen, store, embedder)
        return gen, VectorSearcher(gen.index, gen.ids, gen.vectors, backend=self.search_device, params=self.params)

    def check(self, store: Store, fingerprint: str) -> CheckReport:
        from indexer.search import check_consistency

        return check_consistency(store, self.index_dir, fingerprint)

    def close(self) -> None:
        pass


def create_vector_store(settings: Settings) -> VectorStore:
    """The vector store named by index.store (faiss or milvus), configured from settings.

    Raises:
        ValueError: an unknown index.store.
        MissingExtraError: "milvus" without pymilvus / milvus-lite installed.
    """
    kind = settings.index.store.strip().lower()
    params = SearchParams(nprobe=settings.index.nprobe, ef_search=settings.index.ef_search)
    if kind == "faiss":
        return FaissVectorStore(settings.index_dir, spec=settings.index.spec,
                                search_device=settings.index.search_device, params=params)
    if kind == "milvus":
        from indexer.milvus_store import MilvusVectorStore

        m = settings.milvus
        return MilvusVectorStore(settings.milvus_uri, collection=m.collection, token=m.token, spec=settings.index.spec,
                                 index_params=m.index_params, params=params, batch_size=m.batch_size)
    raise ValueError(f"index.store must be one of {', '.join(STORES)}, not {settings.index.store!r}")
