"""`manage.py backup DIR` / `manage.py restore DIR`: a consistent snapshot of SQL + the served index generation."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import click

from indexer.cli_support import with_settings
from indexer.settings import Settings


def _kill_at(point: str | None):
    from indexer.backup.snapshot import BACKUP_CRASH_POINTS

    if point and point not in BACKUP_CRASH_POINTS:
        raise ValueError(f"unknown crash point {point!r}; known: {', '.join(BACKUP_CRASH_POINTS)}")

    def hook(reached: str) -> None:
        if reached == point:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook if point else None


@click.command("backup")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--crash-at", hidden=True, default=None)
@with_settings
def backup_cmd(settings: Settings, folder: Path, crash_at: str | None) -> None:
    """Write a backup of the database and the served index generation to FOLDER (a new folder).

    Safe while servers run (it holds the indexing lock, so no `index` or `remove` runs meanwhile). FOLDER appears
    only once the backup is complete, with a manifest of checksums written last.
    """
    from indexer.backup.snapshot import create_backup

    meta = create_backup(settings.database_url, settings.index_dir, folder,
                         faiss_store=settings.index.store == "faiss", crash_hook=_kill_at(crash_at))
    rows = sum(meta["rows"].values())
    click.echo(f"backup written to {folder}: {meta['database']} database at revision {meta['schema_revision']} "
               f"({rows} rows), index {meta['generation'] or '(none: rebuild it after restoring)'}")


@click.command("restore")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="Delete everything in the database before restoring.")
@with_settings
def restore_cmd(settings: Settings, folder: Path, replace: bool) -> None:
    """Restore a backup made by `backup` into the configured database and index dir (stop the servers first).

    Refused for a partial or damaged backup, or one made with another model or schema revision.
    """
    from indexer.backup.snapshot import restore_backup, verify_backup
    from indexer.embedders import create_embedder_from_settings

    verify_backup(folder)  # a partial backup is refused before the model is loaded
    fingerprint = create_embedder_from_settings(settings).fingerprint
    meta = restore_backup(folder, settings.database_url, settings.index_dir, fingerprint, replace=replace)
    click.echo(f"restored {folder} (made {meta['created_at']}): {sum(meta['rows'].values())} rows, index "
               f"{meta['generation'] or '(none: run `python manage.py index --rebuild`)'}")
    if settings.index.store != "faiss":
        click.echo("index.store is not faiss: run `python manage.py index --rebuild` to refill the vector store")
