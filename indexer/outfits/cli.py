"""`manage.py outfit | make-outfits | train-outfits | evaluate outfits`: complete the look from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from indexer.cli_support import (
    command_line,
    parse_filters,
    set_threads,
    with_settings,
)
from indexer.settings import Settings


@click.command("outfit")
@click.argument("image_or_id")
@click.option("--per-slot", default=None, type=click.IntRange(1, 100), help="Items per slot (default outfit.per_slot).")
@click.option("--filter", "filters", multiple=True, help="column=value, applied inside the search; repeat for more.")
@click.option("--crop", default=None, help="x0,y0,x1,y1 fractions: use only this box of the photo.")
@click.option("--slot", default=None, help="The photo's slot (default: the slot classifier decides).")
@click.option("--json", "as_json", is_flag=True)
@with_settings
def outfit_cmd(settings: Settings, image_or_id: str, per_slot: int | None, filters: tuple[str, ...],
               crop: str | None, slot: str | None, as_json: bool) -> None:
    """Complete the look around a photo (IMAGE file) or a catalog item (its catalog ID)."""
    from indexer.catalog.images import decode_image
    from indexer.embedders import create_embedder_from_settings
    from indexer.outfits.wiring import create_outfit_service
    from indexer.wiring import create_search_service, open_store

    store = open_store(settings)
    image, item, box = None, None, None
    if Path(image_or_id).is_file():
        box = tuple(float(v) for v in crop.split(",")) if crop else None
        if box is not None and len(box) != 4:
            raise ValueError(f"--crop must be four numbers x0,y0,x1,y1, got {crop!r}")
        image = decode_image(Path(image_or_id).read_bytes(), settings.web.max_image_pixels,
                             settings.web.decode_min_side)
    else:
        item = store.get_item_by_external_id(image_or_id)
        if item is None:
            raise ValueError(f"{image_or_id!r} is neither an image file nor a catalog id")
    service = create_outfit_service(settings, create_search_service(settings, store,
                                                                     create_embedder_from_settings(settings)))
    if image is not None:
        result = service.for_image(image, box, slot, parse_filters(filters) or None, per_slot)  # type: ignore[arg-type]
    else:
        result = service.for_item(item["id"], parse_filters(filters) or None, per_slot)  # type: ignore[index]
        if result is None:
            raise ValueError(f"item {image_or_id} has no embedding from the current model yet: run `manage.py index`")
    if as_json:
        body = {"query": image_or_id, **result.as_dict(),
                "model": {"proxy": service.proxy_trained, "trained_on": service.meta.get("trained_on", "")}}
        click.echo(json.dumps(body, indent=2))
        return
    source = f"{result.slot_source}" + (f", {result.slot_confidence:.2f}" if result.slot_confidence is not None else "")
    click.echo(f"query slot: {result.query_slot or '-'} ({source})"
               + ("   [model trained on PROXY outfits]" if service.proxy_trained else ""))
    if result.note:
        click.echo(f"note: {result.note}")
    for s in result.slots:
        click.echo(f"{s.slot} ({s.candidates} candidates)")
        for rank, h in enumerate(s.hits, 1):
            click.echo(f"  {rank}. {h.score:.3f}  {h.item['external_id']:>10}  {h.item['title']}  "
                       f"[{h.item.get('article_type') or '-'}, {h.item.get('base_colour') or '-'}]")
        if not s.hits:
            click.echo("  (no item passes the filters)")


@click.command("make-outfits")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--catalog", default=None, help="Catalog CSV (default: catalog.default_csv).")
@click.option("--splits", "splits_file", type=click.Path(dir_okay=False, exists=True),
              help="id,split file (default: indexer.catalog.splits defaults, as train-outfits).")
@click.option("--split", "split_names", multiple=True, default=("test",), show_default=True,
              type=click.Choice(["train", "val", "test"]))
@click.option("--outfits", "n_outfits", default=3000, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=int)
@with_settings
def make_outfits_cmd(settings: Settings, out_dir: str, catalog: str | None, splits_file: str | None,
                     split_names: tuple[str, ...], n_outfits: int, seed: int) -> None:
    """Write PROXY outfits (from catalog taxonomy) + questions in the Polyvore Outfits layout."""
    from indexer.outfits.wiring import make_proxy_outfit_files

    written = make_proxy_outfit_files(settings, out_dir, split_names, catalog, splits_file, n_outfits, seed)
    for split, paths in written.items():
        click.echo(f"PROXY {split}: {paths['outfits']}  questions: {paths['compatibility']} {paths['fitb']}")


@click.command("train-outfits")
@click.option("--out", default=None,
              help="Checkpoint file, or a folder for <fingerprint>.pt (default: outfit.checkpoint).")
@click.option("--splits", "splits_file", default=None, type=click.Path(dir_okay=False, exists=True),
              help="id,split file (default: indexer.catalog.splits defaults, seeded by product id).")
@click.option("--train-outfits", default=30000, show_default=True, type=click.IntRange(1))
@click.option("--val-outfits", default=1000, show_default=True, type=click.IntRange(0))
@click.option("--test-outfits", default=3000, show_default=True, type=click.IntRange(0))
@click.option("--proxy-seed", default=0, show_default=True, type=int)
@click.option("--proxy-dir", default=None,
              help="Also write the PROXY datasets here, Polyvore layout (default <outfit.cache_dir>/proxy; '' = no).")
@click.option("--colour-bins", default=8, show_default=True, type=click.IntRange(0, 16),
              help="Colour descriptor bins per channel appended to the image vectors (0 = image vectors only).")
@click.option("--epochs", default=None, type=click.IntRange(1))
@click.option("--embed-dim", default=None, type=click.IntRange(1))
@click.option("--hidden", default=None, type=click.IntRange(0))
@click.option("--dropout", default=None, type=click.FloatRange(0, 0.95))
@click.option("--margin", default=None, type=float)
@click.option("--lr", default=None, type=float)
@click.option("--batch-size", default=None, type=click.IntRange(2))
@click.option("--slot-epochs", default=None, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1),
              help="torch CPU threads (small matrices: more threads pay off only on idle cores; measured 5x slower "
                   "with 2 threads on a busy 2-core machine).")
@click.option("--if-stale", is_flag=True,
              help="Do nothing when the checkpoint already fits the configured model and slots (make run).")
@with_settings
def train_outfits_cmd(settings: Settings, out: str | None, splits_file: str | None, train_outfits: int,
                      val_outfits: int, test_outfits: int, proxy_seed: int, proxy_dir: str | None, colour_bins: int,
                      slot_epochs: int | None, seed: int, threads: int, if_stale: bool, **hyper: Any) -> None:
    """Train the outfit model (type-aware compatibility + slot classifier) on PROXY outfits of the indexed
    catalog's train products; report held-out test numbers; write the checkpoint outfit.checkpoint points at.
    Hyper-parameters left out take engine.outfits.training.CompatConfig's defaults."""
    import dataclasses

    from engine.outfits.training import CompatConfig, SlotConfig
    from indexer.embedders import create_embedder_from_settings
    from indexer.outfits.training import OutfitTrainOptions
    from indexer.outfits.wiring import outfit_checkpoint, outfit_model_status
    from indexer.outfits.wiring import train_outfits as run_training
    from indexer.wiring import open_store

    set_threads(threads)
    embedder = create_embedder_from_settings(settings)
    if if_stale:
        current, why = outfit_model_status(settings, embedder, out)
        click.echo(("outfit model is current: " if current else "retraining the outfit model: ") + why)
        if current:
            return
    opts = OutfitTrainOptions(
        out=outfit_checkpoint(settings, embedder.fingerprint, out),
        splits_file=Path(splits_file) if splits_file else None,
        train_outfits=train_outfits, val_outfits=val_outfits, test_outfits=test_outfits, proxy_seed=proxy_seed,
        proxy_dir=(settings.resolve_path(settings.outfit.cache_dir) / "proxy" if proxy_dir is None
                   else settings.resolve_path(proxy_dir) if proxy_dir else None),
        colour_bins=colour_bins, command=command_line())
    compat = CompatConfig(**{k: v for k, v in hyper.items() if v is not None}, seed=seed)
    slot = dataclasses.replace(SlotConfig(), seed=seed, **({"epochs": slot_epochs} if slot_epochs else {}))
    run_training(settings, open_store(settings), embedder, opts, compat, slot, echo=click.echo)


@click.command("outfits")
@click.option("--outfits", "outfits_file", required=True, type=click.Path(dir_okay=False, exists=True),
              help="Outfits JSON (Polyvore Outfits format, e.g. disjoint/test.json or make-outfits' test.json).")
@click.option("--questions", "question_files", required=True, multiple=True,
              type=click.Path(dir_okay=False, exists=True),
              help="compatibility_*.txt and/or fill_in_blank_*.json; repeat for both.")
@click.option("--items", "items_file", default=None, type=click.Path(dir_okay=False, exists=True),
              help="polyvore_item_metadata.json (default: beside the outfits file or one folder up).")
@click.option("--images-root", type=click.Path(file_okay=False),
              help="Folder of <item_id>.jpg for items that are not catalog items (default: images/ beside the "
                   "item metadata).")
@click.option("--checkpoint", default=None, help="Outfit model (default: outfit.checkpoint).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--threads", default=None, type=click.IntRange(1), help="torch CPU threads.")
@with_settings
def evaluate_outfits_cmd(settings: Settings, outfits_file: str, question_files: tuple[str, ...],
                         items_file: str | None, images_root: str | None, checkpoint: str | None, as_json: bool,
                         threads: int | None) -> None:
    """Compatibility AUC and fill-in-the-blank accuracy (Polyvore Outfits protocol): the outfit model vs the
    visual-similarity baseline on the same questions (and, for PROXY outfits, the proxy rules' ceiling)."""
    from indexer.embedders import create_embedder_from_settings
    from indexer.outfits.evaluation import format_evaluation
    from indexer.outfits.wiring import evaluate_outfit_files
    from indexer.wiring import open_store

    set_threads(threads)
    ev = evaluate_outfit_files(settings, open_store(settings), create_embedder_from_settings(settings), outfits_file,
                               question_files, items_file, images_root, checkpoint)
    if as_json:
        click.echo(json.dumps(ev.as_dict(), indent=2))
    else:
        format_evaluation(ev, click.echo)
