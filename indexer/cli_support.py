"""What every manage.py command shares: --config loading, one-line errors with exit codes, filter parsing, thread
and catalog defaults. The commands themselves live in each domain's cli.py; manage.py only assembles them."""

from __future__ import annotations

import functools
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import DBAPIError

from indexer.settings import Settings, SettingsError, load_settings


def known_errors() -> tuple[type[BaseException], ...]:
    """The error classes reported as one line. A module that cannot be imported here (a bare training machine
    without alembic or faiss, say) cannot have raised its error, so it is skipped rather than failing the report."""
    import importlib

    found: list[type[BaseException]] = [SettingsError, ValueError, FileNotFoundError, PermissionError]
    for module, names in (("engine", ("EmbedderError",)), ("indexer.catalog.source", ("CatalogError",)),
                          ("indexer.store.db", ("StoreError",)), ("indexer.vectors.generations", ("GenerationError",)),
                          ("indexer.catalog.images", ("ImageDecodeError",)),
                          ("indexer.pipeline.crash_safety", ("WriterBusyError",)),
                          ("indexer.pipeline.ray_pipeline", ("RayIndexError",)),
                          ("indexer.store.catalog_store", ("FilterError",)), ("indexer.extras", ("MissingExtraError",)),
                          ("indexer.vectors.base", ("VectorStoreError",))):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        found.extend(getattr(mod, name) for name in names)
    return tuple(found)


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
        except known_errors() as exc:
            fail(str(exc))
        except DBAPIError as exc:
            one_line = " ".join(str(exc.orig).split())  # psycopg adds a hint on a second line
            fail(f"database error: {one_line}. Check database.url, that no other process holds a long write lock, "
                 "and that the database file and its folder are writable")
        except OSError as exc:
            fail(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}")
        except KeyboardInterrupt:
            fail("interrupted; rerun the command to resume", 130)

    return wrapper


def parse_filters(values: tuple[str, ...]) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for raw in values:
        key, sep, value = raw.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"--filter must look like column=value, got {raw!r}")
        filters.setdefault(key.strip(), []).append(value.strip())
    return filters


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def embedder_for_eval(settings: Settings, checkpoint: str | None):
    """The configured (served) model, or the same recipe with another checkpoint ("none" = the bare backbone)."""
    import dataclasses

    from indexer.embedders import create_embedder_from_settings

    if checkpoint is not None:
        value = "" if checkpoint.lower() == "none" else str(Path(checkpoint).resolve())
        settings = dataclasses.replace(settings, model=dataclasses.replace(settings.model, checkpoint=value))
    return create_embedder_from_settings(settings)


def default_catalog(settings: Settings, catalog: str | None, images_root: str | None) -> tuple[str, str | None]:
    path = catalog or str(settings.default_csv)
    root = images_root or (str(settings.resolve_path(settings.catalog.images_root))
                           if settings.catalog.images_root and not catalog else None)
    return path, root


def served_splits(settings: Settings, splits_file: str | None, required: bool = True) -> Path | None:
    """The product splits a job keeps test products out with: ``--splits`` when given, else the splits.csv beside the
    served checkpoint (model.checkpoint). ``required``: fail with a clear message when that file does not exist."""
    ckpt = settings.resolve_path(settings.model.checkpoint) if settings.model.checkpoint else None
    splits = Path(splits_file) if splits_file else (ckpt.parent / "splits.csv" if ckpt else None)
    if required and (splits is None or not splits.is_file()):
        fail(f"needs the served checkpoint's product splits ({splits}); pass --splits")
    return splits


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["python", "manage.py", *sys.argv[1:]])
