"""Crash tests: real `manage.py index` / `remove` processes killed with SIGKILL, then rerun.

Invariants after each kill + rerun: every catalog item present exactly once in SQL and in the
index, index count == SQL count, `manage.py check` passes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from indexer.pipeline.crash_safety import CRASH_POINTS
from indexer.settings import load_settings
from indexer.store.db import upgrade_database
from indexer.vectors.generations import load_generation
from tests.conftest import PYTHON, REPO, run_manage, write_config, write_small_catalog

N_ITEMS = 48
pytestmark = [pytest.mark.slow, pytest.mark.reliability("crash")]
INDEX_POINTS = [p for p in CRASH_POINTS if not p.startswith("remove-") and p != "mid-metadata-update"]


@pytest.fixture
def env(tmp_path: Path):
    csv = write_small_catalog(tmp_path / "cat", N_ITEMS, step=53)
    config = write_config(tmp_path, model={"input_size": 64, "batch_size": 8}, pipeline={"commit_every": 8})
    # In-process (a `manage.py db upgrade` process costs seconds per test; test_corruption.py runs that command).
    upgrade_database(load_settings(config, env={}).database_url)
    return config, csv


def sql_rows(config: Path) -> dict[str, str]:
    import sqlite3

    db = load_settings(config, env={}).database_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT external_id, status FROM catalog_items").fetchall())


def assert_search_safe(config: Path, csv: Path) -> None:
    """What a server would answer right after the crash: only active SQL items, or a clear refusal."""
    image = csv.parent / "images" / (csv.read_text().splitlines()[1].split(",")[0] + ".jpg")
    out = run_manage("search", str(image), "-k", "20", "--json", config=config)
    assert "Traceback" not in out.stderr
    if out.returncode != 0:
        assert out.returncode == 2 and "error:" in out.stderr
        return
    rows = sql_rows(config)
    for r in json.loads(out.stdout)["results"]:
        assert rows.get(r["external_id"]) == "active", r


def assert_invariants(config: Path, expected: int, scoreboard=None) -> None:
    check = run_manage("check", "--json", config=config)
    report = json.loads(check.stdout)
    assert check.returncode == 0, report
    assert report["index_count"] == report["sql_count"] == expected
    settings = load_settings(config, env={})
    gen = load_generation(settings.index_dir)
    assert len(np.unique(gen.ids)) == len(gen.ids) == expected
    import sqlite3

    db = settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        (n, distinct) = conn.execute("SELECT count(*), count(DISTINCT external_id) FROM catalog_items").fetchone()
        (emb,) = conn.execute("SELECT count(*) FROM item_embeddings").fetchone()
    if scoreboard is not None:
        scoreboard.lost(max(0, expected - min(n, emb, len(gen.ids))))
    assert n == distinct == emb == expected


@pytest.mark.parametrize("point", INDEX_POINTS)
def test_kill_at_named_point_then_rerun(env, point, scoreboard):
    config, csv = env
    killed = run_manage("index", str(csv), "--no-progress", "--crash-at", point, config=config)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert_search_safe(config, csv)
    rerun = run_manage("index", str(csv), "--json", config=config)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["new"] + summary["unchanged"] == N_ITEMS
    if point in ("after-sql-commit", "before-index-save", "during-index-save", "before-swap", "after-swap"):
        assert summary["new"] < N_ITEMS, "finished items were redone"
    assert_invariants(config, N_ITEMS, scoreboard)


def test_kill_mid_metadata_update_then_rerun(env, scoreboard):
    config, csv = env
    assert run_manage("index", str(csv), "--no-progress", config=config).returncode == 0
    lines = csv.read_text().splitlines()
    retitled = [lines[0]] + [ln.replace(ln.split(",")[1], "Retitled " + ln.split(",")[1], 1) for ln in lines[1:]]
    csv.write_text("\n".join(retitled) + "\n")
    killed = run_manage("index", str(csv), "--no-progress", "--crash-at", "mid-metadata-update", config=config)
    assert killed.returncode == -signal.SIGKILL
    assert_search_safe(config, csv)
    rerun = json.loads(run_manage("index", str(csv), "--json", config=config).stdout)
    assert rerun["metadata_updated"] == N_ITEMS and rerun["new"] == 0
    assert_invariants(config, N_ITEMS, scoreboard)


@pytest.mark.parametrize("point", ["remove-after-sql", "remove-before-purge"])
def test_kill_during_remove_then_rerun(env, point, scoreboard):
    config, csv = env
    assert run_manage("index", str(csv), "--no-progress", config=config).returncode == 0
    ids = [ln.split(",")[0] for ln in csv.read_text().splitlines()[1:4]]
    killed = run_manage("remove", *ids, "--crash-at", point, config=config)
    assert killed.returncode == -signal.SIGKILL
    # Whatever the index holds, search must not return the tombstoned items.
    out = run_manage("search", str(csv.parent / f"images/{ids[0]}.jpg"), "-k", "5", "--json", config=config)
    assert out.returncode == 0, out.stderr
    assert ids[0] not in [r["external_id"] for r in json.loads(out.stdout)["results"]]
    if point == "remove-after-sql":
        assert run_manage("check", config=config).returncode == 1  # index still holds them: flagged
    assert run_manage("remove", *ids, config=config).returncode in (0, 1)  # 1: already purged, "not found"
    assert_invariants(config, N_ITEMS - 3, scoreboard)


@pytest.mark.parametrize("delay", [2.0, 4.0])
def test_kill_at_random_moments(env, delay, scoreboard):
    config, csv = env
    e = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
    e["LOOKALIKE_CONFIG"] = str(config)
    proc = subprocess.Popen([PYTHON, str(REPO / "manage.py"), "index", str(csv), "--no-progress"], cwd=REPO, env=e,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    rerun = run_manage("index", str(csv), "--json", config=config)
    assert rerun.returncode == 0, rerun.stderr
    assert_invariants(config, N_ITEMS, scoreboard)
    again = json.loads(run_manage("index", str(csv), "--json", config=config).stdout)
    assert again["unchanged"] == N_ITEMS and not again["published"]


@pytest.mark.reliability("concurrency")
def test_second_writer_exits_with_clear_message(env):
    config, csv = env
    from filelock import FileLock

    settings = load_settings(config, env={})
    settings.index_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(settings.index_dir / ".writer.lock")):
        out = run_manage("index", str(csv), config=config)
    assert out.returncode == 2
    assert "another indexing job" in out.stderr and "Traceback" not in out.stderr
