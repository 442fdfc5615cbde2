"""Build the vector store that index.store names (faiss or milvus) from Settings."""

from __future__ import annotations

from indexer.settings import Settings
from indexer.vectors.base import VectorStore
from indexer.vectors.faiss_index import SearchParams
from indexer.vectors.faiss_store import FaissVectorStore

STORES = ("faiss", "milvus")


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
        from indexer.vectors.milvus_store import MilvusVectorStore

        m = settings.milvus
        return MilvusVectorStore(settings.milvus_uri, collection=m.collection, token=m.token, spec=settings.index.spec,
                                 index_params=m.index_params, params=params, batch_size=m.batch_size)
    raise ValueError(f"index.store must be one of {', '.join(STORES)}, not {settings.index.store!r}")
