"""`manage.py train-text`: the text tower's data and recipe (the loop is engine/train/text.py).

Text per train-split product: its title, plus captions made from its taxonomy (gender, article type, colour, usage,
sub and master category) in several phrasings, with words dropped and reordered. Targets: the served image model's
vectors of the same products, read once from the SQL store (the vectors the index was built from) and cached under
``text.cache_dir`` keyed by the image model's fingerprint; the image model itself stays locked (LiT). Products of the
val split pick the best epoch (title -> image MRR@10 and label precision@1); test products are never looked at.

May import: engine/, indexer.catalog, indexer.settings, and indexer.store lazily for the one read of the served
vectors (SQLAlchemy only: no faiss, so it still runs on bare boxes that have the database file).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.files import write_atomically
from engine.models.text_tower import TextTower, TextTowerConfig, TextVocabulary, save_text_tower
from engine.text_metrics import label_precision, title_retrieval, top_k_exact
from engine.train.text import TextTrainConfig, train_text
from indexer.catalog.source import CatalogRow, iter_catalog, open_catalog
from indexer.catalog.splits import assign_splits, read_splits

CAPTION_FIELDS = ("gender", "master_category", "sub_category", "article_type", "base_colour", "usage")
# Phrasings of a product's taxonomy; a template is used only when every field it names is present.
CAPTION_TEMPLATES = (
    "{article_type}", "{base_colour}", "{sub_category}", "{master_category}",
    "{base_colour} {article_type}", "{gender} {article_type}", "{gender} {base_colour} {article_type}",
    "{article_type} for {gender}", "{base_colour} {article_type} for {gender}", "{article_type} in {base_colour}",
    "{usage} {article_type}", "{usage} {base_colour} {article_type} for {gender}", "{gender}'s {article_type}",
    "{base_colour} {sub_category}", "{gender} {sub_category}", "{article_type} for {usage} wear",
    "{base_colour} {usage} {article_type}", "{gender} {usage} {sub_category} in {base_colour}",
)


@dataclass(frozen=True)
class ProductText:
    """A catalog product's text: id, title and taxonomy."""

    external_id: str
    title: str
    taxonomy: dict[str, str]


def load_products(catalog: str | os.PathLike, images_root: str | os.PathLike | None = None) -> list[ProductText]:
    """Every readable row of a catalog as (id, title, non-empty taxonomy values)."""
    out = []
    for row in iter_catalog(open_catalog(catalog, images_root)):
        if isinstance(row, CatalogRow):
            tax = {k: str(v).strip() for k, v in row.taxonomy.items() if k in CAPTION_FIELDS and v and str(v).strip()}
            out.append(ProductText(row.external_id, (row.title or "").strip(), tax))
    return out


def captions(product: ProductText) -> list[str]:
    """The product's taxonomy in every phrasing whose fields it has (duplicates removed, order kept)."""
    out: list[str] = []
    for template in CAPTION_TEMPLATES:
        try:
            text = template.format(**product.taxonomy)
        except KeyError:
            continue
        if text not in out:
            out.append(text)
    return out


def augment(text: str, rng: np.random.Generator, drop: float = 0.15, reorder: float = 0.25) -> str:
    """Drop each word with probability ``drop`` (one word always stays) and, with probability ``reorder``, shuffle
    the words: shoppers type fragments, in any order."""
    words = text.split()
    if len(words) > 2:
        kept = [w for w in words if rng.random() >= drop]
        words = kept or [words[int(rng.integers(len(words)))]]
    if len(words) > 1 and rng.random() < reorder:
        words = [words[i] for i in rng.permutation(len(words))]
    return " ".join(words)


class TextSampler:
    """One training text per product index: the title (augmented half the time) or a caption (augmented)."""

    def __init__(self, products: Sequence[ProductText], title_share: float = 0.5) -> None:
        self.titles = [p.title or (captions(p) or [""])[0] for p in products]
        self.captions = [captions(p) or [self.titles[i]] for i, p in enumerate(products)]
        self.title_share = title_share

    def __call__(self, indices: np.ndarray, rng: np.random.Generator) -> list[str]:
        out = []
        for i in indices:
            if rng.random() < self.title_share:
                title = self.titles[i]
                out.append(augment(title, rng) if rng.random() < 0.5 else title)
            else:
                options = self.captions[i]
                out.append(augment(options[int(rng.integers(len(options)))], rng, drop=0.1))
        return out


# ---- the served image vectors (targets) ------------------------------------------------------------------------

def served_vectors(settings, fingerprint: str, cache_dir: Path, echo: Callable[[str], None] = print  # noqa: ANN001
                   ) -> tuple[list[str], np.ndarray]:
    """(external ids, unit vectors) of every catalog item embedded by the served model (this fingerprint).

    Read from the SQL store once and cached as ``<cache_dir>/vectors-<fingerprint>.npz``.

    Raises:
        ValueError: the store holds no vectors of this model (index the catalog first).
    """
    path = cache_dir / f"vectors-{fingerprint}.npz"
    if path.is_file():
        data = np.load(path, allow_pickle=False)
        return [str(x) for x in data["external_ids"]], data["vectors"].astype(np.float32)
    from indexer.store.catalog_store import Store  # the one read of the served vectors (SQLAlchemy, no faiss)

    store = Store.from_url(settings.database_url, settings.database.busy_timeout_s)
    try:
        ids, _, vectors = store.load_vectors(fingerprint)
        items = store.get_items([int(i) for i in ids]) if len(ids) else {}
    finally:
        store.close()
    if not len(ids):
        raise ValueError(f"the database holds no vectors of the served image model {fingerprint}: "
                         "run `python manage.py index` first (train-text learns to write into that model's space)")
    external = [str(items[int(i)]["external_id"]) for i in ids if int(i) in items]
    vectors = np.stack([v for i, v in zip(ids, vectors, strict=True) if int(i) in items]).astype(np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)

    def write(f) -> None:  # noqa: ANN001
        np.savez(f, external_ids=np.asarray(external), vectors=vectors)

    write_atomically(path, write)
    echo(f"cached {len(external)} served vectors of {fingerprint} in {path}")
    return external, vectors


# ---- the job --------------------------------------------------------------------------------------------------

@dataclass
class TextTrainOptions:
    """Where train-text reads and writes."""

    catalog: Path
    out: Path
    work_dir: Path
    splits: Path | None
    image_fingerprint: str
    images_root: Path | None = None
    tower: dict[str, int] = field(default_factory=dict)  # TextTowerConfig overrides (width, layers, ...)
    device: str = "cpu"
    resume: bool = False
    progress: bool = True
    command: str = ""


def split_products(products: Sequence[ProductText], splits_file: Path | None) -> dict[str, str]:
    """{external id: split} from the image model's splits file (so test products are unseen by both towers)."""
    assignment = read_splits(splits_file) if splits_file and splits_file.is_file() else {}
    missing = [p.external_id for p in products if p.external_id not in assignment]
    assignment.update(assign_splits(missing))
    return assignment


def make_validator(products: Sequence[ProductText], vectors: np.ndarray, split: dict[str, str],
                   vocab: TextVocabulary, context_length: int, device: str = "cpu"
                   ) -> Callable[[TextTower], dict[str, float]]:
    """Val-split metrics of a tower: title -> image over the whole catalog (MRR@10, recall@10) and article type /
    colour -> product precision@1 over the val products; ``score`` is their mean."""
    val = [i for i, p in enumerate(products) if split.get(p.external_id) == "val"]
    titles = sorted({products[i].title for i in val if products[i].title})
    gallery_titles = [p.title for p in products]
    val_vectors = vectors[val]

    def encode(tower: TextTower, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, vectors.shape[1]), np.float32)
        with torch.inference_mode():
            return torch.cat([tower(vocab.encode(texts[s:s + 512], context_length).to(device)).float().cpu()
                              for s in range(0, len(texts), 512)]).numpy()

    def validate(tower: TextTower) -> dict[str, float]:
        out: dict[str, float] = {}
        if not titles:
            return out  # no val products: every epoch counts as the best so far
        ranked = top_k_exact(encode(tower, titles), vectors, 10)
        title = title_retrieval(ranked, titles, gallery_titles)
        out.update({"val_title_mrr@10": round(title["mrr@10"], 4), "val_title_recall@10": round(title["recall@10"], 4)})
        for column in ("article_type", "base_colour"):
            labels = [products[i].taxonomy.get(column) for i in val]
            queries = sorted({x for x in labels if x})
            if not queries:
                continue
            ranked = top_k_exact(encode(tower, queries), val_vectors, 10)
            out[f"val_{column}_p@1"] = round(label_precision(ranked, queries, labels, (1,))["precision@1"], 4)
        out["score"] = round(float(np.mean(list(out.values()))), 4)
        return out

    return validate


def train_text_from_catalog(settings, opts: TextTrainOptions, cfg: TextTrainConfig,  # noqa: ANN001
                            echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train the text tower for the served image model and write ``opts.out`` (+ manifest). Returns the manifest."""
    t0 = time.perf_counter()
    products = load_products(opts.catalog, opts.images_root)
    external, vectors = served_vectors(settings, opts.image_fingerprint, opts.work_dir, echo)
    row_of = {e: n for n, e in enumerate(external)}
    products = [p for p in products if p.external_id in row_of]
    if len(products) < 2:
        raise ValueError(f"only {len(products)} catalog product(s) have a served vector: index the catalog first")
    vectors = vectors[[row_of[p.external_id] for p in products]]
    split = split_products(products, opts.splits)
    train = [i for i, p in enumerate(products) if split.get(p.external_id) == "train"]
    sampler = TextSampler([products[i] for i in train])
    vocab = TextVocabulary.from_texts([t for i in train for t in (products[i].title, *captions(products[i]))])
    config = TextTowerConfig(dim=int(vectors.shape[1]), **opts.tower)
    tower = TextTower(config, vocab.size)
    validate = make_validator(products, vectors, split, vocab, config.context_length, opts.device)
    counts = {s: sum(1 for p in products if split.get(p.external_id) == s) for s in ("train", "val", "test")}
    echo(f"train-text: {counts['train']} train products ({counts['val']} val pick the epoch; {counts['test']} test "
         f"never seen), vocabulary {vocab.size} tokens, tower {sum(p.numel() for p in tower.parameters()):,} "
         f"parameters, image model {opts.image_fingerprint}")
    best: dict[str, Any] = {}

    def on_best(t: TextTower, record: dict[str, Any]) -> None:
        best.update(record)
        meta = {"image_fingerprint": opts.image_fingerprint, "epoch": record["epoch"],
                "val": {k: v for k, v in record.items() if k.startswith("val_")}, "train": asdict(cfg),
                "products": counts, "catalog": str(opts.catalog), "command": opts.command}
        save_text_tower(opts.out, t, vocab, meta)

    history = train_text(tower, vocab, vectors[train], lambda idx, rng: sampler(idx, rng), cfg,
                         state_file=opts.work_dir / f"state-{opts.image_fingerprint}.pt", resume=opts.resume,
                         validate=validate, on_best=on_best, device=opts.device, progress=opts.progress)
    manifest = json.loads(Path(f"{opts.out}.json").read_text())
    history_file = opts.work_dir / f"history-{opts.image_fingerprint}.json"
    text = json.dumps(history, indent=1) + "\n"
    write_atomically(history_file, lambda f: f.write(text.encode()))
    echo(f"wrote {opts.out} ({manifest['bytes'] / 1e6:.1f} MB, best epoch {best.get('epoch')}: "
         f"{json.dumps(manifest['meta']['val'])}) in {time.perf_counter() - t0:.0f} s")
    return manifest
