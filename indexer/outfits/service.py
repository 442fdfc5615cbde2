"""Complete the look: for a catalog item or a photo, the most compatible items of every complementary slot.

For each slot of the query's outfit template (in template order) every catalog item of that slot that passes the
filters (and, with ``outfit.match_gender``, has the query item's gender or Unisex) is scored exactly: the filters
restrict the candidate set before ranking, so a selective filter still returns items whenever matching ones exist.
The score is the compatibility model's cosine in the (query slot, target slot) subspace, plus ``context_weight``
times the mean compatibility with the picks already made for earlier slots, so the look holds together. The best
``candidates`` then go through maximal marginal relevance on image-vector similarity, so a slot shows varied items
rather than near-duplicates.

The service follows the search service's current index generation; the catalog state (general embeddings,
slots) is rebuilt when the generation changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from engine.colour import colour_descriptor, with_colour
from engine.outfits.metrics import mmr_select
from engine.outfits.model import NONE_SLOT, OutfitModel, OutfitModelError, load_outfit_model
from indexer.catalog.images import crop_box
from indexer.curation.records import distrusted_labels
from indexer.outfits.catalog import has_taxonomy, item_taxonomy, slots_from_taxonomy
from indexer.outfits.colours import catalog_colours
from indexer.outfits.slots import SlotRules, parse_slot_rules
from indexer.search.service import Hit, SearchService
from indexer.settings import OutfitSettings

log = logging.getLogger(__name__)
# Taxonomy columns the slot rules read: an audit flag on one of them makes the slot label untrusted.
SLOT_COLUMNS = ("master_category", "sub_category", "article_type")
# The slot classifier must be at least this sure before an item without taxonomy is put into a slot.
MIN_CLASSIFIER_CONFIDENCE = 0.5
# Query genders that outfit.match_gender matches (Unisex or unknown items match anything).
GENDERED = frozenset({"men", "women", "boys", "girls"})


@dataclass
class OutfitSlot:
    """Picks for one complementary slot, best first; ``Hit.score`` is the compatibility with the query."""

    slot: str
    hits: list[Hit]
    candidates: int

    def as_dict(self) -> dict[str, Any]:
        return {"slot": self.slot, "candidates": self.candidates, "items": [h.as_dict() for h in self.hits]}


@dataclass
class OutfitResult:
    """A complete look around a query (an item or a photo)."""

    query_slot: str | None
    slot_source: str
    slot_confidence: float | None
    slots: list[OutfitSlot] = field(default_factory=list)
    generation: str = ""
    note: str | None = None

    @property
    def outfit(self) -> list[Hit]:
        """The complete outfit: the first pick of every slot that has one."""
        return [s.hits[0] for s in self.slots if s.hits]

    def as_dict(self) -> dict[str, Any]:
        return {"query_slot": self.query_slot, "slot_source": self.slot_source,
                "slot_confidence": None if self.slot_confidence is None else round(self.slot_confidence, 4),
                "outfit": [h.as_dict() for h in self.outfit], "slots": [s.as_dict() for s in self.slots],
                "generation": self.generation, "note": self.note}


@dataclass
class _CatalogState:
    generation: str
    ids: np.ndarray
    row_of: dict[int, int]
    vectors: np.ndarray
    general: np.ndarray
    slots: np.ndarray
    tagged: np.ndarray
    genders: np.ndarray
    slot_rows: dict[int, np.ndarray]


def check_outfit_model(model: OutfitModel, meta: Mapping[str, Any], rules: SlotRules, fingerprint: str,
                       dim: int) -> None:
    """Refuse an outfit model trained for other image vectors or other slots.

    Raises:
        OutfitModelError: With the command that fixes it.
    """
    fix = "run `python manage.py train-outfits` (docs/outfits.md)"
    if meta.get("fingerprint") != fingerprint or model.image_dim != dim:
        raise OutfitModelError(f"the outfit model was trained on vectors of model {meta.get('fingerprint')} "
                               f"(dim {model.image_dim}); the served model is {fingerprint} (dim {dim}): {fix}")
    if tuple(model.slots) != tuple(rules.slots):
        raise OutfitModelError(f"the outfit model knows slots {', '.join(model.slots)} but outfit.slots configures "
                               f"{', '.join(rules.slots)}: {fix}")


class OutfitService:
    """Outfits over the served index generation. Thread-safe; the catalog state is swapped under a lock.

    Args:
        search: The search service (store, embedder, current generation).
        settings: The [outfit] settings.
        checkpoint: Path of the outfit model.
        embed: Image embedding function to use for photos (defaults to ``search.embed``); the web app passes the
            query engine's, which serialises forward passes.
        cache_dir: Where catalog colour descriptors are cached (None: computed, not cached).
    """

    def __init__(self, search: SearchService, settings: OutfitSettings, checkpoint: Path,
                 embed: Callable[[Sequence[Image.Image]], np.ndarray] | None = None,
                 cache_dir: Path | None = None, distrust_confidence: float | None = None) -> None:
        self.search = search
        # Labels the latest label audit flags with at least this confidence are not trusted for slots (None: all
        # labels are trusted). docs/curation.md "Outfit slots".
        self.distrust_confidence = distrust_confidence
        self.settings = settings
        self.cache_dir = cache_dir
        self.rules = parse_slot_rules(settings.slots, settings.templates)
        self.model, self.meta = load_outfit_model(checkpoint)
        check_outfit_model(self.model, self.meta, self.rules, search.embedder.fingerprint, search.embedder.dim)
        self._embed = embed or search.embed
        self._lock = threading.Lock()
        self._state: _CatalogState | None = None

    @property
    def proxy_trained(self) -> bool:
        """True when the model learned from proxy outfits (taxonomy-derived), as recorded in its manifest."""
        return bool(self.meta.get("proxy", False))

    # ---- catalog state -----------------------------------------------------------------------------------

    def warm_up(self) -> int:
        """Build the catalog state for the served generation now (colours, embeddings); returns items in slots."""
        return int((self._current().slots >= 0).sum())

    def _current(self) -> _CatalogState:
        gen, _ = self.search.served()
        state = self._state
        if state is not None and state.generation == gen.manifest.name:
            return state
        with self._lock:
            if self._state is None or self._state.generation != gen.manifest.name:
                self._state = self._build(gen.manifest.name, gen.ids, gen.vectors)
            return self._state

    def _colours(self, ids: Sequence[int]) -> np.ndarray | None:
        if not self.model.colour_bins:
            return None
        return catalog_colours(self.search.store, list(ids), self.model.colour_bins, self.cache_dir)

    def _features(self, vectors: np.ndarray, colours: np.ndarray | None) -> np.ndarray:
        return with_colour(np.atleast_2d(vectors), None if colours is None else np.atleast_2d(colours))

    def _build(self, name: str, ids: np.ndarray, vectors: np.ndarray) -> _CatalogState:
        tax = item_taxonomy(self.search.store, ids.tolist())
        colours = self._colours(ids.tolist())
        rows = [tax.get(int(i), {}) for i in ids]
        slots = slots_from_taxonomy(rows, self.rules)
        # Items without any taxonomy (a folder of images) get the classifier's slot when it is confident.
        bare = np.array([not has_taxonomy(r) for r in rows], bool)
        if self.distrust_confidence is not None:
            # A slot label the audit contradicts with high confidence (a T-shirt filed under Belts) is not trusted:
            # the item gets its slot from the slot classifier, as an item without taxonomy does.
            distrusted = distrusted_labels(self.search.store, SLOT_COLUMNS, self.distrust_confidence)
            if distrusted:
                bare |= np.isin(ids, np.fromiter(distrusted, np.int64))
        if bare.any():
            where = np.nonzero(bare)[0]
            probs = self.model.slot_probabilities(self._features(vectors[where], None if colours is None
                                                                 else colours[where]))
            best = probs.argmax(1)
            ok = (best < len(self.rules.slots)) & (probs.max(1) >= MIN_CLASSIFIER_CONFIDENCE)
            slots[np.nonzero(bare)[0]] = np.where(ok, best, -1)
        # In chunks: the image vectors plus colours of a whole catalog would be a large temporary copy.
        step = 8192
        general = np.concatenate([self.model.general_embeddings(self._features(
            vectors[i:i + step], None if colours is None else colours[i:i + step])) for i in range(0, len(ids), step)]
        ) if len(ids) else np.zeros((0, self.model.embed_dim), np.float32)
        slot_rows = {s: np.nonzero(slots == s)[0] for s in range(len(self.rules.slots))}
        log.info("outfits: %s, %d items in slots (%s)", name, int((slots >= 0).sum()),
                 ", ".join(f"{self.rules.slots[s]} {len(r)}" for s, r in slot_rows.items()))
        genders = np.array([str(r.get("gender") or "").lower() for r in rows], dtype=object)
        return _CatalogState(name, ids, {int(i): k for k, i in enumerate(ids)}, vectors, general, slots, ~bare,
                             genders, slot_rows)

    # ---- queries -----------------------------------------------------------------------------------------

    def for_item(self, item_id: int, filters: Mapping[str, Sequence[str]] | None = None,
                 per_slot: int | None = None) -> OutfitResult | None:
        """The look around a catalog item (itself excluded); None when the item is unknown or has no vector.

        Raises:
            FilterError: Unknown filter column.
            GenerationError: No index generation can be served.
        """
        state = self._current()
        row = state.row_of.get(int(item_id))
        if row is not None:
            general, slot, tagged = state.general[row], int(state.slots[row]), bool(state.tagged[row])
            gender = str(state.genders[row])
            features = None
        else:  # indexed after the served generation was built
            vector = self.search.store.get_vector(int(item_id), self.search.embedder.fingerprint)
            tax = item_taxonomy(self.search.store, [int(item_id)]).get(int(item_id))
            if vector is None or tax is None:
                return None
            features = self._features(vector, self._colours([int(item_id)]))
            general = self.model.general_embeddings(features)[0]
            slot, tagged = int(slots_from_taxonomy([tax], self.rules)[0]), has_taxonomy(tax)
            gender = str(tax.get("gender") or "").lower()
        confidence = None
        if not tagged:
            if features is None:
                features = self._features(state.vectors[row], self._colours([int(item_id)]))
            probs = self.model.slot_probabilities(features)[0]
            confidence = float(probs.max())
            if row is None:
                best = int(probs.argmax())
                slot = best if best < len(self.rules.slots) and confidence >= MIN_CLASSIFIER_CONFIDENCE else -1
        source = "taxonomy" if tagged else "classifier"
        if slot < 0:
            return OutfitResult(None, source, confidence, [], state.generation,
                                note="this item is not part of an outfit (no outfit slot fits its category)")
        return self._complete(state, general, slot, source, confidence, filters, per_slot, {int(item_id)}, gender)

    def for_image(self, image: Image.Image, crop: tuple[float, float, float, float] | None = None,
                  slot: str | None = None, filters: Mapping[str, Sequence[str]] | None = None,
                  per_slot: int | None = None) -> OutfitResult:
        """The look around a photo (optionally a crop of it); its slot comes from ``slot`` or the classifier.

        Raises:
            ImageDecodeError: A crop box smaller than a pixel.
            SlotRulesError: An unknown slot name.
            FilterError: Unknown filter column.
            GenerationError: No index generation can be served.
        """
        state = self._current()
        if crop is not None:
            image = crop_box(image, crop)
        colours = (colour_descriptor(image, self.model.colour_bins)[None, :] if self.model.colour_bins else None)
        features = self._features(self._embed([image])[0], colours)
        general = self.model.general_embeddings(features)[0]
        if slot is not None:
            return self._complete(state, general, self.rules.slot_index(slot), "client", None, filters, per_slot,
                                  set())
        probs = self.model.slot_probabilities(features)[0]
        real = probs[:len(self.rules.slots)]
        best = int(real.argmax())
        note = None
        if probs[-1] > real[best]:
            note = (f"the photo does not look like an outfit item ({NONE_SLOT}: {probs[-1]:.2f}); showing the look "
                    f"for its likeliest slot, {self.rules.slots[best]}")
        result = self._complete(state, general, best, "classifier", float(real[best]), filters, per_slot, set())
        result.note = note
        return result

    def _complete(self, state: _CatalogState, query_general: np.ndarray, slot: int, source: str,
                  confidence: float | None, filters: Mapping[str, Sequence[str]] | None, per_slot: int | None,
                  exclude: set[int], gender: str = "") -> OutfitResult:
        cfg = self.settings
        per_slot = per_slot or cfg.per_slot
        allowed = None
        if filters:
            allowed = np.isin(state.ids, self.search.store.filter_ids(filters))
        if cfg.match_gender and gender in GENDERED:
            same = (state.genders == gender) | (state.genders == "unisex")
            allowed = same if allowed is None else allowed & same
        if exclude:
            keep = ~np.isin(state.ids, np.fromiter(exclude, np.int64))
            allowed = keep if allowed is None else allowed & keep
        context: list[tuple[np.ndarray, int]] = [(query_general, slot)]
        out: list[OutfitSlot] = []
        name = self.rules.slots[slot]
        for target_name in self.rules.complementary(name):
            target = self.rules.slot_index(target_name)
            rows = state.slot_rows.get(target, np.zeros(0, np.int64))
            if allowed is not None:
                rows = rows[allowed[rows]]
            if len(rows) == 0:
                out.append(OutfitSlot(target_name, [], 0))
                continue
            cand = state.general[rows]
            compat = self._cosine(query_general, slot, cand, target)
            score = compat.copy()
            if len(context) > 1 and cfg.context_weight:
                score += cfg.context_weight * np.mean([self._cosine(g, s, cand, target) for g, s in context[1:]],
                                                      axis=0)
            hits = self._pick(state, rows, score, compat, per_slot)
            if hits:
                best_row = state.row_of[hits[0].id]
                context.append((state.general[best_row], target))
            out.append(OutfitSlot(target_name, hits, int(len(rows))))
        return OutfitResult(name, source, confidence, out, state.generation)

    def _cosine(self, general: np.ndarray, slot: int, cand: np.ndarray, target: int) -> np.ndarray:
        return 1.0 + self.model.compatibility(general, slot, cand, target) / 2.0

    def _pick(self, state: _CatalogState, rows: np.ndarray, score: np.ndarray, compat: np.ndarray,
              per_slot: int) -> list[Hit]:
        """Best candidates by score, hydrated from SQL (items removed since the generation drop out), then MMR."""
        m = min(len(rows), max(self.settings.candidates, per_slot))
        top = np.argpartition(-score, m - 1)[:m] if m < len(rows) else np.arange(len(rows))
        top = top[np.argsort(-score[top], kind="stable")]
        items = self.search.store.get_items(state.ids[rows[top]].tolist())
        top = np.array([t for t in top if int(state.ids[rows[t]]) in items], np.int64)
        if len(top) == 0:
            return []
        vec = state.vectors[rows[top]]
        picked = mmr_select(score[top], vec @ vec.T, per_slot, self.settings.mmr_lambda)
        hits = []
        for p in picked:
            t = top[p]
            item_id = int(state.ids[rows[t]])
            hits.append(Hit(item_id, float(compat[t]), items[item_id]))
        return hits
