"""The catalog as the outfit model sees it: image vectors of one model fingerprint, taxonomy, and slots.

Vectors come from what indexing already stored (SQL ``item_embeddings``), so training and evaluating outfits never
re-embed catalog images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.colour import with_colour
from indexer.outfits.colours import catalog_colours
from indexer.outfits.slots import SlotRules
from indexer.store.catalog_store import Store
from indexer.store.tables import TAXONOMY_COLUMNS


@dataclass
class OutfitCatalog:
    """Active items embedded with one fingerprint, in SQL id order.

    Attributes:
        ids: (N,) SQL ids.
        external_ids: Catalog ids, row-aligned.
        taxonomy: Row-aligned dicts of the taxonomy columns (values may be None).
        vectors: (N, dim) float32 image vectors.
        slots: (N,) slot id from the taxonomy rules, -1 where no rule matches.
        colours: (N, bins**3) colour descriptors of the images, or None.
    """

    ids: np.ndarray
    external_ids: list[str]
    taxonomy: list[dict[str, Any]]
    vectors: np.ndarray
    slots: np.ndarray
    colours: np.ndarray | None = None

    @property
    def features(self) -> np.ndarray:
        """The outfit model's inputs: image vectors with colour descriptors appended."""
        return with_colour(self.vectors, self.colours)

    def rows_of(self, external_ids: Sequence[str]) -> dict[str, int]:
        """{external id: row} for the ids present."""
        row = {e: i for i, e in enumerate(self.external_ids)}
        return {e: row[e] for e in external_ids if e in row}


def item_taxonomy(store: Store, ids: Sequence[int] | None = None) -> dict[int, dict[str, Any]]:
    """{SQL id: {"external_id", taxonomy columns...}} of active items (all of them when ``ids`` is None)."""
    return store.active_item_columns(["external_id", *TAXONOMY_COLUMNS], ids)


def slots_from_taxonomy(taxonomy: Sequence[dict[str, Any]], rules: SlotRules) -> np.ndarray:
    """Slot id per row from the taxonomy rules (-1 where none matches)."""
    out = np.full(len(taxonomy), -1, np.int64)
    for i, tax in enumerate(taxonomy):
        slot = rules.slot_of(tax)
        if slot is not None:
            out[i] = rules.slots.index(slot)
    return out


def has_taxonomy(tax: dict[str, Any]) -> bool:
    return any(tax.get(c) for c in TAXONOMY_COLUMNS)


def load_outfit_catalog(store: Store, fingerprint: str, rules: SlotRules, colour_bins: int = 0,
                        cache_dir: Path | None = None) -> OutfitCatalog:
    """Every active item with a vector from ``fingerprint``, its taxonomy, slot and (with ``colour_bins``) the
    colour descriptor of its image (cached in ``cache_dir``).

    Raises:
        ValueError: No item has a vector from this model (the catalog is not indexed with it).
    """
    ids, _, vectors = store.load_vectors(fingerprint)
    if len(ids) == 0:
        raise ValueError(f"no catalog item has a vector from model {fingerprint}: run `python manage.py index` "
                         "with the configured model first")
    tax = item_taxonomy(store)
    rows = [tax.get(int(i), {"external_id": str(i)}) for i in ids]
    taxonomy = [{c: r.get(c) for c in TAXONOMY_COLUMNS} for r in rows]
    colours = catalog_colours(store, ids.tolist(), colour_bins, cache_dir) if colour_bins else None
    return OutfitCatalog(ids=ids, external_ids=[str(r["external_id"]) for r in rows], taxonomy=taxonomy,
                         vectors=vectors, slots=slots_from_taxonomy(taxonomy, rules), colours=colours)
