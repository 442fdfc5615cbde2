"""Searching one Milvus collection: the searcher SearchService uses with index.store = "milvus", what it serves
(MilvusServed), and how a failed search is told apart (collection not loaded, connection lost) so that the store
(indexer/vectors/milvus_store.py, which owns the client) can load or reconnect once and the search be tried again.

pymilvus is imported lazily. Imports indexer.vectors.base, faiss_index (SearchParams), milvus_schema and the SQL
store's type; never milvus_store (it passes itself in as the searcher's owner).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from indexer.store.catalog_store import Store
from indexer.vectors.base import VectorStoreError
from indexer.vectors.faiss_index import SearchParams
from indexer.vectors.milvus_schema import filter_expression, search_params

log = logging.getLogger(__name__)

MAX_TOPK = 16384  # Milvus's limit on results per query


@dataclass
class MilvusManifest:
    name: str
    spec: str
    fingerprint: str
    dim: int
    count: int
    collection: str
    metric: str = "inner_product"


class MilvusServed:
    """What SearchService serves from Milvus: the manifest, and (for the outfit and query code that wants every
    catalog vector in memory) ids and vectors read from SQL on first use."""

    def __init__(self, manifest: MilvusManifest, store: Store) -> None:
        self.manifest = manifest
        self._store = store

    @cached_property
    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        ids, _, vectors = self._store.load_vectors(self.manifest.fingerprint)
        if len(ids) == 0:
            vectors = np.zeros((0, self.manifest.dim), np.float32)
        return ids, vectors

    @property
    def ids(self) -> np.ndarray:
        return self._arrays[0]

    @property
    def vectors(self) -> np.ndarray:
        return self._arrays[1]


class MilvusSearcher:
    """Top-k inner-product search in one Milvus collection, with filters as Milvus expressions."""

    filters_in_store = True

    def __init__(self, owner, collection: str, dim: int, count: int, index: dict[str, Any],  # noqa: ANN001
                 params: SearchParams) -> None:
        self.owner = owner  # the MilvusVectorStore: its .client, and .recover() (load / reconnect) after a failure
        self.collection = collection
        self.dim = dim
        self.count = count
        self.index = index
        self.params = params
        self.backend = f"milvus-{index['index_type'].lower()}"

    def search(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None,
               filters: dict[str, tuple[str, list[str]]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; missing slots have id -1 and score -inf.

        Args:
            queries: (Q, dim) float32, L2-normalised.
            k: results per query (at most 16384, Milvus's limit).
            allowed_ids: only these ids may be returned (an `id in [...]` expression; for small sets).
            filters: validated filters (Store.validate_filters), matched against the collection's fields.
        """
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise ValueError(f"query dimension {q.shape[1]} != index dimension {self.dim}")
        k = max(1, min(int(k), MAX_TOPK))
        expr = []
        if filters:
            expr.append(filter_expression(filters))
        if allowed_ids is not None:
            if len(allowed_ids) == 0:
                return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
            expr.append(f"id in [{', '.join(str(int(i)) for i in allowed_ids)}]")
        where = " and ".join(f"({e})" for e in expr)
        sp = search_params(self.index, self.params, k)
        hits = self._search(q, k, where, sp)
        if where and self.index["index_type"].startswith("IVF") and min(len(h) for h in hits) < k:
            # A selective filter may leave fewer than k matches in the probed lists: probe every list.
            full = {**sp, "params": {**sp["params"], "nprobe": int(self.index["params"].get("nlist", 1))}}
            if full != sp:
                hits = self._search(q, k, where, full)
        scores = np.full((len(q), k), -np.inf, np.float32)
        ids = np.full((len(q), k), -1, np.int64)
        for row, found in enumerate(hits):
            for col, hit in enumerate(found[:k]):
                ids[row, col] = int(hit["id"])
                scores[row, col] = float(hit["distance"])
        return scores, ids

    def _search(self, q: np.ndarray, k: int, where: str, sp: dict[str, Any]) -> list[list[dict[str, Any]]]:
        """One Milvus search. A collection found released or not loaded (another process released it, a Milvus
        restart) is loaded, and a lost connection re-made, once; then the search is tried again. pymilvus's own
        failure logs (a traceback each) are muted here: the VectorStoreError raised says what failed."""
        with muted_here():
            client = self.owner.client  # VectorStoreError when Milvus cannot be reached at all
            try:
                return self._request(client, q, k, where, sp)
            except Exception as exc:  # pymilvus raises MilvusException and grpc errors
                lost = _connection_lost(exc)
                if not (lost or _not_loaded(exc)):
                    raise VectorStoreError(f"Milvus search in {self.collection} failed: {error_message(exc)}") from None
                log.warning("Milvus search in %s failed (%s): %s and trying again", self.collection,
                            error_message(exc), "reconnecting" if lost else "loading the collection")
            client = self.owner.recover(self.collection, client, reconnect=lost)
            try:
                return self._request(client, q, k, where, sp)
            except Exception as exc:
                raise VectorStoreError(f"Milvus search in {self.collection} failed: {error_message(exc)}") from None

    def _request(self, client, q: np.ndarray, k: int, where: str, sp: dict[str, Any]):  # noqa: ANN001, ANN202
        return client.search(self.collection, data=q.tolist(), limit=k, filter=where, output_fields=["id"],
                             search_params=sp, anns_field="vector")


def error_message(exc: BaseException) -> str:
    """The first line of a pymilvus (or grpc) error's message."""
    return (str(getattr(exc, "message", "") or exc).splitlines() or [type(exc).__name__])[0]


class _MuteOnThisThread(logging.Filter):
    """Drops pymilvus's records (an ERROR with a traceback for every failed call) on a thread inside muted_here(),
    where the failure is handled and reported by this module. Per thread: other requests still log theirs."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "muted", False)


_MUTE = _MuteOnThisThread()
for _name in ("pymilvus.decorators", "pymilvus.client.connection_manager"):
    logging.getLogger(_name).addFilter(_MUTE)


@contextlib.contextmanager
def muted_here():
    """Mute pymilvus's failure records on this thread (the caller handles and reports the failure)."""
    before = getattr(_MUTE.local, "muted", False)
    _MUTE.local.muted = True
    try:
        yield
    finally:
        _MUTE.local.muted = before


def _not_loaded(exc: BaseException) -> bool:
    """Milvus refused because the collection is not loaded (milvus-lite: "in state 'released'", a Milvus server:
    "collection not loaded", code 101)."""
    text = error_message(exc).lower()
    return getattr(exc, "code", None) == 101 or "released" in text or "not loaded" in text


def _connection_lost(exc: BaseException) -> bool:
    """The client lost its server (Milvus restarted or unreachable; this process's milvus-lite server stopped)."""
    from pymilvus.exceptions import ConnectionNotExistException, MilvusUnavailableException

    if isinstance(exc, ConnectionNotExistException | MilvusUnavailableException):
        return True
    code = getattr(exc, "code", None)
    if callable(code):  # a raw grpc.RpcError
        return getattr(code(), "name", "") == "UNAVAILABLE"
    return code == 2 or "fail connecting" in error_message(exc).lower()  # pymilvus Status.CONNECT_FAILED

