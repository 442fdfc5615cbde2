"""`manage.py evaluate outfits`: compatibility AUC and fill-in-the-blank accuracy (Polyvore Outfits protocol).

Item vectors come from the store (items that are catalog items, e.g. PROXY outfits, looked up by catalog id
with the served model's fingerprint) or are embedded from ``<images root>/<item_id>.jpg`` (Polyvore's layout)
with the served embedder. The learned model, the visual-similarity baseline (cosine of image vectors) and, when
the items carry gender / usage / base_colour, the proxy's own rules (its ceiling) answer the same questions.
Exactly how each number is computed: engine/outfits/metrics.py and docs/outfits.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from engine.colour import with_colour
from engine.outfits.model import OutfitModel, model_pair_scorer
from engine.outfits.training import OutfitQuestions
from indexer.catalog.images import ImageDecodeError, decode_image
from indexer.outfits.colours import image_colours
from indexer.outfits.polyvore import OutfitDataset
from indexer.outfits.proxy import rule_pair_scores
from indexer.outfits.slots import SlotRules
from indexer.outfits.training import baseline_scorers
from indexer.store.catalog_store import Store
from indexer.store.tables import STATUS_ACTIVE, CatalogItem, ItemEmbedding

PROXY_LABEL = "PROXY outfits derived from catalog taxonomy (not real outfits)"


@dataclass
class OutfitEvaluation:
    """Scores of every scorer on the same questions, and what was left out."""

    dataset: str
    proxy: bool
    n_compatibility: int
    n_fitb: int
    scores: dict[str, dict[str, float]]
    dropped_questions: int = 0
    missing_items: list[str] = field(default_factory=list)
    checkpoint: str = ""
    fingerprint: str = ""

    def as_dict(self) -> dict[str, Any]:
        model = self.scores.get("model", {})
        return {
            "dataset": self.dataset, "proxy": self.proxy, "label": PROXY_LABEL if self.proxy else "",
            "auc": model.get("auc"), "fitb": model.get("fitb"),
            "n_compatibility": self.n_compatibility, "n_fitb": self.n_fitb,
            "dropped_questions": self.dropped_questions, "missing_items": self.missing_items[:20],
            "n_missing_items": len(self.missing_items),
            **{name: {k: v for k, v in s.items() if not k.startswith("n_")} for name, s in self.scores.items()},
            "checkpoint": self.checkpoint, "fingerprint": self.fingerprint,
        }


def catalog_vectors(store: Store, fingerprint: str, external_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """{catalog id: vector} of active catalog items embedded with ``fingerprint`` (ids not found are absent)."""
    out: dict[str, np.ndarray] = {}
    wanted = list(dict.fromkeys(str(e) for e in external_ids))
    with store.sessions() as s:
        for start in range(0, len(wanted), 5000):
            stmt = (select(CatalogItem.external_id, ItemEmbedding.vector)
                    .join(ItemEmbedding, ItemEmbedding.item_id == CatalogItem.id)
                    .where(CatalogItem.status == STATUS_ACTIVE, ItemEmbedding.fingerprint == fingerprint,
                           CatalogItem.external_id.in_(wanted[start:start + 5000])))
            for ext, blob in s.execute(stmt):
                out[str(ext)] = np.frombuffer(blob, dtype="<f4").astype(np.float32)
    return out


def embed_item_images(embedder, item_ids: Sequence[str], images_root: Path, max_pixels: int,
                      batch: int = 64) -> dict[str, np.ndarray]:
    """{item id: vector} for ``<images_root>/<id>.jpg`` files that exist and decode (others are absent)."""
    out: dict[str, np.ndarray] = {}
    pending: list[tuple[str, Any]] = []

    def flush() -> None:
        if pending:
            vecs = embedder.embed_images([img for _, img in pending])
            out.update({i: v for (i, _), v in zip(pending, vecs, strict=True)})
            pending.clear()

    for item_id in item_ids:
        path = images_root / f"{item_id}.jpg"
        try:
            pending.append((item_id, decode_image(path.read_bytes(), max_pixels)))
        except (OSError, ImageDecodeError):
            continue
        if len(pending) >= batch:
            flush()
    flush()
    return out


def item_slots(ds: OutfitDataset, rules: SlotRules, category_map: Mapping[str, str]) -> dict[str, int]:
    """{item id: slot id} from each item's semantic_category (a slot name, or a category in ``category_map``)."""
    out = {}
    for item_id, meta in ds.items.items():
        cat = str(meta.get("semantic_category", "")).strip()
        slot = cat if cat in rules.slots else category_map.get(cat.lower())
        if slot is not None:
            out[item_id] = rules.slots.index(slot)
    return out


def item_colours(store: Store, item_ids: Sequence[str], bins: int, images_root: Path | None,
                 max_pixels: int = 40_000_000) -> dict[str, np.ndarray]:
    """Colour descriptors of dataset items: catalog items from their stored image, others from
    ``<images_root>/<item_id>.jpg`` (zeros when neither exists)."""
    wanted = list(dict.fromkeys(str(i) for i in item_ids))
    paths: dict[str, str] = {}
    with store.sessions() as s:
        for start in range(0, len(wanted), 5000):
            stmt = select(CatalogItem.external_id, CatalogItem.image_path).where(
                CatalogItem.status == STATUS_ACTIVE, CatalogItem.external_id.in_(wanted[start:start + 5000]))
            paths.update({str(e): p for e, p in s.execute(stmt)})
    files = [paths.get(i) or (str(images_root / f"{i}.jpg") if images_root else None) for i in wanted]
    return dict(zip(wanted, image_colours(files, bins, max_pixels), strict=True))


def evaluate_outfit_dataset(ds: OutfitDataset, vectors: Mapping[str, np.ndarray], slots: Mapping[str, int],
                            model: OutfitModel, dataset: str = "",
                            colours: Mapping[str, np.ndarray] | None = None) -> OutfitEvaluation:
    """Score the dataset's questions with the learned model, the similarity baselines and (if possible) the rules.

    Questions naming an item without a vector or a slot are dropped (and counted). ``colours`` (item id ->
    descriptor) is required when the model uses colour descriptors.
    """
    if model.colour_bins and colours is None:
        raise ValueError("this outfit model uses colour descriptors: pass the items' colours")
    usable = [i for i in ds.items if i in vectors and i in slots]
    row = {i: k for k, i in enumerate(usable)}
    q = OutfitQuestions()
    dropped = 0
    for label, items in ds.compatibility:
        if all(i in row for i in items):
            q.compat_outfits.append([row[i] for i in items])
            q.compat_labels.append(label)
        else:
            dropped += 1
    for f in ds.fitb:
        if all(i in row for i in (*f.items, *f.answers)):
            q.fitb_items.append([row[i] for i in f.items])
            q.fitb_answers.append([row[i] for i in f.answers])
            q.fitb_correct.append(f.correct)
        else:
            dropped += 1
    dim = model.in_dim
    v = np.stack([vectors[i] for i in usable]) if usable else np.zeros((0, dim), np.float32)
    slot_ids = np.array([slots[i] for i in usable], np.int64)
    c = np.stack([colours[i] for i in usable]) if (colours is not None and usable) else None
    features = with_colour(v, c) if model.colour_bins else v
    scorers: dict[str, Callable] = {"model": model_pair_scorer(model, model.general_embeddings(features), slot_ids),
                                    **baseline_scorers(v, c)}
    if usable and all({"gender", "usage", "base_colour"} <= set(ds.items[i]) for i in usable):
        scorers["taxonomy_rules_ceiling"] = rule_pair_scores(ds.items, usable)
    scores = {name: q.evaluate(scorer) for name, scorer in scorers.items()}
    missing = sorted(i for i in ds.items if i not in vectors)
    return OutfitEvaluation(dataset, ds.proxy, len(q.compat_outfits), len(q.fitb_items), scores, dropped, missing)


def format_evaluation(ev: OutfitEvaluation, echo: Callable[[str], None]) -> None:
    """Human-readable report (PROXY datasets say so on every line that reports a number)."""
    tag = "PROXY " if ev.proxy else ""
    echo(f"{tag}outfit evaluation: {ev.dataset}")
    if ev.proxy:
        echo(f"  {PROXY_LABEL}")
    echo(f"  questions: {ev.n_compatibility} compatibility, {ev.n_fitb} fill-in-the-blank"
         + (f"; {ev.dropped_questions} dropped ({len(ev.missing_items)} items without vectors)"
            if ev.dropped_questions else ""))
    names = {"model": "learned (type-aware)", "visual_baseline": "visual similarity only",
             "visual_colour_baseline": "visual + colour similarity",
             "taxonomy_rules_ceiling": "proxy rules on taxonomy (ceiling)"}
    for key, s in ev.scores.items():
        auc = f"{s['auc']:.4f}" if "auc" in s else "  -   "
        fitb = f"{s['fitb']:.4f}" if "fitb" in s else "  -   "
        echo(f"  {tag}{names.get(key, key):<36} AUC {auc}   FITB {fitb}")
