"""The metadata store: SQL reads and writes used by indexing, search and checks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from indexer.store.db import assert_database_current, create_db_engine, make_session_factory
from indexer.store.tables import (
    STATUS_ACTIVE,
    STATUS_REMOVED,
    TAXONOMY_COLUMNS,
    CatalogItem,
    CatalogSource,
    IndexGeneration,
    ItemEmbedding,
    StoreCounter,
    utcnow,
)

REVISION_COUNTER = "embedding_revision"


class FilterError(ValueError):
    """A search filter names an unknown column or has no value."""


@dataclass
class ExistingItem:
    id: int
    sha: str
    status: str
    fingerprint: str | None
    embedded_sha: str | None
    meta: tuple


@dataclass
class StoreState:
    """What SQL holds for one model fingerprint: the ids an index generation must contain."""

    ids: np.ndarray
    revisions: np.ndarray
    high_water: int
    not_embedded: int
    removed_pending: int


class Store:
    """Thin wrapper over an engine + session factory."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions: sessionmaker[Session] = make_session_factory(engine)

    @classmethod
    def from_url(cls, url: str, busy_timeout_s: int = 30, check_migrated: bool = True) -> Store:
        store = cls(create_db_engine(url, busy_timeout_s))
        if check_migrated:
            assert_database_current(store.engine)
        return store

    def close(self) -> None:
        self.engine.dispose()

    # ---- indexing -------------------------------------------------------------------------

    def existing_items(self) -> dict[str, ExistingItem]:
        """external_id -> what the store knows, for deciding what an import must redo."""
        stmt = select(
            CatalogItem.external_id, CatalogItem.id, CatalogItem.content_sha256, CatalogItem.status,
            ItemEmbedding.fingerprint, ItemEmbedding.content_sha256, *_meta_columns(),
        ).outerjoin(ItemEmbedding, ItemEmbedding.item_id == CatalogItem.id)
        out: dict[str, ExistingItem] = {}
        with self.sessions() as s:
            for row in s.execute(stmt):
                meta = list(row[6:])
                price_at = 1 + len(TAXONOMY_COLUMNS)
                meta[price_at] = _price_key(meta[price_at])
                out[row[0]] = ExistingItem(row[1], row[2], row[3], row[4], row[5], tuple(meta))
        return out

    def next_revisions(self, session: Session, n: int) -> int:
        """Reserve n revision numbers in the caller's transaction; returns the first."""
        counter = session.execute(
            select(StoreCounter).where(StoreCounter.name == REVISION_COUNTER).with_for_update()
        ).scalar_one_or_none()
        if counter is None:
            counter = StoreCounter(name=REVISION_COUNTER, value=0)
            session.add(counter)
            session.flush()
        first = counter.value + 1
        counter.value += n
        return first

    def write_embedded(self, session: Session, rows: Sequence[Mapping[str, Any]], vectors: np.ndarray,
                       fingerprint: str) -> list[int]:
        """Upsert items and their embeddings (one revision each) in the caller's transaction.

        Each row: external_id, existing_id (or None), image_path, content_sha256, title, taxonomy,
        price, attributes. Returns the SQL ids.
        """
        first = self.next_revisions(session, len(rows))
        now = utcnow()
        ids: list[int | None] = [None] * len(rows)
        fresh = [i for i, row in enumerate(rows) if not row.get("existing_id")]
        if fresh:
            # New items: multi-row INSERT ... RETURNING (the common case of a bulk import). The ids are matched back
            # by external id (unique), not by row order: asking SQLAlchemy for parameter order makes it insert one
            # row per statement on SQLite (measured: 100 statements for 100 rows, most of the write's time).
            values = [_item_values(rows[i]) | {"created_at": now, "updated_at": now} for i in fresh]
            result = session.execute(insert(CatalogItem).returning(CatalogItem.id, CatalogItem.external_id), values)
            new_ids = {external_id: new_id for new_id, external_id in result.all()}
            for i in fresh:
                ids[i] = new_ids[rows[i]["external_id"]]
        embeddings = []
        for i, row in enumerate(rows):
            if ids[i] is None:  # an existing item whose image or model changed
                item = session.get(CatalogItem, row["existing_id"])
                _assign_meta(item, row)
                item.content_sha256 = row["content_sha256"]
                item.status = STATUS_ACTIVE
                item.updated_at = now
                ids[i] = item.id
            vec = np.ascontiguousarray(vectors[i], dtype="<f4")
            embeddings.append({"item_id": ids[i], "fingerprint": fingerprint, "content_sha256": row["content_sha256"],
                               "dim": int(vec.shape[0]), "vector": vec.tobytes(), "revision": first + i,
                               "embedded_at": now})
        session.flush()
        replaced = [e["item_id"] for i, e in enumerate(embeddings) if rows[i].get("existing_id")]
        if replaced:
            session.execute(delete(ItemEmbedding).where(ItemEmbedding.item_id.in_(replaced)))
        session.execute(insert(ItemEmbedding), embeddings)
        return [int(i) for i in ids]  # type: ignore[arg-type]

    def update_metadata(self, session: Session, item_id: int, row: Mapping[str, Any]) -> None:
        item = session.get(CatalogItem, item_id)
        if item is not None:
            _assign_meta(item, row)
            item.status = STATUS_ACTIVE
            item.updated_at = utcnow()

    def state(self, fingerprint: str) -> StoreState:
        """Ids and revisions of active items embedded with this fingerprint, and what is pending."""
        with self.sessions() as s:
            rows = s.execute(
                select(ItemEmbedding.item_id, ItemEmbedding.revision)
                .join(CatalogItem, CatalogItem.id == ItemEmbedding.item_id)
                .where(CatalogItem.status == STATUS_ACTIVE, ItemEmbedding.fingerprint == fingerprint,
                       ItemEmbedding.content_sha256 == CatalogItem.content_sha256)
                .order_by(ItemEmbedding.item_id)
            ).all()
            active = s.scalar(select(func.count()).select_from(CatalogItem)
                              .where(CatalogItem.status == STATUS_ACTIVE)) or 0
            removed = s.scalar(select(func.count()).select_from(CatalogItem)
                               .where(CatalogItem.status == STATUS_REMOVED)) or 0
            hw = s.scalar(select(StoreCounter.value).where(StoreCounter.name == REVISION_COUNTER)) or 0
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        revs = np.fromiter((r[1] for r in rows), np.int64, len(rows))
        return StoreState(ids, revs, int(hw), int(active) - len(rows), int(removed))

    def load_vectors(self, fingerprint: str, batch: int = 20_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, revisions, vectors) of every active item embedded with this fingerprint."""
        stmt = (select(ItemEmbedding.item_id, ItemEmbedding.revision, ItemEmbedding.vector)
                .join(CatalogItem, CatalogItem.id == ItemEmbedding.item_id)
                .where(CatalogItem.status == STATUS_ACTIVE, ItemEmbedding.fingerprint == fingerprint,
                       ItemEmbedding.content_sha256 == CatalogItem.content_sha256)
                .order_by(ItemEmbedding.item_id))
        ids: list[int] = []
        revs: list[int] = []
        chunks: list[bytes] = []
        with self.sessions() as s:
            for part in s.execute(stmt.execution_options(yield_per=batch)).partitions():
                for item_id, rev, vec in part:
                    ids.append(item_id)
                    revs.append(rev)
                    chunks.append(vec)
        if not chunks:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        vectors = np.frombuffer(b"".join(chunks), dtype="<f4").reshape(len(chunks), -1).astype(np.float32)
        return np.asarray(ids, np.int64), np.asarray(revs, np.int64), vectors

    def iter_index_rows(self, fingerprint: str, ids: Sequence[int] | None = None, with_vectors: bool = False,
                        batch: int = 2000) -> Iterator[list[dict[str, Any]]]:
        """Batches of what an external vector store holds per active item embedded with this fingerprint.

        Each row: id, revision, title, the taxonomy columns, attributes, and (with_vectors) vector as float32.
        ids restricts the rows to those items (fetched in chunks of `batch`); None means every such item.
        """
        cols = [ItemEmbedding.item_id, ItemEmbedding.revision, CatalogItem.title,
                *(getattr(CatalogItem, c) for c in TAXONOMY_COLUMNS), CatalogItem.attributes]
        if with_vectors:
            cols.append(ItemEmbedding.vector)
        base = (select(*cols).join(CatalogItem, CatalogItem.id == ItemEmbedding.item_id)
                .where(CatalogItem.status == STATUS_ACTIVE, ItemEmbedding.fingerprint == fingerprint,
                       ItemEmbedding.content_sha256 == CatalogItem.content_sha256)
                .order_by(ItemEmbedding.item_id))
        names = ["id", "revision", "title", *TAXONOMY_COLUMNS, "attributes"]

        def rows_of(result) -> list[dict[str, Any]]:  # noqa: ANN001 - a SQLAlchemy result partition
            out = []
            for r in result:
                row = dict(zip(names, r[:len(names)], strict=True))
                if with_vectors:
                    row["vector"] = np.frombuffer(r[len(names)], dtype="<f4").astype(np.float32)
                out.append(row)
            return out

        with self.sessions() as s:
            if ids is None:
                for part in s.execute(base.execution_options(yield_per=batch)).partitions():
                    yield rows_of(part)
                return
            wanted = [int(i) for i in ids]
            for start in range(0, len(wanted), batch):
                chunk = wanted[start:start + batch]
                rows = rows_of(s.execute(base.where(ItemEmbedding.item_id.in_(chunk))))
                if rows:
                    yield rows

    def latest_generation(self, prefix: str) -> dict[str, Any] | None:
        """The most recently recorded generation whose name starts with prefix (e.g. "milvus-"), or None."""
        with self.sessions() as s:
            g = s.scalar(select(IndexGeneration).where(IndexGeneration.name.startswith(prefix))
                         .order_by(IndexGeneration.id.desc()).limit(1))
            if g is None:
                return None
            return {"name": g.name, "spec": g.spec, "fingerprint": g.fingerprint, "dim": g.dim, "count": g.count,
                    "high_water": g.high_water, "build_seconds": g.build_seconds}

    def last_generation_number(self) -> int:
        """Highest gen-NNNNNN number recorded, so names are never reused even if folders vanish."""
        with self.sessions() as s:
            names = s.scalars(select(IndexGeneration.name))
            return max((int(n[4:]) for n in names if n[4:].isdigit()), default=0)

    def record_generation(self, manifest) -> None:  # noqa: ANN001 - generations.Manifest
        with self.sessions.begin() as s:
            s.add(IndexGeneration(name=manifest.name, spec=manifest.spec, fingerprint=manifest.fingerprint,
                                  dim=manifest.dim, count=manifest.count, high_water=manifest.high_water,
                                  build_seconds=manifest.build_seconds))

    # ---- removal -------------------------------------------------------------------------

    def mark_removed(self, external_ids: Iterable[str]) -> tuple[list[int], list[str]]:
        """Tombstone items (status=removed). Returns (sql ids marked, external ids not found)."""
        wanted = list(dict.fromkeys(external_ids))
        with self.sessions.begin() as s:
            found = dict(s.execute(select(CatalogItem.external_id, CatalogItem.id)
                                   .where(CatalogItem.external_id.in_(wanted))).all())
            if found:
                s.execute(update(CatalogItem).where(CatalogItem.id.in_(list(found.values())))
                          .values(status=STATUS_REMOVED, updated_at=utcnow()))
        return sorted(found.values()), [e for e in wanted if e not in found]

    def purge_removed(self, keep_ids: Iterable[int] = ()) -> int:
        """Delete tombstoned items (and, by cascade, their embeddings) not in keep_ids."""
        keep = set(keep_ids)
        with self.sessions.begin() as s:
            ids = [i for i in s.scalars(select(CatalogItem.id).where(CatalogItem.status == STATUS_REMOVED))
                   if i not in keep]
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                s.execute(delete(ItemEmbedding).where(ItemEmbedding.item_id.in_(chunk)))
                s.execute(delete(CatalogItem).where(CatalogItem.id.in_(chunk)))
        return len(ids)

    # ---- search support -----------------------------------------------------------------

    def active_item_columns(self, columns: Sequence[str], ids: Sequence[int] | None = None,
                            chunk: int = 5000) -> dict[int, dict[str, Any]]:
        """{SQL id: {column: value}} of active items (all of them when ``ids`` is None), for the named columns of
        catalog_items (read in chunks of ``chunk`` ids)."""
        cols = [CatalogItem.id, *(getattr(CatalogItem, c) for c in columns)]
        out: dict[int, dict[str, Any]] = {}
        with self.sessions() as s:
            chunks = [None] if ids is None else [list(ids[i:i + chunk]) for i in range(0, len(ids), chunk)]
            for part in chunks:
                stmt = select(*cols).where(CatalogItem.status == STATUS_ACTIVE)
                if part is not None:
                    stmt = stmt.where(CatalogItem.id.in_([int(i) for i in part]))
                for row in s.execute(stmt):
                    out[int(row[0])] = dict(zip(columns, row[1:], strict=True))
        return out

    def validate_filters(self, filters: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, list[str]]]:
        """Check search filters; returns key -> ("column" | "attribute", lower-cased values).

        Raises:
            FilterError: a filter with no value, or a key that is neither a taxonomy column, the title nor an
                attribute key.
        """
        out: dict[str, tuple[str, list[str]]] = {}
        attribute_keys: list[str] | None = None
        for key, values in filters.items():
            vals = [v for v in values if v is not None]
            if not vals:
                raise FilterError(f"filter {key!r} has no value")
            if key in TAXONOMY_COLUMNS or key == "title":
                out[key] = ("column", [v.lower() for v in vals])
                continue
            attribute_keys = self.attribute_keys() if attribute_keys is None else attribute_keys
            if key not in attribute_keys:
                raise FilterError(f"unknown filter {key!r}; filterable: {', '.join(self.filterable_columns())}")
            out[key] = ("attribute", [v.lower() for v in vals])
        return out

    def filter_ids(self, filters: Mapping[str, Sequence[str]]) -> np.ndarray:
        """Ids of active items matching every filter (values of one column are OR-ed).

        Taxonomy columns are SQL columns; any other key is looked up in the item attributes.
        """
        stmt = select(CatalogItem.id).where(CatalogItem.status == STATUS_ACTIVE)
        for key, (kind, vals) in self.validate_filters(filters).items():
            col = getattr(CatalogItem, key) if kind == "column" else CatalogItem.attributes[key].as_string()
            stmt = stmt.where(func.lower(col).in_(vals))
        with self.sessions() as s:
            return np.fromiter(s.scalars(stmt), np.int64)

    def attribute_keys(self) -> list[str]:
        """Keys found in items' attributes (sampled from a bounded number of rows)."""
        with self.sessions() as s:
            keys: set[str] = set()
            for attrs in s.scalars(select(CatalogItem.attributes).limit(2000)):
                keys.update((attrs or {}).keys())
        return sorted(keys)

    def filterable_columns(self) -> list[str]:
        return list(TAXONOMY_COLUMNS) + self.attribute_keys()

    def distinct_values(self, column: str, limit: int = 500) -> list[str]:
        if column not in TAXONOMY_COLUMNS:
            raise FilterError(f"unknown taxonomy column {column!r}")
        col = getattr(CatalogItem, column)
        with self.sessions() as s:
            vals = s.scalars(select(col).where(CatalogItem.status == STATUS_ACTIVE, col.is_not(None))
                             .distinct().order_by(col).limit(limit))
            return [v for v in vals if v]

    def get_items(self, ids: Sequence[int], include_removed: bool = False) -> dict[int, dict[str, Any]]:
        """Public metadata of items by SQL id (removed items are omitted unless asked for)."""
        if len(ids) == 0:
            return {}
        stmt = select(CatalogItem).where(CatalogItem.id.in_([int(i) for i in ids]))
        if not include_removed:
            stmt = stmt.where(CatalogItem.status == STATUS_ACTIVE)
        with self.sessions() as s:
            return {item.id: item_to_dict(item) for item in s.scalars(stmt)}

    def get_item_by_external_id(self, external_id: str) -> dict[str, Any] | None:
        with self.sessions() as s:
            item = s.scalar(select(CatalogItem).where(CatalogItem.external_id == external_id,
                                                      CatalogItem.status == STATUS_ACTIVE))
            return item_to_dict(item) if item else None

    def get_vector(self, item_id: int, fingerprint: str) -> np.ndarray | None:
        with self.sessions() as s:
            blob = s.scalar(select(ItemEmbedding.vector).where(ItemEmbedding.item_id == item_id,
                                                               ItemEmbedding.fingerprint == fingerprint))
        return None if blob is None else np.frombuffer(blob, dtype="<f4").astype(np.float32)

    # ---- catalog sources (what was indexed, and so which image folders may be served) --------

    def record_catalog_source(self, catalog: str, images_root: str) -> None:
        """Note that catalog (a CSV or folder) is being indexed with its images under images_root (absolute
        paths). Called before any of its items is written, under the index writer lock."""
        with self.sessions.begin() as s:
            row = s.scalar(select(CatalogSource).where(CatalogSource.catalog == catalog,
                                                       CatalogSource.images_root == images_root))
            if row is None:
                s.add(CatalogSource(catalog=catalog, images_root=images_root))
            else:
                row.last_indexed_at = utcnow()

    def catalog_sources(self) -> list[dict[str, Any]]:
        """Every indexed catalog, the most recently indexed first."""
        with self.sessions() as s:
            rows = s.scalars(select(CatalogSource).order_by(CatalogSource.last_indexed_at.desc(),
                                                            CatalogSource.id.desc()))
            return [{"catalog": r.catalog, "images_root": r.images_root, "first_indexed_at": r.first_indexed_at,
                     "last_indexed_at": r.last_indexed_at} for r in rows]

    def catalog_roots(self) -> tuple[str, ...]:
        """The distinct image folders of every indexed catalog."""
        with self.sessions() as s:
            return tuple(s.scalars(select(CatalogSource.images_root).distinct().order_by(CatalogSource.images_root)))

    def iter_image_paths(self, batch: int = 5000) -> Iterator[tuple[str, str]]:
        """(external id, image path) of every active item, in id order."""
        with self.sessions() as s:
            result = s.execute(select(CatalogItem.external_id, CatalogItem.image_path)
                               .where(CatalogItem.status == STATUS_ACTIVE).order_by(CatalogItem.id)
                               .execution_options(yield_per=batch))
            yield from ((ext, path) for ext, path in result)

    def image_path(self, item_id: int) -> str | None:
        with self.sessions() as s:
            return s.scalar(select(CatalogItem.image_path).where(CatalogItem.id == item_id))

    def count_items(self, status: str = STATUS_ACTIVE) -> int:
        with self.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(CatalogItem).where(CatalogItem.status == status)) or 0)

    def sample_ids(self, n: int, seed: int = 0) -> list[int]:
        with self.sessions() as s:
            ids = list(s.scalars(select(CatalogItem.id).where(CatalogItem.status == STATUS_ACTIVE)
                                 .order_by(CatalogItem.id)))
        rng = np.random.default_rng(seed)
        return sorted(int(i) for i in rng.choice(ids, min(n, len(ids)), replace=False)) if ids else []


def _meta_columns():
    return (CatalogItem.title, *(getattr(CatalogItem, c) for c in TAXONOMY_COLUMNS), CatalogItem.price,
            CatalogItem.image_path, CatalogItem.attributes)


def meta_tuple(row: Mapping[str, Any]) -> tuple:
    """The comparable metadata of an import row, in _meta_columns order."""
    tax = row.get("taxonomy") or {}
    price = row.get("price")
    return (row.get("title") or "", *(tax.get(c) for c in TAXONOMY_COLUMNS),
            _price_key(price),
            row["image_path"], row.get("attributes") or {})


def _price_key(price: Any) -> str | None:
    return None if price is None else str(Decimal(str(price)).quantize(Decimal("0.01")))


def _item_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """Column values of a new catalog item from an import row."""
    tax = row.get("taxonomy") or {}
    return {"external_id": row["external_id"], "title": row.get("title") or "", "price": row.get("price"),
            "image_path": row["image_path"], "content_sha256": row["content_sha256"], "status": STATUS_ACTIVE,
            "attributes": dict(row.get("attributes") or {}), **{c: tax.get(c) for c in TAXONOMY_COLUMNS}}


def _assign_meta(item: CatalogItem, row: Mapping[str, Any]) -> None:
    item.title = row.get("title") or ""
    tax = row.get("taxonomy") or {}
    for c in TAXONOMY_COLUMNS:
        setattr(item, c, tax.get(c))
    item.price = row.get("price")
    item.image_path = row["image_path"]
    item.attributes = dict(row.get("attributes") or {})


def item_to_dict(item: CatalogItem) -> dict[str, Any]:
    out: dict[str, Any] = {"id": item.id, "external_id": item.external_id, "title": item.title}
    for c in TAXONOMY_COLUMNS:
        out[c] = getattr(item, c)
    out["price"] = float(item.price) if item.price is not None else None
    out["attributes"] = dict(item.attributes or {})
    out["status"] = item.status
    return out
