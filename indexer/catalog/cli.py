"""`manage.py fetch-data`: download the public Fashion Product Images dataset into a catalog CSV + images folder."""

from __future__ import annotations

from pathlib import Path

import click

from indexer.catalog.fetch import DATASETS, FetchError, fetch_dataset
from indexer.cli_support import fail, with_settings
from indexer.settings import FETCHED_CATALOG_DIR, Settings


@click.command("fetch-data")
@click.argument("dataset", type=click.Choice(DATASETS))
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=f"Folder to write catalog.csv and images/ into (default: {FETCHED_CATALOG_DIR} beside the config "
                   "file, which `index` picks up when catalog.default_csv does not exist).")
@click.option("--url", default=None, help="Archive URL (default: catalog.fetch_url).")
@click.option("--sha256", default=None, help="Expected sha256 of the archive (default: catalog.fetch_sha256).")
@click.option("--archive", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Use this already downloaded archive instead of downloading.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@with_settings
def fetch_data_cmd(settings: Settings, dataset: str, dest: Path | None, url: str | None, sha256: str | None,
                   archive: Path | None, no_progress: bool) -> None:
    """Download DATASET and write it as a catalog (catalog.csv in the project's columns + images/).

    Resumes a partial download when rerun; nothing is left half-written as if complete.
    """
    target = dest or settings.fetched_catalog_dir
    try:
        result = fetch_dataset(dataset, target, url or settings.catalog.fetch_url,
                               settings.catalog.fetch_sha256 if sha256 is None else sha256, archive,
                               progress=not no_progress)
    except FetchError as exc:
        fail(str(exc))
    skipped = f" ({result.skipped} rows without an image skipped)" if result.skipped else ""
    click.echo(f"wrote {result.products:,} products to {result.dest}/catalog.csv{skipped}; "
               f"archive sha256 {result.archive_sha256}")
    if result.dest == settings.fetched_catalog_dir.resolve():
        click.echo("`make run` and `python manage.py index` now index it (unless catalog.default_csv names an existing "
                   "file or ../shared holds the catalog)")
    else:
        click.echo(f"index it with: python manage.py index {result.dest}/catalog.csv")
