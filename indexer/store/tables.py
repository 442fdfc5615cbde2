"""SQLAlchemy 2.0 models of the metadata store: the source of truth for the catalog.

FAISS ids are CatalogItem.id. Vectors live in SQL (item_embeddings.vector) so that an index
generation is always rebuildable from the store alone, without re-embedding.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Deterministic constraint names so Alembic migrations are portable across SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Taxonomy columns that are real (indexed, filterable) SQL columns. Other CSV columns go to attributes.
TAXONOMY_COLUMNS: tuple[str, ...] = (
    "gender", "master_category", "sub_category", "article_type", "base_colour", "usage",
)

STATUS_ACTIVE = "active"
STATUS_REMOVED = "removed"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class CatalogItem(Base):
    """One product of the catalog."""

    __tablename__ = "catalog_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    external_id: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    title: Mapped[str] = mapped_column(Text, nullable=False, default="")
    gender: Mapped[str | None] = mapped_column(String(64), index=True)
    master_category: Mapped[str | None] = mapped_column(String(128), index=True)
    sub_category: Mapped[str | None] = mapped_column(String(128), index=True)
    article_type: Mapped[str | None] = mapped_column(String(128), index=True)
    base_colour: Mapped[str | None] = mapped_column(String(64), index=True)
    usage: Mapped[str | None] = mapped_column(String(64), index=True)
    price: Mapped[float | None] = mapped_column(Numeric(12, 2))
    # Absolute path of the image file on the indexing machine.
    image_path: Mapped[str] = mapped_column(Text, nullable=False)
    content_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=STATUS_ACTIVE, index=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, onupdate=utcnow
    )

    embedding: Mapped[ItemEmbedding | None] = relationship(
        back_populates="item", cascade="all, delete-orphan", passive_deletes=True, uselist=False
    )


class ItemEmbedding(Base):
    """The current embedding of an item under one model fingerprint.

    revision is a store-wide increasing number (a high-water mark): an index generation built
    from revisions <= R contains exactly the vectors SQL held at R.
    """

    __tablename__ = "item_embeddings"

    item_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("catalog_items.id", ondelete="CASCADE"), primary_key=True
    )
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    content_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    dim: Mapped[int] = mapped_column(Integer, nullable=False)
    vector: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    revision: Mapped[int] = mapped_column(BigInteger, nullable=False, index=True)
    embedded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)

    item: Mapped[CatalogItem] = relationship(back_populates="embedding")


class StoreCounter(Base):
    """Named monotonically increasing counters (the embedding revision high-water mark)."""

    __tablename__ = "store_counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


class IndexGeneration(Base):
    """A built index generation folder; the one named in the index dir's CURRENT file is served."""

    __tablename__ = "index_generations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    spec: Mapped[str] = mapped_column(String(255), nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    dim: Mapped[int] = mapped_column(Integer, nullable=False)
    count: Mapped[int] = mapped_column(Integer, nullable=False)
    high_water: Mapped[int] = mapped_column(BigInteger, nullable=False)
    build_seconds: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class CatalogSource(Base):
    """A catalog the operator indexed (`manage.py index`): its CSV or folder and the folder its images live in.

    Recorded before the run writes any item, so every image path in catalog_items lies under some images_root
    here; the web app serves pictures from these roots (besides web.image_roots) without extra configuration.
    """

    __tablename__ = "catalog_sources"
    __table_args__ = (UniqueConstraint("catalog", "images_root"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    catalog: Mapped[str] = mapped_column(Text, nullable=False)
    images_root: Mapped[str] = mapped_column(Text, nullable=False)
    first_indexed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    last_indexed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class EvaluationRun(Base):
    """One stored evaluation run (issue: training/evaluation; analyst workbench reads these)."""

    __tablename__ = "evaluation_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    model_fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    index_spec: Mapped[str] = mapped_column(String(255), nullable=False)
    dataset_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    dataset: Mapped[str] = mapped_column(Text, nullable=False, default="")
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, server_default=func.now()
    )


class SweepResult(Base):
    """One measured index setting of a `manage.py sweep` (analyst workbench: recall vs queries/s).

    Rows of one sweep share ``sweep_id``; ``recall`` is recall@k against exact (Flat) search on the same vectors.
    """

    __tablename__ = "sweep_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sweep_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    index_spec: Mapped[str] = mapped_column(String(255), nullable=False)
    nprobe: Mapped[int | None] = mapped_column(Integer)
    ef_search: Mapped[int | None] = mapped_column(Integer)
    k: Mapped[int] = mapped_column(Integer, nullable=False)
    recall: Mapped[float] = mapped_column(Float, nullable=False)
    queries_per_s: Mapped[float] = mapped_column(Float, nullable=False)
    memory_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    build_seconds: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    n_vectors: Mapped[int] = mapped_column(Integer, nullable=False)
    n_queries: Mapped[int] = mapped_column(Integer, nullable=False)
    model_fingerprint: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    generation: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, server_default=func.now()
    )


class CurationRun(Base):
    """One `manage.py duplicates` or `manage.py audit labels` run (issue 18): its parameters, a summary the
    analytics pages show (duplicate rate, suspects per column) and its details (the groups, the suspects), which the
    merchandiser pages list and search results collapse by (indexer/curation/records.py)."""

    __tablename__ = "curation_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    model_fingerprint: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    generation: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, server_default=func.now()
    )


class LabelChange(Base):
    """A taxonomy value a merchandiser changed through the label audit (`manage.py audit labels --apply`):
    who, when, the old and the new value, and the audit run that suggested it (if any)."""

    __tablename__ = "label_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(Integer, ForeignKey("catalog_items.id", ondelete="CASCADE"), nullable=False,
                                         index=True)
    column: Mapped[str] = mapped_column(String(64), nullable=False)
    old_value: Mapped[str | None] = mapped_column(String(128))
    new_value: Mapped[str] = mapped_column(String(128), nullable=False)
    applied_by: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    run_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("curation_runs.id", ondelete="SET NULL"))
    applied_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, server_default=func.now()
    )


Index("ix_item_embeddings_fp_rev", ItemEmbedding.fingerprint, ItemEmbedding.revision)
