"""PostgreSQL for tests: the server `make test` starts (LOOKALIKE_TEST_PG_URL), one fresh schema per test.

A test module's `db_kind` fixture (see pick()) is parametrized over DATABASES: SQLite (a file in the test's folder)
and PostgreSQL (database_url(): a new schema in the test cluster, named on the URL's search_path, dropped
afterwards). PostgreSQL cases carry the `postgres` marker, which the reliability scoreboard uses to count them on
their own rows. Without a reachable server they skip.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_URL = os.environ.get("LOOKALIKE_TEST_PG_URL", "")
DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@functools.cache
def pg_available() -> bool:
    if not PG_URL:
        return False
    try:
        eng = sa.create_engine(PG_URL)
        with eng.connect():
            pass
        eng.dispose()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return False


def require_pg() -> None:
    if not pg_available():
        pytest.skip("PostgreSQL not reachable at LOOKALIKE_TEST_PG_URL (make test starts it)")


@contextmanager
def fresh_pg_schema() -> Iterator[str]:
    """A URL whose connections see only a new, empty schema; the schema is dropped on exit."""
    require_pg()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        try:
            with admin.begin() as conn:
                conn.execute(sa.text("SET LOCAL lock_timeout = '20s'"))  # a leftover session must not hang the run
                conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        except sa.exc.OperationalError:
            pass  # a throwaway schema in the test cluster; the next `make test` cluster starts empty anyway
        finally:
            admin.dispose()


@contextmanager
def database_url(kind: str, folder: Path) -> Iterator[str]:
    """A fresh, empty database of `kind` ("sqlite" or "postgresql") for one test."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'lookalike.db'}"
        return
    with fresh_pg_schema() as url:
        yield url


def pick(kind: str) -> str:
    """A test module's `db_kind` fixture returns this: skips PostgreSQL cases where the server is not reachable.

        @pytest.fixture(params=DATABASES)
        def db_kind(request) -> str:
            return pick(request.param)
    """
    if kind == "postgresql":
        require_pg()
    return kind


def scalar(url: str, sql: str, **params) -> object:
    """One value from a query against the database at url."""
    eng = sa.create_engine(url)
    try:
        with eng.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()
    finally:
        eng.dispose()


def rows(url: str, sql: str, **params) -> list[tuple]:
    """All rows of a query against the database at url."""
    eng = sa.create_engine(url)
    try:
        with eng.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]
    finally:
        eng.dispose()
