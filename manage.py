#!/usr/bin/env python3
"""Lookalike command line: thin wrappers over indexer/ and engine/.

Every command takes --config PATH (default ./config.toml, or env LOOKALIKE_CONFIG).
Errors are printed as one line starting with "error:" and exit with status 2 (1 for a failed check).
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from flask.cli import FlaskGroup

from indexer.settings import Settings, SettingsError, load_settings


def _known_errors() -> tuple[type[BaseException], ...]:
    from engine import EmbedderError
    from indexer.catalog import CatalogError
    from indexer.db import StoreError
    from indexer.generations import GenerationError
    from indexer.images import ImageDecodeError
    from indexer.pipeline import WriterBusyError
    from indexer.store import FilterError

    return (SettingsError, StoreError, CatalogError, GenerationError, WriterBusyError, FilterError,
            ImageDecodeError, EmbedderError, ValueError, FileNotFoundError, PermissionError)


def fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def with_settings(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --config, load settings into the first argument, and turn known errors into one-line messages."""

    @click.option("--config", "config_path", default="config.toml", envvar="LOOKALIKE_CONFIG", show_default=True,
                  type=click.Path(dir_okay=False), help="Config file (env LOOKALIKE_CONFIG).")
    @functools.wraps(func)
    def wrapper(config_path: str, **kwargs: Any) -> Any:
        try:
            settings = load_settings(config_path)
        except SettingsError as exc:
            fail(str(exc))
        try:
            return func(settings, **kwargs)
        except _known_errors() as exc:
            fail(str(exc))
        except OSError as exc:
            fail(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}")
        except KeyboardInterrupt:
            fail("interrupted; rerun the command to resume", 130)

    return wrapper


def _create_app_for_cli():
    from web import create_app

    ctx = click.get_current_context(silent=True)
    path = (ctx.params.get("config_path") if ctx else None) or "config.toml"
    import os

    return create_app(load_settings(os.environ.get("LOOKALIKE_CONFIG", path)))


cli = FlaskGroup(create_app=_create_app_for_cli, add_default_commands=False,
                 help="Lookalike: visual similarity search for fashion catalogs.")


# ---- db ------------------------------------------------------------------------------------

@cli.group()
def db() -> None:
    """Database migrations (Alembic)."""


@db.command("upgrade")
@click.argument("revision", default="head")
@with_settings
def db_upgrade(settings: Settings, revision: str) -> None:
    """Apply migrations up to REVISION (default head)."""
    from indexer.db import upgrade_database

    upgrade_database(settings.database_url, revision)
    click.echo(f"database at {revision}")


@db.command("downgrade")
@click.argument("revision", default="-1")
@with_settings
def db_downgrade(settings: Settings, revision: str) -> None:
    """Revert migrations down to REVISION (default: one step)."""
    from indexer.db import downgrade_database

    downgrade_database(settings.database_url, revision)
    click.echo(f"database downgraded to {revision}")


@db.command("check")
@with_settings
def db_check(settings: Settings) -> None:
    """Exit 1 unless the database is at head and matches the models."""
    from indexer.db import StoreError, check_database

    try:
        check_database(settings.database_url)
    except StoreError as exc:
        fail(str(exc), 1)
    click.echo("database is up to date and matches the models")


# ---- index / remove / check ------------------------------------------------------------------

@cli.command("index")
@click.argument("catalog", required=False)
@click.option("--images-root", type=click.Path(file_okay=False), help="Folder image paths are relative to.")
@click.option("--rebuild", is_flag=True, help="Build a fresh index generation from SQL even if nothing changed.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--crash-at", hidden=True, default=None, help="(tests) SIGKILL this process at a named point.")
@with_settings
def index_cmd(settings: Settings, catalog: str | None, images_root: str | None, rebuild: bool, as_json: bool,
              no_progress: bool, crash_at: str | None) -> None:
    """Import CATALOG (a CSV with id,image columns, or a folder of images), embed and index it.

    Resumable and idempotent: rerunning after a crash finishes the job without redoing finished
    items; rerunning over an unchanged catalog changes nothing.
    """
    from indexer.catalog import open_catalog
    from indexer.pipeline import kill_at
    from indexer.service import create_embedder_from_settings, create_pipeline, open_store

    path = catalog or str(settings.resolve_path(settings.catalog.default_csv))
    root = images_root or (str(settings.resolve_path(settings.catalog.images_root))
                           if settings.catalog.images_root and not catalog else None)
    source = open_catalog(path, root)
    store = open_store(settings)
    embedder = create_embedder_from_settings(settings)
    pipeline = create_pipeline(settings, store, embedder, crash_hook=kill_at(crash_at) if crash_at else None,
                               progress=not no_progress and not as_json)
    report = pipeline.run(source, rebuild=rebuild)
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
    click.echo(f"embedded {report.embedded} items in {report.elapsed_seconds:.1f}s ({rate} items/s) "
               f"on {embedder.device}")
    state = "published" if report.published else "unchanged"
    click.echo(f"index generation {report.generation} ({report.generation_count} vectors, {report.spec}): {state}")


@cli.command("remove")
@click.argument("ids", nargs=-1, required=True)
@click.option("--crash-at", hidden=True, default=None)
@with_settings
def remove_cmd(settings: Settings, ids: tuple[str, ...], crash_at: str | None) -> None:
    """Delete catalog items (by their catalog id) from SQL and the index."""
    from indexer.pipeline import kill_at
    from indexer.service import create_embedder_from_settings, open_store, remove_items

    store = open_store(settings)
    result = remove_items(settings, store, create_embedder_from_settings(settings), ids,
                          crash_hook=kill_at(crash_at) if crash_at else None)
    click.echo(f"removed {result['removed']} item(s); index {result['generation']} holds {result['count']}")
    if result["unknown"]:
        click.echo(f"not found: {', '.join(result['unknown'])}", err=True)
        sys.exit(1)


@cli.command("check")
@click.option("--json", "as_json", is_flag=True)
@with_settings
def check_cmd(settings: Settings, as_json: bool) -> None:
    """Check that the index and SQL agree; exit 1 when they do not."""
    from indexer.search import check_consistency
    from indexer.service import create_embedder_from_settings, open_store

    store = open_store(settings)
    report = check_consistency(store, settings.index_dir, create_embedder_from_settings(settings).fingerprint)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(f"index {report.generation}: {report.index_count} vectors; SQL: {report.sql_count} embedded items")
        for p in report.problems:
            click.echo(f"  problem: {p}")
        click.echo("consistent" if report.ok else "INCONSISTENT")
    sys.exit(0 if report.ok else 1)


# ---- search ----------------------------------------------------------------------------------

def parse_filters(values: tuple[str, ...]) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for raw in values:
        key, sep, value = raw.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"--filter must look like column=value, got {raw!r}")
        filters.setdefault(key.strip(), []).append(value.strip())
    return filters


@cli.command("search")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--filter", "filters", multiple=True, help="column=value; repeat for more (same column: OR).")
@click.option("--threshold", type=float, default=None, help="Minimum cosine similarity.")
@click.option("--json", "as_json", is_flag=True)
@with_settings
def search_cmd(settings: Settings, image: str, k: int, filters: tuple[str, ...], threshold: float | None,
               as_json: bool) -> None:
    """Find the catalog items most similar to IMAGE."""
    from indexer.images import decode_image
    from indexer.service import create_embedder_from_settings, create_search_service, open_store

    data = Path(image).read_bytes()
    img = decode_image(data, settings.web.max_image_pixels)
    service = create_search_service(settings, open_store(settings), create_embedder_from_settings(settings))
    hits = service.search_image(img, k, parse_filters(filters) or None, threshold)
    if as_json:
        click.echo(json.dumps({"query": image, "k": k, "results": [h.as_dict() for h in hits]}, indent=2))
        return
    for rank, h in enumerate(hits, 1):
        item = h.item
        click.echo(f"{rank:3d}  {h.score:.4f}  {item['external_id']:>10}  {item['title']}  "
                   f"[{item.get('article_type') or '-'}, {item.get('base_colour') or '-'}]")
    if not hits:
        click.echo("no results")


# ---- serve -------------------------------------------------------------------------------------

@cli.command("run")
@click.option("--host", default=None, help="Default: web.host from the config.")
@click.option("--port", default=None, type=int, help="Default: web.port from the config.")
@click.option("--debug", is_flag=True)
@with_settings
def run_cmd(settings: Settings, host: str | None, port: int | None, debug: bool) -> None:
    """Serve the app with Flask's development server (make run uses waitress instead)."""
    from web import create_app

    app = create_app(settings)
    app.run(host=host or settings.web.host, port=port or settings.web.port, debug=debug, use_reloader=False)


@cli.command("serve")
@click.option("--host", default=None)
@click.option("--port", default=None, type=int)
@click.option("--threads", default=8, show_default=True, type=int)
@with_settings
def serve_cmd(settings: Settings, host: str | None, port: int | None, threads: int) -> None:
    """Serve the app with the production WSGI server (waitress); model and index load before the first request."""
    from web.server import serve

    serve(settings, host, port, threads)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("indexer", "engine", "web"):
        logging.getLogger(name).setLevel(logging.INFO)
    cli.main(prog_name="manage.py")


if __name__ == "__main__":
    main()
