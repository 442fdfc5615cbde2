"""Crash tests: real `manage.py index` / `remove` processes killed with SIGKILL, then rerun, on SQLite and on
PostgreSQL (the server `make test` starts; tests/pg.py gives each test a fresh schema).

Right after each kill a fresh search service (what a new server process builds) answers only active SQL items or
refuses with a one-line message. Invariants after each kill + rerun: every catalog item present exactly once in SQL
and in the index, index count == SQL count, the check `manage.py check` runs passes. Only the killed run is a
`manage.py` process; the search, the rerun and the check make the same library calls as those commands, in this
process (the commands have their own tests, and three interpreter starts per case would double the suite's time
once every case runs on two databases).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from indexer.catalog.images import decode_image
from indexer.catalog.source import open_catalog
from indexer.embedders import create_embedder_from_settings
from indexer.pipeline.crash_safety import CRASH_POINTS
from indexer.settings import load_settings
from indexer.store.db import upgrade_database
from indexer.vectors.factory import create_vector_store
from indexer.vectors.generations import GenerationError, load_generation
from indexer.wiring import create_pipeline, create_search_service, open_store, remove_items
from tests.conftest import PYTHON, REPO, run_manage, write_config, write_small_catalog
from tests.pg import DATABASES, database_url, pick, rows

N_ITEMS = 48
pytestmark = [pytest.mark.slow, pytest.mark.reliability("crash")]
INDEX_POINTS = [p for p in CRASH_POINTS if not p.startswith("remove-") and p != "mid-metadata-update"]


MODEL = {"input_size": 64, "batch_size": 8}


@pytest.fixture(scope="module")
def module_embedder(tmp_path_factory: pytest.TempPathFactory):
    """The embedder `manage.py index` builds from these tests' config (same fingerprint), built once."""
    return create_embedder_from_settings(load_settings(write_config(tmp_path_factory.mktemp("emb"), model=MODEL),
                                                       env={}))


@pytest.fixture(params=DATABASES)
def db_kind(request) -> str:
    return pick(request.param)


@pytest.fixture
def env(tmp_path: Path, db_kind: str):
    csv = write_small_catalog(tmp_path / "cat", N_ITEMS, step=53)
    with database_url(db_kind, tmp_path) as url:
        config = write_config(tmp_path, db_url=url, model=MODEL, pipeline={"commit_every": 8})
        # In-process (a `manage.py db upgrade` process costs seconds per test; test_corruption.py runs that command).
        upgrade_database(url)
        yield config, csv


def sql_rows(config: Path) -> dict[str, str]:
    return dict(rows(load_settings(config, env={}).database_url, "SELECT external_id, status FROM catalog_items"))


def rerun_index(config: Path, csv: Path, embedder) -> dict:
    """What `manage.py index CSV --json` prints (the same calls, in this process)."""
    settings = load_settings(config, env={})
    store = open_store(settings)
    pipeline = create_pipeline(settings, store, embedder, progress=False)
    try:
        return pipeline.run(open_catalog(csv)).as_dict()
    finally:
        pipeline.vector_store.close()
        store.close()


def rerun_remove(config: Path, ids: list[str], embedder) -> dict:
    """What `manage.py remove IDS` does (the same call, in this process)."""
    settings = load_settings(config, env={})
    store = open_store(settings)
    try:
        return remove_items(settings, store, embedder, ids)
    finally:
        store.close()


def check_report(config: Path, embedder):
    """What `manage.py check` reports (the same calls, in this process)."""
    settings = load_settings(config, env={})
    store, vector_store = open_store(settings), create_vector_store(settings)
    try:
        return vector_store.check(store, embedder.fingerprint)
    finally:
        vector_store.close()
        store.close()


def search(config: Path, image: Path, k: int, embedder) -> list[str] | None:
    """External ids a fresh search service (what a new server or `manage.py search` builds) answers, or None for
    a refusal (checked to be the one line the CLI and the API show)."""
    settings = load_settings(config, env={})
    store = open_store(settings)
    try:
        hits = create_search_service(settings, store, embedder).search_image(decode_image(image.read_bytes()), k)
    except GenerationError as exc:
        assert len(str(exc).splitlines()) == 1, exc
        return None
    finally:
        store.close()
    return [h.item["external_id"] for h in hits]


def assert_search_safe(config: Path, csv: Path, embedder) -> None:
    """What a fresh server would answer right after the crash: only active SQL items, or a clear refusal."""
    image = csv.parent / "images" / (csv.read_text().splitlines()[1].split(",")[0] + ".jpg")
    found = search(config, image, 20, embedder)
    active = sql_rows(config)
    for external_id in found or []:
        assert active.get(external_id) == "active", external_id


def assert_invariants(config: Path, expected: int, embedder, scoreboard=None) -> None:
    report = check_report(config, embedder)
    assert report.ok, report.as_dict()
    assert report.index_count == report.sql_count == expected
    settings = load_settings(config, env={})
    gen = load_generation(settings.index_dir)
    assert len(np.unique(gen.ids)) == len(gen.ids) == expected
    url = settings.database_url
    ((n, distinct),) = rows(url, "SELECT count(*), count(DISTINCT external_id) FROM catalog_items")
    ((emb,),) = rows(url, "SELECT count(*) FROM item_embeddings")
    if scoreboard is not None:
        scoreboard.lost(max(0, expected - min(n, emb, len(gen.ids))))
    assert n == distinct == emb == expected


@pytest.mark.parametrize("point", INDEX_POINTS)
def test_kill_at_named_point_then_rerun(env, point, scoreboard, module_embedder):
    config, csv = env
    killed = run_manage("index", str(csv), "--no-progress", "--crash-at", point, config=config)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert_search_safe(config, csv, module_embedder)
    summary = rerun_index(config, csv, module_embedder)
    assert summary["new"] + summary["unchanged"] == N_ITEMS
    if point in ("after-sql-commit", "before-index-save", "during-index-save", "before-swap", "after-swap"):
        assert summary["new"] < N_ITEMS, "finished items were redone"
    assert_invariants(config, N_ITEMS, module_embedder, scoreboard)


def test_kill_mid_metadata_update_then_rerun(env, scoreboard, module_embedder):
    config, csv = env
    assert rerun_index(config, csv, module_embedder)["published"]
    lines = csv.read_text().splitlines()
    retitled = [lines[0]] + [ln.replace(ln.split(",")[1], "Retitled " + ln.split(",")[1], 1) for ln in lines[1:]]
    csv.write_text("\n".join(retitled) + "\n")
    killed = run_manage("index", str(csv), "--no-progress", "--crash-at", "mid-metadata-update", config=config)
    assert killed.returncode == -signal.SIGKILL
    assert_search_safe(config, csv, module_embedder)
    rerun = rerun_index(config, csv, module_embedder)
    assert rerun["metadata_updated"] == N_ITEMS and rerun["new"] == 0
    assert_invariants(config, N_ITEMS, module_embedder, scoreboard)


@pytest.mark.parametrize("point", ["remove-after-sql", "remove-before-purge"])
def test_kill_during_remove_then_rerun(env, point, scoreboard, module_embedder):
    config, csv = env
    assert rerun_index(config, csv, module_embedder)["published"]
    ids = [ln.split(",")[0] for ln in csv.read_text().splitlines()[1:4]]
    killed = run_manage("remove", *ids, "--crash-at", point, config=config)
    assert killed.returncode == -signal.SIGKILL
    # Whatever the index holds, search must not return the tombstoned items.
    found = search(config, csv.parent / f"images/{ids[0]}.jpg", 5, module_embedder)
    assert found and ids[0] not in found
    if point == "remove-after-sql":
        assert not check_report(config, module_embedder).ok  # index still holds them: flagged
    rerun_remove(config, ids, module_embedder)  # after remove-before-purge they are gone already: "unknown"
    assert_invariants(config, N_ITEMS - 3, module_embedder, scoreboard)


# Two random moments on SQLite, one on PostgreSQL (every named point runs on both).
RANDOM_MOMENTS = [pytest.param(2.0, "sqlite", id="2.0-sqlite"), pytest.param(4.0, "sqlite", id="4.0-sqlite"),
                  pytest.param(3.0, "postgresql", id="3.0-postgresql", marks=pytest.mark.postgres)]


@pytest.mark.parametrize(("delay", "db_kind"), RANDOM_MOMENTS, indirect=["db_kind"])
def test_kill_at_random_moments(env, delay, scoreboard, module_embedder):
    config, csv = env
    e = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
    e["LOOKALIKE_CONFIG"] = str(config)
    proc = subprocess.Popen([PYTHON, str(REPO / "manage.py"), "index", str(csv), "--no-progress"], cwd=REPO, env=e,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    rerun_index(config, csv, module_embedder)
    assert_invariants(config, N_ITEMS, module_embedder, scoreboard)
    again = rerun_index(config, csv, module_embedder)
    assert again["unchanged"] == N_ITEMS and not again["published"]


@pytest.mark.reliability("concurrency")
@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)  # a file lock in the index dir: no SQL involved
def test_second_writer_exits_with_clear_message(env):
    config, csv = env
    from filelock import FileLock

    settings = load_settings(config, env={})
    settings.index_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(settings.index_dir / ".writer.lock")):
        out = run_manage("index", str(csv), config=config)
    assert out.returncode == 2
    assert "another indexing job" in out.stderr and "Traceback" not in out.stderr
