"""The vector-store interface: where the SQL store's vectors are searched.

Two implementations: FaissVectorStore (indexer/vectors/faiss_store.py, the embedded default: index generations in
index.dir) and MilvusVectorStore (indexer/vectors/milvus_store.py). Both keep SQL as the source of truth
(ids = SQL primary keys), so either can be rebuilt from SQL without re-embedding, and both answer the same
consistency check (CheckReport). `index.store` in config.toml picks one (indexer/vectors/factory.py).

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

Imports only the SQL store's types (for annotations); the implementations import this module, never the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from indexer.store.catalog_store import Store


class VectorStoreError(RuntimeError):
    """The vector store cannot be reached or used; the message says what to check."""



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



class VectorStore(Protocol):
    kind: str

    def publish(self, store: Store, embedder, report, force: bool = False,  # noqa: ANN001
                settings_snapshot: dict[str, Any] | None = None, hook=None) -> bool: ...

    def current_name(self, store: Store) -> str | None: ...

    def open(self, name: str | None, store: Store, embedder) -> tuple[Any, Any]: ...  # noqa: ANN001

    def check(self, store: Store, fingerprint: str) -> CheckReport: ...

    def close(self) -> None: ...
