"""`manage.py backup` / `restore` on SQLite and PostgreSQL: round trip into a fresh database and index dir with no
server running, refusal of snapshots from another model or schema revision, and a backup killed half-way (SIGKILL at
a named point) that restore refuses with a clear message."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from indexer.backup.snapshot import BackupError, create_backup, restore_backup, verify_backup
from indexer.catalog.images import decode_image
from indexer.catalog.source import open_catalog
from indexer.embedders import create_embedder_from_settings
from indexer.settings import load_settings
from indexer.store.db import upgrade_database
from indexer.vectors.generations import current_name
from indexer.wiring import create_pipeline, create_search_service, open_store
from tests.conftest import index_in_process, run_manage, write_config, write_small_catalog
from tests.pg import DATABASES, database_url, pick, rows

MODEL = {"input_size": 64, "batch_size": 16}
N_ITEMS = 16


@pytest.fixture(params=DATABASES)
def db_kind(request) -> str:
    return pick(request.param)


@pytest.fixture(scope="module")
def module_embedder(tmp_path_factory: pytest.TempPathFactory):
    return create_embedder_from_settings(load_settings(write_config(tmp_path_factory.mktemp("emb"), model=MODEL),
                                                       env={}))


@pytest.fixture
def indexed(tmp_path: Path, db_kind: str, module_embedder):
    csv = write_small_catalog(tmp_path / "cat", N_ITEMS, step=43)
    with database_url(db_kind, tmp_path / "src") as url:
        config = write_config(tmp_path / "src", db_url=url, model=MODEL)
        index_in_process(config, csv, module_embedder)
        yield config, csv


@pytest.fixture
def fresh(tmp_path: Path, db_kind: str):
    """An empty (migrated) database and an empty index dir of the same kind: where a backup is restored."""
    with database_url(db_kind, tmp_path / "dst") as url:
        config = write_config(tmp_path / "dst", db_url=url, model=MODEL)
        upgrade_database(url)
        yield config


def catalog_rows(config: Path) -> list[tuple]:
    url = load_settings(config, env={}).database_url
    return rows(url, "SELECT c.id, c.external_id, c.title, c.status, e.fingerprint FROM catalog_items c "
                     "JOIN item_embeddings e ON e.item_id = c.id ORDER BY c.id")


def test_round_trip_into_a_fresh_database_without_a_server(indexed, fresh, tmp_path, module_embedder):
    config, csv = indexed
    out = run_manage("backup", str(tmp_path / "bk"), config=config)
    assert out.returncode == 0, out.stderr
    meta = json.loads((tmp_path / "bk" / "manifest.json").read_text())
    assert meta["rows"]["catalog_items"] == N_ITEMS and meta["generation"] == current_name(
        load_settings(config, env={}).index_dir)
    restored = run_manage("restore", str(tmp_path / "bk"), config=fresh)
    assert restored.returncode == 0, restored.stderr
    assert catalog_rows(fresh) == catalog_rows(config)
    settings = load_settings(fresh, env={})
    assert current_name(settings.index_dir) == meta["generation"]
    store = open_store(settings)
    try:
        image = decode_image((csv.parent / "images" / (csv.read_text().splitlines()[1].split(",")[0] + ".jpg"))
                             .read_bytes())
        hits = create_search_service(settings, store, module_embedder).search_image(image, 3)
        assert hits and hits[0].item["external_id"] == csv.read_text().splitlines()[1].split(",")[0]
        # The restored store goes on: nothing is re-embedded, and a new item gets a new id (sequences restored).
        report = create_pipeline(settings, store, module_embedder, progress=False).run(open_catalog(csv))
        assert report.unchanged == N_ITEMS and report.new == 0
        more = write_small_catalog(tmp_path / "more", N_ITEMS + 1, step=43)  # the same items and one more
        report = create_pipeline(settings, store, module_embedder, progress=False).run(open_catalog(more))
        assert report.new == 1 and report.published
    finally:
        store.close()
    ids = [r[0] for r in catalog_rows(fresh)]
    assert len(ids) == len(set(ids)) == N_ITEMS + 1 and max(ids) > max(r[0] for r in catalog_rows(config))
    # A second restore over a store that holds items needs --replace.
    with pytest.raises(BackupError, match="--replace"):
        restore_backup(tmp_path / "bk", settings.database_url, settings.index_dir, module_embedder.fingerprint)


def test_restore_refuses_another_model_or_schema_revision(indexed, fresh, tmp_path, module_embedder):
    config, _ = indexed
    src = load_settings(config, env={})
    create_backup(src.database_url, src.index_dir, tmp_path / "bk")  # what `manage.py backup` calls
    settings = load_settings(fresh, env={})
    with pytest.raises(BackupError, match="built with model"):
        restore_backup(tmp_path / "bk", settings.database_url, settings.index_dir, "0" * 32)
    manifest = tmp_path / "bk" / "manifest.json"
    meta = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**meta, "schema_revision": "0001"}))
    with pytest.raises(BackupError, match="schema revision 0001"):
        restore_backup(tmp_path / "bk", settings.database_url, settings.index_dir, module_embedder.fingerprint)
    manifest.write_text(json.dumps(meta))
    vectors = tmp_path / "bk" / "index" / meta["generation"] / "vectors.npy"
    vectors.write_bytes(vectors.read_bytes()[:-8] + b"\0" * 8)
    out = run_manage("restore", str(tmp_path / "bk"), config=fresh)
    assert out.returncode == 2 and "does not match its checksum" in out.stderr and "Traceback" not in out.stderr
    assert not catalog_rows(fresh)  # nothing was restored


# Both named points on SQLite; on PostgreSQL the later one (SQL exported, index copied, no manifest yet).
KILLS = [pytest.param("sqlite", "backup-after-sql", id="sqlite-backup-after-sql"),
         pytest.param("sqlite", "backup-before-manifest", id="sqlite-backup-before-manifest"),
         pytest.param("postgresql", "backup-before-manifest", id="postgresql-backup-before-manifest",
                      marks=pytest.mark.postgres)]


@pytest.mark.reliability("crash")
@pytest.mark.parametrize(("db_kind", "point"), KILLS, indirect=["db_kind"])
def test_backup_killed_midway_is_never_taken_for_a_good_one(indexed, fresh, tmp_path, point, module_embedder):
    config, _ = indexed
    target = tmp_path / "bk"
    killed = run_manage("backup", str(target), "--crash-at", point, config=config)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not target.exists()  # the name appears only for a complete backup
    (partial,) = tmp_path.glob(".bk.partial-*")
    out = run_manage("restore", str(partial), config=fresh)
    assert out.returncode == 2 and "not a complete backup" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    with pytest.raises(BackupError, match="no backup at"):
        verify_backup(target)
    assert not catalog_rows(fresh)
    # The source is untouched and its writer lock free: a new backup succeeds and restores.
    src = load_settings(config, env={})
    create_backup(src.database_url, src.index_dir, target)
    settings = load_settings(fresh, env={})
    restore_backup(target, settings.database_url, settings.index_dir, module_embedder.fingerprint)
    assert catalog_rows(fresh) == catalog_rows(config)
