"""`manage.py index | remove | check`: bulk indexing, removing items, and the SQL-vs-index consistency check."""

from __future__ import annotations

import json
import sys

import click

from indexer.cli_support import with_settings
from indexer.settings import DefaultCatalog, Settings


def catalog_note(default: DefaultCatalog) -> None:
    """Say on stderr which catalog `index` with no argument imports (`make run` shows it), and how to get the full
    one when it is the demo."""
    click.echo(f"indexing {default.description}: {default.path}", err=True)
    if default.kind == "demo":
        click.echo("  (a small sample; for the full catalog run `python manage.py fetch-data fashion-product-images`, "
                   "or index your own: README, 'Index your own catalog')", err=True)


@click.command("index")
@click.argument("catalog", required=False)
@click.option("--images-root", type=click.Path(file_okay=False), help="Folder image paths are relative to.")
@click.option("--rebuild", is_flag=True, help="Build a fresh index generation from SQL even if nothing changed.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--crash-at", hidden=True, default=None, help="(tests) SIGKILL this process at a named point.")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Embed on a Ray cluster: 'auto' starts a local one for this run, else an address for ray.init "
                   "(ray://head:10001, host:6379). Needs the scale extra; see docs/scaling.md.")
@click.option("--ray-workers", default=0, show_default=True, type=click.IntRange(0),
              help="Embedding actors with --ray (0 = one per GPU, or one per CPU where the cluster has no GPU).")
@with_settings
def index_cmd(settings: Settings, catalog: str | None, images_root: str | None, rebuild: bool, as_json: bool,
              no_progress: bool, crash_at: str | None, ray_address: str | None, ray_workers: int) -> None:
    """Import CATALOG (a CSV with id,image columns, or a folder of images), embed and index it.

    Resumable and idempotent: rerunning after a crash finishes the job without redoing finished
    items; rerunning over an unchanged catalog changes nothing. With --ray the embedding runs on
    Ray Data actors; SQL and the vector store are written exactly as without it.
    """
    from indexer.catalog.source import open_catalog
    from indexer.embedders import create_embedder_from_settings
    from indexer.pipeline.crash_safety import kill_at
    from indexer.wiring import create_pipeline, create_ray_pipeline, open_store

    if catalog is None:
        default = settings.default_catalog
        catalog_note(default)
    path = catalog or str(settings.default_csv)
    root = images_root or (str(settings.resolve_path(settings.catalog.images_root))
                           if settings.catalog.images_root and not catalog else None)
    source = open_catalog(path, root)
    store = open_store(settings)
    embedder = create_embedder_from_settings(settings)
    hook = kill_at(crash_at) if crash_at else None
    progress = not no_progress and not as_json
    if ray_address:
        from indexer.pipeline.ray_pipeline import RayOptions

        pipeline = create_ray_pipeline(settings, store, embedder, RayOptions(address=ray_address, workers=ray_workers),
                                       crash_hook=hook, progress=progress)
    else:
        pipeline = create_pipeline(settings, store, embedder, crash_hook=hook, progress=progress)
    try:
        report = pipeline.run(source, rebuild=rebuild)
    finally:
        pipeline.vector_store.close()
    data = report.as_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"rows: {report.rows}  new: {report.new}  changed: {report.changed}  "
               f"re-embedded: {report.reembedded}  metadata updated: {report.metadata_updated}  "
               f"unchanged: {report.unchanged}  skipped: {len(report.problems)}")
    for problem in report.problems[:50]:
        click.echo(f"  skipped {problem}")
    if len(report.problems) > 50:
        click.echo(f"  ... and {len(report.problems) - 50} more (use --json for all)")
    rate = data["items_per_second"]
    runner = getattr(pipeline, "runner", "") or str(embedder.device)
    click.echo(f"embedded {report.embedded} items in {report.elapsed_seconds:.1f}s ({rate} items/s) on {runner}")
    state = "published" if report.published else "unchanged"
    click.echo(f"index generation {report.generation} ({report.generation_count} vectors, {report.spec}): {state}")


@click.command("remove")
@click.argument("ids", nargs=-1, required=True)
@click.option("--crash-at", hidden=True, default=None)
@with_settings
def remove_cmd(settings: Settings, ids: tuple[str, ...], crash_at: str | None) -> None:
    """Delete catalog items (by their catalog id) from SQL and the index."""
    from indexer.embedders import create_embedder_from_settings
    from indexer.pipeline.crash_safety import kill_at
    from indexer.wiring import open_store, remove_items

    store = open_store(settings)
    result = remove_items(settings, store, create_embedder_from_settings(settings), ids,
                          crash_hook=kill_at(crash_at) if crash_at else None)
    click.echo(f"removed {result['removed']} item(s); index {result['generation']} holds {result['count']}")
    if result["unknown"]:
        click.echo(f"not found: {', '.join(result['unknown'])}", err=True)
        sys.exit(1)


@click.command("check")
@click.option("--json", "as_json", is_flag=True)
@with_settings
def check_cmd(settings: Settings, as_json: bool) -> None:
    """Check that the index and SQL agree; exit 1 when they do not."""
    from indexer.embedders import create_embedder_from_settings
    from indexer.vectors.factory import create_vector_store
    from indexer.wiring import open_store, servable_image_roots, unservable_images

    store = open_store(settings)
    vector_store = create_vector_store(settings)
    try:
        report = vector_store.check(store, create_embedder_from_settings(settings).fingerprint)
    finally:
        vector_store.close()
    # Pictures the web app would answer 404 for: not a vector/SQL inconsistency, so a warning, not a failed check.
    outside, examples = unservable_images(store, servable_image_roots(settings, store))
    if as_json:
        data = report.as_dict()
        data["unservable_images"] = {"count": outside, "examples": [{"id": i, "image": p} for i, p in examples]}
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(f"index {report.generation}: {report.index_count} vectors; SQL: {report.sql_count} embedded items")
        for p in report.problems:
            click.echo(f"  problem: {p}")
        if outside:
            click.echo(f"  warning: {outside} item(s) have a picture outside every servable image root (the web app "
                       f"answers 404 for them), e.g. id {examples[0][0]}: {examples[0][1]}; re-index their catalog "
                       "or add the folder to web.image_roots")
        click.echo("consistent" if report.ok else "INCONSISTENT")
    sys.exit(0 if report.ok else 1)
