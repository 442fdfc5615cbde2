"""The plan of an indexing run: what to do with each catalog row (embed it, update its metadata, or leave it), and
the report a run returns. Shared by the single-process and the Ray pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from indexer.catalog.source import CatalogRow, RowProblem
from indexer.store.catalog_store import meta_tuple


@dataclass
class IndexReport:
    rows: int = 0
    new: int = 0
    changed: int = 0
    reembedded: int = 0
    metadata_updated: int = 0
    unchanged: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    embedded_seconds: float = 0.0
    elapsed_seconds: float = 0.0
    generation: str | None = None
    generation_count: int = 0
    published: bool = False
    spec: str = ""

    @property
    def embedded(self) -> int:
        return self.new + self.changed + self.reembedded

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows, "new": self.new, "changed": self.changed, "reembedded": self.reembedded,
            "metadata_updated": self.metadata_updated, "unchanged": self.unchanged,
            "skipped": len(self.problems), "problems": [str(p) for p in self.problems],
            "embedded": self.embedded, "elapsed_seconds": round(self.elapsed_seconds, 3),
            "items_per_second": round(self.embedded / self.elapsed_seconds, 2) if self.elapsed_seconds else 0.0,
            "generation": self.generation, "generation_count": self.generation_count,
            "published": self.published, "spec": self.spec,
        }


@dataclass
class WorkItem:
    """A row whose image must be embedded: its bytes, their sha256, what SQL holds for it, and why."""

    row: CatalogRow
    data: bytes
    sha: str
    existing: Any
    kind: str  # new | changed | reembed


def read_work(row: CatalogRow) -> tuple[bytes | None, str | None]:
    """The row's image bytes, or None and a one-line reason it cannot be read."""
    try:
        data = row.image_path.read_bytes()
    except OSError as exc:
        return None, f"cannot read image: {exc.strerror or exc}"
    return data, None


def row_dict(row: CatalogRow) -> dict[str, Any]:
    """The SQL item fields of a catalog row."""
    return {"external_id": row.external_id, "image_path": str(row.image_path), "title": row.title,
            "taxonomy": row.taxonomy, "price": row.price, "attributes": row.attributes}


def classify(old: Any, sha: str, fingerprint: str) -> str | None:
    """What an import must do with an item whose image hashes to sha: "new", "changed", "reembed", or None
    when SQL already holds this image's embedding from this model (old is the store's ExistingItem or None)."""
    if old is None:
        return "new"
    if old.sha != sha:
        return "changed"
    if old.fingerprint != fingerprint or old.embedded_sha != sha or old.status != "active":
        return "reembed"
    return None


def embedded_sha(old: Any, fingerprint: str) -> str:
    """The image hash whose embedding SQL already holds for this item and model ("" if none): an image with this
    hash needs no forward pass (classify() returns None for it)."""
    if old is None or old.status != "active" or old.fingerprint != fingerprint or old.embedded_sha != old.sha:
        return ""
    return old.sha


def note_unchanged(row: CatalogRow, old: Any, pending_meta: list[tuple[int, dict[str, Any]]],
                   report: IndexReport) -> None:
    """An item whose image is already embedded: queue a metadata update if its row changed, else count it."""
    data = row_dict(row)
    if meta_tuple(data) != old.meta:
        pending_meta.append((old.id, data))
    else:
        report.unchanged += 1
