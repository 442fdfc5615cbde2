"""`manage.py evaluate street2shop | category | runs` and `manage.py sweep`: quality and index-setting measurements."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from indexer.cli_support import (
    command_line,
    default_catalog,
    embedder_for_eval,
    fail,
    served_splits,
    set_threads,
    with_settings,
)
from indexer.settings import Settings


@click.group("evaluate")
def evaluate() -> None:
    """Retrieval quality of the served model: recall@1/5/10/20 and mAP, stored in SQL."""


def finish_evaluation(settings: Settings, report, as_json: bool, plot: str | None, store_run: bool) -> None:
    import time

    from indexer.evaluation.retrieval import format_report, write_plot
    from indexer.evaluation.runs import record_evaluation
    from indexer.wiring import open_store

    plot_path = plot or str(settings.resolve_path("var/eval") / f"{report.kind}-{time.strftime('%Y%m%d-%H%M%S')}.png")
    write_plot(report, plot_path)
    if store_run:
        record_evaluation(open_store(settings), report)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    format_report(report, click.echo)
    click.echo(f"  plot: {report.plot}" + (f"  stored as evaluation run {report.run_id}" if report.run_id else ""))


_EVAL_OPTIONS = [
    click.option("--checkpoint", default=None,
                 help="Evaluate another checkpoint of the configured backbone ('none' = no checkpoint)."),
    click.option("--plot", default=None, type=click.Path(dir_okay=False),
                 help="recall@k PNG (default var/eval/<kind>-<time>.png)."),
    click.option("--json", "as_json", is_flag=True),
    click.option("--no-store", is_flag=True, help="Do not store the run in SQL."),
    click.option("--threads", default=None, type=click.IntRange(1), help="torch CPU threads."),
    click.option("--no-progress", is_flag=True),
]


def eval_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_EVAL_OPTIONS):
        func = option(func)
    return func


@evaluate.command("street2shop")
@click.option("--pairs", "pairs_csv", required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--gallery", "gallery_csv", required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--images-root", type=click.Path(file_okay=False), help="Relative paths root (default: each CSV's).")
@click.option("--label-column", default="label", show_default=True, help="Column for the per-label breakdown.")
@click.option("--served", is_flag=True, help="Run every query through the API's QueryEngine (localisation "
              "included) over the gallery indexed by the real pipeline; rows for whole photo / crops / auto.")
@eval_options
@with_settings
def evaluate_street2shop_cmd(settings: Settings, pairs_csv: str, gallery_csv: str, images_root: str | None,
                             label_column: str, served: bool, checkpoint: str | None, plot: str | None,
                             as_json: bool, no_store: bool, threads: int | None, no_progress: bool) -> None:
    """Each query photo against the gallery; a hit is a gallery image of the query's item."""
    from indexer.datasets.pairs import read_pair_set, read_pairs_manifest
    from indexer.evaluation.retrieval import evaluate_street2shop
    from indexer.vectors.faiss_index import SearchParams

    set_threads(threads)
    pair_set = read_pair_set(pairs_csv, gallery_csv, images_root, label_column)
    manifest = read_pairs_manifest(pairs_csv)
    synthetic = bool(manifest.get("synthetic"))
    dataset = f"{'SYNTHETIC ' if synthetic else ''}street2shop pairs={pairs_csv} gallery={gallery_csv}"
    if served:
        from indexer.embedders import detector_from_settings, query_embedder_from_settings
        from indexer.evaluation.served import evaluate_served

        embedder = embedder_for_eval(settings, checkpoint)
        detector, why_not = detector_from_settings(settings, embedder)
        if detector is None and settings.web.detector and not as_json:
            click.echo(f"no garment detector ({why_not}); the detector row is left out")
        query_embedder, why_served = query_embedder_from_settings(settings, embedder)
        if query_embedder is embedder and settings.model.street_encoder and not as_json:
            click.echo(f"no street encoder ({why_served}); the street row is left out")
        try:
            report = evaluate_served(settings, embedder, pair_set,
                                     progress=not (no_progress or as_json), synthetic=synthetic,
                                     dataset=f"{dataset} served", detector=detector,
                                     echo=None if as_json else click.echo, query_embedder=query_embedder)
        except ValueError as exc:
            fail(str(exc))
        finish_evaluation(settings, report, as_json, plot, not no_store)
        return
    report = evaluate_street2shop(
        embedder_for_eval(settings, checkpoint), pair_set, settings.index.spec, settings.index.search_device,
        SearchParams(settings.index.nprobe, settings.index.ef_search), batch_size=settings.model.batch_size,
        workers=settings.pipeline.decode_workers, progress=not (no_progress or as_json), synthetic=synthetic,
        dataset=dataset, max_pixels=settings.web.max_image_pixels)
    finish_evaluation(settings, report, as_json, plot, not no_store)


@evaluate.command("category")
@click.option("--catalog", default=None, help="Catalog CSV (default: catalog.default_csv).")
@click.option("--label", "label_column", default="article_type", show_default=True)
@click.option("--images-root", type=click.Path(file_okay=False))
@click.option("--splits", "splits_file", type=click.Path(dir_okay=False, exists=True),
              help="id,split file; only products of --split are used.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--limit", default=None, type=click.IntRange(2), help="At most this many items (seeded sample).")
@eval_options
@with_settings
def evaluate_category_cmd(settings: Settings, catalog: str | None, label_column: str, images_root: str | None,
                          splits_file: str | None, split: str, limit: int | None, checkpoint: str | None,
                          plot: str | None, as_json: bool, no_store: bool, threads: int | None,
                          no_progress: bool) -> None:
    """Leave-one-out: each item against all the others; a hit is an item with the same label."""
    from indexer.evaluation.retrieval import catalog_items, evaluate_category
    from indexer.vectors.faiss_index import SearchParams

    set_threads(threads)
    path, root = default_catalog(settings, catalog, images_root)
    items, dataset = catalog_items(path, root, label_column, splits_file, split, limit)
    report = evaluate_category(
        embedder_for_eval(settings, checkpoint), items, label_column, settings.index.spec,
        settings.index.search_device, SearchParams(settings.index.nprobe, settings.index.ef_search),
        batch_size=settings.model.batch_size, workers=settings.pipeline.decode_workers,
        progress=not (no_progress or as_json), dataset=dataset, max_pixels=settings.web.max_image_pixels)
    finish_evaluation(settings, report, as_json, plot, not no_store)


@evaluate.command("runs")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True)
@with_settings
def evaluate_runs_cmd(settings: Settings, limit: int, as_json: bool) -> None:
    """List stored evaluation runs, newest first."""
    from indexer.evaluation.runs import list_evaluations
    from indexer.wiring import open_store

    runs = list_evaluations(open_store(settings), limit)
    if as_json:
        click.echo(json.dumps(runs, indent=2))
        return
    for r in runs:
        m = r["metrics"]
        click.echo(f"{r['id']:>5}  {r['created_at'][:19]}  {r['kind']:<12} {r['model_fingerprint'][:12]}  "
                   f"recall@1 {m.get('recall@1', float('nan')):.4f}  recall@20 {m.get('recall@20', float('nan')):.4f}"
                   f"  mAP {m.get('mAP', float('nan')):.4f}  n={m.get('n_queries')}  {r['dataset'][:60]}")


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None


@click.command("sweep")
@click.option("--index-specs", default="", help="FAISS specs separated by ';' or spaces "
              "(e.g. 'Flat;IVF256,Flat;HNSW32'). Default: Flat, IVF at 1/2/4 x sqrt(n) lists, HNSW32.")
@click.option("--nprobe", "nprobes", default="1,2,4,8,16,32,64", show_default=True, help="IVF nprobe values.")
@click.option("--ef-search", "ef_searches", default="16,32,64,128,256", show_default=True,
              help="HNSW efSearch values.")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(1, 1000), help="recall@k vs exact.")
@click.option("--queries", "n_queries", default=1000, show_default=True, type=click.IntRange(1),
              help="Held-out catalog vectors used as queries (at most a tenth of the catalog).")
@click.option("--budget-s", default=2.0, show_default=True, type=click.FloatRange(0.0),
              help="Seconds of single-query timing per setting.")
@click.option("--min-recall", default=0.99, show_default=True, type=click.FloatRange(0, 1),
              help="Recall the recommended setting must reach (the fastest such Pareto point).")
@click.option("--apply", "apply_spec", default=None, help="'recommended' (the recommended setting: index.spec and "
              "its nprobe/ef_search) or a SPEC (index.spec only): write it into the config file and rebuild the index "
              "generation with it.")
@click.option("--no-store", is_flag=True, help="Do not store the results in SQL.")
@click.option("--benchmarks", is_flag=True, help="Write the table into BENCHMARKS.md (section 'sweep').")
@click.option("--json", "as_json", is_flag=True)
@with_settings
def sweep_cmd(settings: Settings, index_specs: str, nprobes: str, ef_searches: str, k: int, n_queries: int,
              budget_s: float, min_recall: float, apply_spec: str | None, no_store: bool, benchmarks: bool,
              as_json: bool) -> None:
    """Measure recall@k vs exact search, queries/s and memory of index settings on the current catalog embeddings."""
    import re

    from indexer.evaluation.sweep import apply_spec as apply_index_spec
    from indexer.evaluation.sweep import record_sweep, resolve_apply, sweep_catalog, sweep_report
    from indexer.wiring import open_store

    specs = [s for s in re.split(r"[;\s]+", index_specs) if s]
    problems: list[str] = []
    points, manifest = sweep_catalog(settings, specs, _int_list(nprobes), _int_list(ef_searches), k, n_queries,
                                     budget_s, problems)
    sweep_id = None
    if not no_store:
        sweep_id = record_sweep(open_store(settings), points, manifest.fingerprint, manifest.name,
                                {"command": command_line()})
    applied = resolve_apply(points, apply_spec, settings, min_recall) if apply_spec else None
    report = sweep_report(points, settings, min_recall, problems, sweep_id, manifest.name, applied)
    if benchmarks:
        from bench.report import update_section

        update_section("sweep", "Index sweep on the catalog embeddings: recall vs queries/s (manage.py sweep)",
                       report["markdown"])
    click.echo(json.dumps(report["json"], indent=2) if as_json else report["markdown"])
    if applied is not None:
        gen, count = apply_index_spec(settings, applied)
        click.echo(f"{applied.label} written to [index] of {settings.source}; generation {gen} built "
                   f"({count} vectors)", err=as_json)


@evaluate.command("text")
@click.option("--splits", "splits_file", type=click.Path(dir_okay=False, exists=True),
              help="id,split file (default: splits.csv beside model.checkpoint, the split the towers trained on).")
@click.option("--composed", "n_composed", default=1000, show_default=True, type=click.IntRange(1),
              help="Photo + \"in <colour>\" queries per split (val picks the modifier weight, test reports).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True)
@click.option("--no-store", is_flag=True, help="Do not store the run in SQL.")
@with_settings
def evaluate_text_cmd(settings: Settings, splits_file: str | None, n_composed: int, seed: int, as_json: bool,
                      no_store: bool) -> None:
    """Search by words on test products (KAGL protocol): title -> image, label -> product, photo + "in <colour>"."""
    from engine.models.text_tower import TextTowerError
    from indexer.evaluation.text import run_text_evaluation

    try:
        evaluation = run_text_evaluation(settings, splits_file, n_composed, seed, not no_store, command_line())
    except TextTowerError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps({**evaluation.metrics, **evaluation.details}, indent=2))
        return
    for key, value in evaluation.metrics.items():
        click.echo(f"  {key:<36} {value}")
    click.echo(f"  val modifier sweep: {evaluation.details['val_modifier_sweep']}")
    plain = evaluation.details.get("vector_only")
    if plain:
        keys = ("title_recall@1", "article_type_precision@1", "base_colour_precision@1", "composed_colour_type@10")
        click.echo("  the words' vector alone (no label terms): " + ", ".join(f"{k} {plain.get(k)}" for k in keys))
    if evaluation.details.get("colour_head_error"):
        click.echo(f"  no colour bonus: {evaluation.details['colour_head_error']}")
    if evaluation.details.get("run_id"):
        click.echo(f"  stored as evaluation run {evaluation.details['run_id']}")


@evaluate.command("detection")
@click.option("--catalog", default=None, help="Catalog CSV (default: catalog.default_csv).")
@click.option("--images-root", type=click.Path(file_okay=False))
@click.option("--splits", "splits_file", type=click.Path(dir_okay=False, exists=True),
              help="id,split file (default: splits.csv beside model.checkpoint; its test products make the scenes).")
@click.option("--scenes", default=500, show_default=True, type=click.IntRange(1),
              help="SYNTHETIC scenes of test products.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True)
@click.option("--no-store", is_flag=True, help="Do not store the run in SQL.")
@click.option("--threads", default=None, type=click.IntRange(1), help="torch CPU threads.")
@click.option("--no-progress", is_flag=True)
@with_settings
def evaluate_detection_cmd(settings: Settings, catalog: str | None, images_root: str | None, splits_file: str | None,
                           scenes: int, seed: int, as_json: bool, no_store: bool, threads: int | None,
                           no_progress: bool) -> None:
    """The built-in garment detector: AP@0.5 and recall@0.5 per slot on SYNTHETIC scenes of test products."""
    from pathlib import Path

    from engine.models.detector import DetectorError, builtin_detector
    from indexer.embedders import create_embedder_from_settings
    from indexer.evaluation.detection import evaluate_detection, format_detection, record_detection_run
    from indexer.wiring import open_store

    set_threads(threads)
    embedder = create_embedder_from_settings(settings)
    try:
        detector = builtin_detector(embedder, settings.resolve_path(settings.web.detector_checkpoint),
                                    settings.web.detector_threshold)
    except DetectorError as exc:
        fail(str(exc))
    path, root = default_catalog(settings, catalog, images_root)
    splits = served_splits(settings, splits_file)
    try:
        evaluation = evaluate_detection(settings, detector, Path(path), Path(root) if root else None, splits,
                                        scenes, seed, progress=not (no_progress or as_json))
    except ValueError as exc:
        fail(str(exc))
    if not no_store:
        record_detection_run(open_store(settings), evaluation, embedder.fingerprint, command_line())
    if as_json:
        click.echo(json.dumps(evaluation.as_dict(), indent=2))
    else:
        format_detection(evaluation, click.echo)
