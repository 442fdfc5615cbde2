"""`manage.py db upgrade | downgrade | check`: the database schema (Alembic migrations)."""

from __future__ import annotations

import click

from indexer.cli_support import (
    fail,
    with_settings,
)
from indexer.settings import Settings


@click.group()
def db() -> None:
    """Database migrations (Alembic)."""


@db.command("upgrade")
@click.argument("revision", default="head")
@with_settings
def db_upgrade(settings: Settings, revision: str) -> None:
    """Apply migrations up to REVISION (default head)."""
    from indexer.store.db import upgrade_database

    upgrade_database(settings.database_url, revision)
    click.echo(f"database at {revision}")


@db.command("downgrade")
@click.argument("revision", default="-1")
@with_settings
def db_downgrade(settings: Settings, revision: str) -> None:
    """Revert migrations down to REVISION (default: one step)."""
    from indexer.store.db import downgrade_database

    downgrade_database(settings.database_url, revision)
    click.echo(f"database downgraded to {revision}")


@db.command("check")
@with_settings
def db_check(settings: Settings) -> None:
    """Exit 1 unless the database is at head and matches the models."""
    from indexer.store.db import StoreError, check_database

    try:
        check_database(settings.database_url)
    except StoreError as exc:
        fail(str(exc), 1)
    click.echo("database is up to date and matches the models")
