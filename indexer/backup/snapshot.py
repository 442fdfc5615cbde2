"""Back up and restore the SQL store plus the served index generation.

A backup folder holds:

    sql/database.sqlite     SQLite: a copy made with SQLite's online backup API (consistent while others read)
    sql/<table>.jsonl       PostgreSQL (and any other server): every row of every table, exported inside one
                            REPEATABLE READ transaction (a consistent snapshot), one JSON object per line
    index/<generation>/     the generation CURRENT names, with its manifest (FAISS store only)
    manifest.json           written last: format, schema revision, model fingerprint, generation, row counts and
                            the sha256 of every file above

It is written under a temporary name beside the target and renamed onto it only when complete, so the target name
exists only for a finished backup; a folder without manifest.json, or whose files do not match it, is refused by
restore. The index dir's writer lock is held while the snapshot is taken, so no `index` or `remove` run changes SQL or
the served generation half-way. Restore refuses a snapshot from another model fingerprint or schema revision.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from engine.files import file_sha256, fsync_dir, write_bytes_atomically
from indexer.pipeline.crash_safety import writer_lock
from indexer.store.db import alembic_config, create_db_engine, upgrade_database
from indexer.store.tables import Base
from indexer.vectors.generations import MANIFEST, current_name, make_current, read_manifest

FORMAT = "lookalike-backup/1"
BACKUP_MANIFEST = "manifest.json"
# Named points a test may kill a backup at (`manage.py backup --crash-at`).
BACKUP_CRASH_POINTS = ("backup-after-sql", "backup-before-manifest")
CrashHook = Callable[[str], None]


class BackupError(ValueError):
    """A backup cannot be made or restored; the message says why and what to do."""


def schema_revision(url: str) -> str | None:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


# ---- backup ----------------------------------------------------------------------------------------------------

def create_backup(url: str, index_dir: Path, target: Path, faiss_store: bool = True,
                  crash_hook: CrashHook | None = None) -> dict[str, Any]:
    """Write a complete backup of the database at `url` and the current generation of `index_dir` to `target`.

    Raises:
        BackupError: target exists, the database is not migrated, or there is nothing to back up.
    """
    target = Path(target)
    if target.exists():
        raise BackupError(f"{target} already exists; back up to a new folder")
    revision = schema_revision(url)
    if revision is None:
        raise BackupError("the database has no schema: run `python manage.py db upgrade` (nothing to back up)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    lock = writer_lock(index_dir)
    try:
        (tmp / "sql").mkdir(parents=True)
        counts = _dump_sql(url, tmp / "sql")
        if crash_hook:
            crash_hook("backup-after-sql")
        generation, fingerprint = None, None
        name = current_name(index_dir) if faiss_store else None
        if name is not None:
            manifest = read_manifest(index_dir / name)
            generation, fingerprint = name, manifest.fingerprint
            shutil.copytree(index_dir / name, tmp / "index" / name)
        if crash_hook:
            crash_hook("backup-before-manifest")
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        for p in files:
            with p.open("rb") as fh:
                os.fsync(fh.fileno())
        meta = {"format": FORMAT, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "database": make_url(url).get_backend_name(), "schema_revision": revision,
                "generation": generation, "fingerprint": fingerprint, "rows": counts,
                "files": {str(p.relative_to(tmp)): file_sha256(p) for p in files}}
        write_bytes_atomically(tmp / BACKUP_MANIFEST, json.dumps(meta, indent=2).encode())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        lock.release()
    return meta


def _dump_sql(url: str, folder: Path) -> dict[str, int]:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        src = sqlite3.connect(parsed.database)
        dst = sqlite3.connect(folder / "database.sqlite")
        try:
            src.backup(dst)  # SQLite's online backup API: a consistent copy while other processes read
        finally:
            dst.close()
            src.close()
        engine = sa.create_engine(f"sqlite:///{folder / 'database.sqlite'}")
        try:
            with engine.connect() as conn:
                return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                        for t in Base.metadata.sorted_tables}
        finally:
            engine.dispose()
    engine = create_db_engine(url)
    counts: dict[str, int] = {}
    try:
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
            for table in Base.metadata.sorted_tables:
                n = 0
                with (folder / f"{table.name}.jsonl").open("w") as fh:
                    for row in conn.execute(sa.select(table).order_by(*table.primary_key.columns)):
                        fh.write(json.dumps({k: _encode(v) for k, v in row._mapping.items()}) + "\n")
                        n += 1
                counts[table.name] = n
    finally:
        engine.dispose()
    return counts


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dt.datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"$dec": str(value)}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        key, v = next(iter(value.items()))
        if key == "$b64":
            return base64.b64decode(v)
        if key == "$dt":
            return dt.datetime.fromisoformat(v)
        if key == "$dec":
            return decimal.Decimal(v)
    return value


# ---- restore ---------------------------------------------------------------------------------------------------

def verify_backup(folder: Path) -> dict[str, Any]:
    """The manifest of a complete, intact backup.

    Raises:
        BackupError: no backup there, an interrupted (partial) one, or files that do not match the manifest.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BackupError(f"no backup at {folder}")
    path = folder / BACKUP_MANIFEST
    if not path.is_file():
        raise BackupError(f"{folder} is not a complete backup (no {BACKUP_MANIFEST}): the backup was interrupted "
                          "before it finished; make a new one with `python manage.py backup DIR`")
    try:
        meta = json.loads(path.read_text())
        files = meta["files"]
    except (ValueError, KeyError, TypeError):
        raise BackupError(f"{path} is corrupt; this backup cannot be restored") from None
    if meta.get("format") != FORMAT:
        raise BackupError(f"{folder} is a {meta.get('format')!r} backup; this version restores {FORMAT!r}")
    on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} - {BACKUP_MANIFEST}
    if on_disk != set(files):
        raise BackupError(f"{folder} does not match its manifest (files missing or added): it is damaged")
    for rel, digest in files.items():
        if file_sha256(folder / rel) != digest:
            raise BackupError(f"{folder / rel} does not match its checksum: the backup is damaged")
    return meta


def restore_backup(folder: Path, url: str, index_dir: Path, fingerprint: str, replace: bool = False) -> dict[str, Any]:
    """Restore a backup into the database at `url` and `index_dir`, and make its generation current.

    Stop the servers first: they keep what they loaded until restarted. The database is migrated to the current
    schema first; it must hold no catalog items unless `replace` (then every row is deleted first).

    Raises:
        BackupError: the backup is partial or damaged, from another schema revision or model, or the database is
            not empty and `replace` is not set.
    """
    meta = verify_backup(folder)
    head = head_revision()
    if meta["schema_revision"] != head:
        raise BackupError(f"the backup is at schema revision {meta['schema_revision']}, this code at {head}: restore "
                          "it with the Lookalike version that made it")
    if meta["fingerprint"] is not None and meta["fingerprint"] != fingerprint:
        raise BackupError(f"the backup's index was built with model {meta['fingerprint'][:12]}, the configured model "
                          f"is {fingerprint[:12]}: configure the model it was made with ([model] in config.toml)")
    upgrade_database(url)
    lock = writer_lock(index_dir)
    try:
        _restore_sql(Path(folder) / "sql", url, replace)
        if meta["generation"] is not None:
            name = meta["generation"]
            if not (index_dir / name / MANIFEST).is_file():
                tmp = index_dir / f".gen-restore-{os.getpid()}"
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(Path(folder) / "index" / name, tmp)
                os.replace(tmp, index_dir / name)
                fsync_dir(index_dir)
            make_current(index_dir, name)
    finally:
        lock.release()
    return meta


def _source_rows(sql: Path, table: sa.Table) -> Iterator[dict[str, Any]]:
    if (sql / "database.sqlite").is_file():
        engine = sa.create_engine(f"sqlite:///{sql / 'database.sqlite'}")
        try:
            with engine.connect() as conn:
                for row in conn.execute(sa.select(table)):
                    yield dict(row._mapping)
        finally:
            engine.dispose()
        return
    with (sql / f"{table.name}.jsonl").open() as fh:
        for line in fh:
            yield {k: _decode(v) for k, v in json.loads(line).items()}


def _restore_sql(sql: Path, url: str, replace: bool) -> None:
    engine = create_db_engine(url)
    tables = Base.metadata.sorted_tables
    try:
        with engine.begin() as conn:
            items = conn.execute(sa.select(sa.func.count()).select_from(Base.metadata.tables["catalog_items"]))
            if items.scalar_one() and not replace:
                raise BackupError("the database already holds catalog items; restore into an empty database, or "
                                  "pass --replace to delete everything in it first")
            for table in reversed(tables):
                conn.execute(table.delete())
            for table in tables:
                batch: list[dict[str, Any]] = []
                for row in _source_rows(sql, table):
                    batch.append(row)
                    if len(batch) >= 500:
                        conn.execute(table.insert(), batch)
                        batch = []
                if batch:
                    conn.execute(table.insert(), batch)
            if engine.dialect.name == "postgresql":  # serial columns continue after the restored ids
                for table in tables:
                    for col in table.primary_key.columns:
                        if col.autoincrement is True or (col.autoincrement == "auto" and
                                                         isinstance(col.type, sa.Integer)):
                            conn.execute(sa.text(
                                f"SELECT setval(pg_get_serial_sequence('{table.name}', '{col.name}'), "
                                f"COALESCE((SELECT max({col.name}) FROM {table.name}), 0) + 1, false)"))
    finally:
        engine.dispose()
