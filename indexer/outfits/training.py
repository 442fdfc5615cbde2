"""`manage.py train-outfits`: proxy outfits from the catalog taxonomy -> outfit model checkpoint with a manifest.

Data: the catalog's stored image vectors (model fingerprint of the served embedder), split by product id (the
training splits file when given, else ``indexer.catalog.splits.assign_splits`` with the same defaults: seeded sha256 of
the id, 15% test, 5% val). PROXY outfits are built from the train products only (validation outfits from val
products pick the best epoch); the test products' proxy outfits are held out for the reported numbers, and the
slot classifier's accuracy is measured on test products.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.colour import with_colour
from engine.outfits.model import OutfitModel, cosine_pair_scorer, model_pair_scorer, save_outfit_model
from engine.outfits.training import (
    CompatConfig,
    OutfitQuestions,
    SlotConfig,
    config_dict,
    slot_accuracy,
    train_compatibility,
    train_slot_classifier,
)
from indexer.catalog.splits import (
    DEFAULT_SEED,
    DEFAULT_TEST_FRACTION,
    DEFAULT_VAL_FRACTION,
    assign_splits,
    read_splits,
)
from indexer.outfits.catalog import OutfitCatalog
from indexer.outfits.polyvore import OutfitDataset, write_dataset
from indexer.outfits.proxy import SPLIT_SEED_OFFSET, build_proxy_dataset, products_from_rows, rule_pair_scores
from indexer.outfits.slots import SlotRules


@dataclass(frozen=True)
class OutfitTrainOptions:
    """What to train on and where to write."""

    out: Path
    splits_file: Path | None = None
    val_fraction: float = DEFAULT_VAL_FRACTION
    test_fraction: float = DEFAULT_TEST_FRACTION
    split_seed: int = DEFAULT_SEED
    train_outfits: int = 30000
    val_outfits: int = 1000
    test_outfits: int = 3000
    proxy_seed: int = 0
    proxy_dir: Path | None = None
    colour_bins: int = 8
    command: str = ""


def product_splits(catalog: OutfitCatalog, opts: OutfitTrainOptions) -> tuple[dict[str, str], str]:
    """{external id: split} and a description of where the split came from."""
    if opts.splits_file is not None:
        splits = read_splits(opts.splits_file)
        return ({e: splits.get(e, "train") for e in catalog.external_ids},
                f"splits file {opts.splits_file} (products missing from it count as train)")
    return (assign_splits(catalog.external_ids, opts.val_fraction, opts.test_fraction, opts.split_seed),
            f"indexer.catalog.splits.assign_splits(val={opts.val_fraction}, test={opts.test_fraction}, "
            f"seed={opts.split_seed})")


def questions_in_rows(ds: OutfitDataset, row_of: dict[str, int]) -> OutfitQuestions:
    """A dataset's questions as rows of the vectors array (questions naming unknown items are dropped)."""
    q = OutfitQuestions()
    for label, items in ds.compatibility:
        if all(i in row_of for i in items):
            q.compat_outfits.append([row_of[i] for i in items])
            q.compat_labels.append(label)
    for f in ds.fitb:
        if all(i in row_of for i in (*f.items, *f.answers)):
            q.fitb_items.append([row_of[i] for i in f.items])
            q.fitb_answers.append([row_of[i] for i in f.answers])
            q.fitb_correct.append(f.correct)
    return q


def proxy_datasets(catalog: OutfitCatalog, rules: SlotRules, splits: dict[str, str],
                   opts: OutfitTrainOptions) -> dict[str, OutfitDataset]:
    """PROXY train / val / test outfit datasets, each built from its own split's products."""
    rows = [{"id": e, **t} for e, t in zip(catalog.external_ids, catalog.taxonomy, strict=True)]
    sizes = {"train": opts.train_outfits, "val": opts.val_outfits, "test": opts.test_outfits}
    return {split: build_proxy_dataset(products_from_rows([r for r in rows if splits[r["id"]] == split], rules),
                                       rules, split, n, opts.proxy_seed + SPLIT_SEED_OFFSET[split])
            for split, n in sizes.items()}


def _digest(catalog: OutfitCatalog) -> str:
    h = hashlib.sha256()
    h.update(catalog.ids.astype("<i8").tobytes())
    h.update(np.ascontiguousarray(catalog.features, "<f4").tobytes())
    return h.hexdigest()[:16]


def baseline_scorers(vectors: np.ndarray, colours: np.ndarray | None) -> dict[str, Any]:
    """Similarity-only baselines: cosine of the image vectors; and, when colour descriptors are used, cosine of
    image vector + colour descriptor (each unit-norm, so they weigh the same)."""
    out = {"visual_baseline": cosine_pair_scorer(vectors)}
    if colours is not None:
        out["visual_colour_baseline"] = cosine_pair_scorer(with_colour(vectors, colours))
    return out


def evaluate_scorers(ds: OutfitDataset, catalog: OutfitCatalog, model: OutfitModel) -> dict[str, dict[str, float]]:
    """Learned model, similarity-only baselines and the proxy's own rules (its ceiling) on the same questions."""
    row_of = catalog.rows_of(list(ds.items))
    q = questions_in_rows(ds, row_of)
    general = model.general_embeddings(catalog.features)
    meta = {e: t for e, t in zip(catalog.external_ids, catalog.taxonomy, strict=True)}
    scores = {"model": q.evaluate(model_pair_scorer(model, general, catalog.slots))}
    scores.update({k: q.evaluate(v) for k, v in baseline_scorers(catalog.vectors, catalog.colours).items()})
    scores["taxonomy_rules_ceiling"] = q.evaluate(rule_pair_scores(meta, catalog.external_ids))
    return scores


def train_outfit_model(catalog: OutfitCatalog, rules: SlotRules, fingerprint: str, opts: OutfitTrainOptions,
                       compat_cfg: CompatConfig, slot_cfg: SlotConfig, embedder_info: dict[str, Any] | None = None,
                       echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train the compatibility model and slot classifier on PROXY outfits; write the checkpoint + manifest.

    Returns:
        The manifest written beside the checkpoint (its ``meta.metrics`` hold the held-out test numbers).

    Raises:
        ValueError: Too few products to build outfits.
    """
    t0 = time.time()
    splits, split_source = product_splits(catalog, opts)
    datasets = proxy_datasets(catalog, rules, splits, opts)
    for name, ds in datasets.items():
        echo(f"PROXY {name}: {len(ds.outfits)} outfits, {len(ds.compatibility)} compatibility and "
             f"{len(ds.fitb)} fill-in-the-blank questions")
        if opts.proxy_dir is not None:
            write_dataset(opts.proxy_dir, name, ds)
    if len(datasets["train"].outfits) == 0:
        raise ValueError("no proxy outfits could be built from the train products: index a catalog with "
                         "taxonomy (gender, usage, base_colour and the slot columns)")
    split_arr = np.array([splits[e] for e in catalog.external_ids])
    train_slots = np.where(split_arr == "train", catalog.slots, -1)
    row_of_train = catalog.rows_of(list(datasets["train"].items))
    train_outfits = [[row_of_train[i] for i in items] for items in datasets["train"].outfits.values()]
    val_q = questions_in_rows(datasets["val"], catalog.rows_of(list(datasets["val"].items)))
    features = catalog.features
    colour_bins = opts.colour_bins if catalog.colours is not None else 0
    model, history = train_compatibility(
        features, train_slots, len(rules.slots), rules.slots, train_outfits,
        val_q if val_q.fitb_items or val_q.compat_outfits else None, compat_cfg,
        model=OutfitModel(features.shape[1], rules.slots, compat_cfg.embed_dim, compat_cfg.hidden,
                          slot_cfg.hidden, compat_cfg.dropout, colour_bins),
        on_epoch=lambda r: echo(r.line(compat_cfg.epochs)))
    labels = np.where(catalog.slots >= 0, catalog.slots, len(rules.slots))
    train_mask = split_arr == "train"
    train_slot_classifier(model, features[train_mask], labels[train_mask], slot_cfg)
    test_mask = split_arr == "test"
    metrics = {"slot_classifier_test": slot_accuracy(model, features[test_mask], labels[test_mask])}
    if datasets["test"].outfits:
        metrics["proxy_test"] = evaluate_scorers(datasets["test"], catalog, model)
    meta = {
        "fingerprint": fingerprint, "dim": int(catalog.vectors.shape[1]), "embedder": embedder_info or {},
        "proxy": True, "trained_on": "PROXY outfits derived from catalog taxonomy (no real outfits)",
        "slots": list(rules.slots), "templates": ["+".join(t) for t in rules.templates],
        "slot_rules": [f"{r.slot}: " + "; ".join(f"{c.column}{'!=' if c.negated else '='}{'|'.join(sorted(c.values))}"
                                                 for c in r.conditions) for r in rules.rules],
        "data": {"items": int(len(catalog.ids)), "features_sha256_16": _digest(catalog), "split_source": split_source,
                 "colour_bins": colour_bins,
                 "proxy": {k: ds.manifest for k, ds in datasets.items()}},
        "compat_config": config_dict(compat_cfg), "slot_config": config_dict(slot_cfg),
        "history": [{"epoch": r.epoch, "loss": round(r.loss, 5), "val": r.val} for r in history],
        "metrics": metrics, "command": opts.command, "seconds": round(time.time() - t0, 1),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    manifest = save_outfit_model(opts.out, model, meta)
    echo(f"wrote {opts.out} ({manifest['bytes'] / 1e6:.1f} MB); held-out PROXY test: "
         + json.dumps(metrics.get("proxy_test", {}), sort_keys=True))
    echo(f"slot classifier on test products: accuracy {metrics['slot_classifier_test'].get('accuracy', 0):.4f}")
    return manifest
