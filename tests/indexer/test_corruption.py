"""Corruption and environment faults: each gives a clear message, wrong data is never served, the
last good generation keeps serving where one exists, and `manage.py index --rebuild` recovers.

Every case runs on SQLite and on PostgreSQL (tests/pg.py: a fresh schema per test). The two SQLite file faults have
PostgreSQL equivalents: a locked database file -> a server that refuses connections; a read-only database file -> a
read-only server (default_transaction_read_only, as on a hot standby)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from indexer.catalog.images import decode_image
from indexer.catalog.source import open_catalog
from indexer.embedders import create_embedder_from_settings
from indexer.settings import load_settings
from indexer.vectors.generations import GenerationError, current_name
from indexer.wiring import create_pipeline, create_search_service, open_store
from tests.conftest import index_in_process, run_manage, write_config, write_small_catalog
from tests.pg import DATABASES, database_url, pick

pytestmark = pytest.mark.reliability("corruption")


MODEL = {"input_size": 64, "batch_size": 16}


@pytest.fixture(scope="module")
def module_embedder(tmp_path_factory: pytest.TempPathFactory):
    """The embedder `manage.py index` builds from these tests' config, built once for the module."""
    config = write_config(tmp_path_factory.mktemp("embedder"), model=MODEL)
    return create_embedder_from_settings(load_settings(config, env={}))


@pytest.fixture(params=DATABASES)
def db_kind(request) -> str:
    return pick(request.param)


@pytest.fixture
def indexed(tmp_path: Path, module_embedder, db_kind: str):
    """A 30-item catalog, migrated and indexed as `manage.py db upgrade` + `manage.py index` do, but in this process
    (two fewer interpreter starts per test; those commands have their own tests); returns (config, csv). Every
    fault below is then met through the CLI."""
    csv = write_small_catalog(tmp_path / "cat", 30, step=41)
    with database_url(db_kind, tmp_path) as url:
        config = write_config(tmp_path, db_url=url, model=MODEL)
        index_in_process(config, csv, module_embedder)
        yield config, csv


def gen_dir(config: Path) -> Path:
    s = load_settings(config, env={})
    return s.index_dir / current_name(s.index_dir)


def query_image(csv: Path) -> Path:
    return csv.parent / "images" / (csv.read_text().splitlines()[1].split(",")[0] + ".jpg")


def check_ok(config: Path, embedder) -> bool:
    """Whether the check `manage.py check` runs passes (the same calls, in this process)."""
    from indexer.vectors.factory import create_vector_store

    settings = load_settings(config, env={})
    store, vector_store = open_store(settings), create_vector_store(settings)
    try:
        return vector_store.check(store, embedder.fingerprint).ok
    except GenerationError:
        return False
    finally:
        vector_store.close()
        store.close()


def assert_refused_then_rebuilt(config: Path, csv: Path, message: str, embedder) -> None:
    """search refuses with a one-line message naming the fix; check fails; --rebuild recovers. The refusal and the
    rebuild go through the CLI; the checks and the search after the rebuild run in this process (same calls)."""
    out = run_manage("search", str(query_image(csv)), "--json", config=config)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert message in out.stderr and "manage.py index --rebuild" in out.stderr, out.stderr
    assert not check_ok(config, embedder)
    fixed = run_manage("index", str(csv), "--rebuild", "--json", config=config)
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout)["embedded"] == 0  # rebuilt from SQL vectors
    assert check_ok(config, embedder)
    settings = load_settings(config, env={})
    store = open_store(settings)
    try:
        hits = create_search_service(settings, store, embedder).search_image(
            decode_image(query_image(csv).read_bytes()), 10)
    finally:
        store.close()
    assert hits


def test_truncated_index_file(indexed, module_embedder):
    config, csv = indexed
    f = gen_dir(config) / "index.faiss"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    assert_refused_then_rebuilt(config, csv, "corrupt", module_embedder)


def test_garbled_vectors_file(indexed, module_embedder):
    config, csv = indexed
    f = gen_dir(config) / "vectors.npy"
    data = bytearray(f.read_bytes())
    data[200:260] = b"\x00" * 60
    f.write_bytes(bytes(data))
    assert_refused_then_rebuilt(config, csv, "corrupt", module_embedder)


def test_garbled_manifest(indexed, module_embedder):
    config, csv = indexed
    (gen_dir(config) / "manifest.json").write_text("{not json")
    assert_refused_then_rebuilt(config, csv, "manifest.json is corrupt", module_embedder)


def test_manifest_from_another_model(indexed, module_embedder):
    config, csv = indexed
    m = gen_dir(config) / "manifest.json"
    data = json.loads(m.read_text())
    data["fingerprint"] = "0" * 32
    m.write_text(json.dumps(data))
    assert_refused_then_rebuilt(config, csv, "was built with model", module_embedder)


def test_index_from_another_database(indexed, tmp_path, db_kind, module_embedder):
    config, csv = indexed
    with database_url(db_kind, tmp_path / "other") as url:
        other = write_config(tmp_path / "other", db_url=url, model={"input_size": 64, "batch_size": 16},
                             index={"dir": str(load_settings(config, env={}).index_dir)})
        assert run_manage("db", "upgrade", config=other).returncode == 0
        # The fresh database knows none of the index's ids: refuse rather than serve ids that mean nothing.
        out = run_manage("search", str(query_image(csv)), config=other)
        assert out.returncode == 2 and "unknown to the database" in out.stderr and "Traceback" not in out.stderr
        assert not check_ok(other, module_embedder)


def test_current_points_at_missing_generation(indexed, module_embedder):
    config, csv = indexed
    shutil.rmtree(gen_dir(config))
    assert_refused_then_rebuilt(config, csv, "has no manifest", module_embedder)


def test_missing_image_files_are_reported_not_fatal(indexed, tmp_path):
    config, csv = indexed
    lines = csv.read_text().splitlines()
    gone = [ln.split(",")[0] for ln in lines[1:4]]
    for ext in gone:
        (csv.parent / "images" / f"{ext}.jpg").unlink()
    csv2 = csv.parent / "more.csv"
    csv2.write_text("\n".join(lines) + "\n")
    out = run_manage("index", str(csv2), "--json", config=config)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["skipped"] == 3 and all("image file not found" in p for p in report["problems"])
    assert report["unchanged"] == 27
    assert run_manage("check", config=config).returncode == 0  # already-indexed items are kept


def test_unreachable_database_server_gives_clear_message(indexed, db_kind, module_embedder):
    """PostgreSQL's counterpart of a locked database file: the server refuses connections (down, restarting)."""
    if db_kind != "postgresql":
        pytest.skip("SQLite has no server; its counterpart is test_locked_database_gives_clear_message")
    config, csv = indexed
    from tests.e2e.conftest import free_port

    url = load_settings(config, env={}).database_url
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    down = url.replace(host_port, f"127.0.0.1:{free_port()}")  # nothing listens there
    env = {"LOOKALIKE_DATABASE__URL": down}
    for args in (("index", str(csv), "--no-progress"), ("search", str(query_image(csv)))):
        out = run_manage(*args, config=config, env_extra=env)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert "database error" in out.stderr and "refused" in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert check_ok(config, module_embedder)  # the real store is untouched


def test_locked_database_gives_clear_message(indexed, db_kind):
    if db_kind != "sqlite":
        pytest.skip("a database file lock is SQLite's; PostgreSQL: test_unreachable_database_server_gives_...")
    config, csv = indexed
    db = load_settings(config, env={}).database_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        (csv.parent / "images" / (csv.read_text().splitlines()[1].split(",")[0] + ".jpg")).write_bytes(
            (csv.parent / "images" / (csv.read_text().splitlines()[2].split(",")[0] + ".jpg")).read_bytes())
        out = run_manage("index", str(csv), "--no-progress", config=config,
                         env_extra={"LOOKALIKE_DATABASE__BUSY_TIMEOUT_S": "1"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "database error" in out.stderr and "locked" in out.stderr
    assert run_manage("index", str(csv), "--no-progress", config=config).returncode == 0
    assert run_manage("check", config=config).returncode == 0


def _mount_tmpfs(path: Path, size: str, options: str = "") -> bool:
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (f",{options}" if options else "")
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True).returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_read_only_database_gives_clear_message(indexed, tmp_path, db_kind, module_embedder):
    config, csv = indexed
    if db_kind == "postgresql":
        # A read-only server (a hot standby, or default_transaction_read_only): writes fail with a clear message.
        url = load_settings(config, env={}).database_url
        env = {"LOOKALIKE_DATABASE__URL": url + "%20-cdefault_transaction_read_only%3Don"}
        out = run_manage("remove", csv.read_text().splitlines()[1].split(",")[0], config=config, env_extra=env)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert "database error" in out.stderr and "read-only transaction" in out.stderr, out.stderr
        assert check_ok(config, module_embedder)  # the real store is untouched
        return
    ro = tmp_path / "rofs"
    if not _mount_tmpfs(ro, "4m"):
        pytest.skip("cannot mount a filesystem here (needs root)")
    try:
        db = Path(load_settings(config, env={}).database_url.removeprefix("sqlite:///"))
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copy(db, ro / "ro.db")
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        env = {"LOOKALIKE_DATABASE__URL": f"sqlite:///{ro / 'ro.db'}"}
        out = run_manage("remove", csv.read_text().splitlines()[1].split(",")[0], config=config, env_extra=env)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert "database error" in out.stderr and ("read-only" in out.stderr or "readonly" in out.stderr
                                                   or "unable to open" in out.stderr)
    finally:
        _umount(ro)
    assert run_manage("check", config=config).returncode == 0  # the real store is untouched


def test_full_disk_during_index_save_keeps_current_generation(indexed, tmp_path):
    config, csv = indexed
    small = tmp_path / "small"
    gen_bytes = sum(f.stat().st_size for f in gen_dir(config).iterdir())
    room = (int(gen_bytes * 1.5) // 4096 + 4) * 4  # KiB: one generation fits, a second does not
    if not _mount_tmpfs(small, f"{room}k"):
        pytest.skip("cannot mount a filesystem here (needs root)")
    try:
        s = load_settings(config, env={})
        shutil.copytree(s.index_dir, small / "index", ignore=shutil.ignore_patterns("*.lock"))
        env = {"LOOKALIKE_INDEX__DIR": str(small / "index")}
        before = (small / "index" / "CURRENT").read_text()
        out = run_manage("index", str(csv), "--rebuild", "--no-progress", config=config, env_extra=env)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert "No space left on device" in out.stderr
        assert (small / "index" / "CURRENT").read_text() == before
        assert not list((small / "index").glob(".gen-*")), "temp folder left behind"
        ok = run_manage("search", str(query_image(csv)), "--json", config=config, env_extra=env)
        assert ok.returncode == 0 and json.loads(ok.stdout)["results"]  # the last good generation serves
    finally:
        _umount(small)


def test_server_keeps_last_good_generation(indexed, tmp_path):
    config, csv = indexed
    settings = load_settings(config, env={})
    store = open_store(settings)
    from engine import create_embedder

    embedder = create_embedder("efficientnet_lite0", input_size=64, device="cpu")
    service = create_search_service(settings, store, embedder)
    first = service.refresh()
    img = decode_image(query_image(csv).read_bytes())
    before = [h.id for h in service.search_image(img, 5)]
    # A newer generation appears but is corrupt: keep serving the old one and say why.
    pipeline = create_pipeline(settings, store, embedder, progress=False)
    pipeline.run(open_catalog(csv), rebuild=True)
    new = current_name(settings.index_dir)
    assert new != first
    (settings.index_dir / new / "ids.npy").write_bytes(b"garbage")
    assert service.refresh() == first
    assert [h.id for h in service.search_image(img, 5)] == before
    assert "corrupt" in service.status()["warning"]
    # A fresh process has no good generation to fall back to: it refuses.
    with pytest.raises(GenerationError, match="rebuild"):
        create_search_service(settings, store, embedder).refresh()
    store.close()


@pytest.mark.reliability("concurrency")
def test_concurrent_refresh_never_sees_partial_generation(indexed):
    config, csv = indexed
    settings = load_settings(config, env={})
    store = open_store(settings)
    from engine import create_embedder

    embedder = create_embedder("efficientnet_lite0", input_size=64, device="cpu")
    service = create_search_service(settings, store, embedder)
    vec = embedder.embed_images([decode_image(query_image(csv).read_bytes())])
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                hits = service.search_vectors(vec, 10)[0]
                assert len(hits) == 10 and len({h.id for h in hits}) == 10
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        pipeline = create_pipeline(settings, store, embedder, progress=False)
        for _ in range(3):
            pipeline.run(open_catalog(csv), rebuild=True)
    finally:
        stop.set()
        for t in threads:
            t.join()
    store.close()
    assert not errors, errors[0]
