"""Crash tests with a live server: `manage.py serve` answers searches over HTTP while `manage.py index` and
`remove` are SIGKILLed at every named point, then rerun, all against the same database and index dir.

Every id the server returns must be an active SQL item at some moment of that request (SQL is read just before
the request is sent and just after its answer arrives: adds and removes only move one way within a step, so an
id that was active while the server read SQL is active in one of the two reads), with the external id SQL gives
it; no answer may be a 5xx. Right after each kill the test waits for answers given while SQL and the index dir
are left exactly as the killed process left them.
"""

from __future__ import annotations

import csv
import json
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from indexer.pipeline.crash_safety import CRASH_POINTS
from tests.conftest import index_in_process, run_manage, write_config, write_small_catalog
from tests.e2e.conftest import start_server, stop_server
from tests.e2e.test_live_http import call_json
from tests.indexer.test_crash import assert_invariants

pytestmark = [pytest.mark.slow, pytest.mark.reliability("crash")]

N_BASE = 12
STEP_ITEMS = 3
# In this order each killed run also finishes what the one before it left (a crash while recovering).
INDEX_STEPS = ("mid-batch", "after-sql-commit", "mid-metadata-update", "before-index-save", "during-index-save",
               "before-swap", "after-swap")
REMOVE_STEPS = ("remove-after-sql", "remove-before-purge")
# Answers the client must have checked after a kill (before anything else runs) and during each step.
ANSWERS_AFTER_KILL = 2


class SearchingClient(threading.Thread):
    """Keeps searching the live server (by photo and by item) and checks each answer against SQL."""

    def __init__(self, url: str, db: Path, photos: list[bytes], item_ids: list[int]) -> None:
        super().__init__(name="searching-client", daemon=True)
        self.url = url
        self.db, self.photos, self.item_ids = db, photos, item_ids
        self.stop = threading.Event()
        self.wrong: list[str] = []
        self._marks: list[tuple[float, str]] = []
        self.per_step: dict[str, int] = {}
        self._cv = threading.Condition()

    def mark(self, step: str) -> None:
        """From now on, answers to requests sent after this moment count for `step`."""
        with self._cv:
            self._marks.append((time.monotonic(), step))

    def wait_for_answers(self, step: str, n: int, timeout: float = 120.0) -> None:
        """Block until n requests sent after mark(step) were answered and checked."""
        with self._cv:
            ok = self._cv.wait_for(lambda: self.per_step.get(step, 0) >= n or not self.is_alive(), timeout)
        assert ok and self.per_step.get(step, 0) >= n, f"the client checked {self.per_step.get(step, 0)} answers"

    def _active(self, conn: sqlite3.Connection) -> dict[int, str]:
        return dict(conn.execute("SELECT id, external_id FROM catalog_items WHERE status = 'active'").fetchall())

    def _request(self, i: int) -> tuple[str, int, dict]:
        if i % 2 == 0:
            photo = self.photos[i // 2 % len(self.photos)]
            return "search", *call_json(self.url, "POST", "/api/search",
                                    {"image": ("q.jpg", photo), "k": "10", "localize": "off"})
        item = self.item_ids[i // 2 % len(self.item_ids)]
        return f"similar:{item}", *call_json(self.url, "GET", f"/api/items/{item}/similar?k=10")

    def _check(self, what: str, status: int, body: dict, before: dict[int, str], after: dict[int, str]) -> None:
        if status >= 500:
            self.wrong.append(f"{what}: {status} {body}")
        elif status == 404 and what.startswith("similar:"):
            item = int(what.split(":")[1])
            if item in before and item in after:  # active all along: a 404 is wrong
                self.wrong.append(f"{what}: 404 for an active item")
        elif status != 200:
            self.wrong.append(f"{what}: {status} {body}")
        else:
            if len(body["results"]) != 10:  # always more than 10 active items here: an empty answer is wrong too
                self.wrong.append(f"{what}: {len(body['results'])} results for k=10")
            for hit in body["results"]:
                if before.get(hit["id"]) != hit["external_id"] and after.get(hit["id"]) != hit["external_id"]:
                    self.wrong.append(f"{what}: returned id {hit['id']} ({hit['external_id']}), not an active "
                                      "SQL item during the request")

    def run(self) -> None:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=60)
        try:
            i = 0
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    before = self._active(conn)
                    what, status, body = self._request(i)
                    after = self._active(conn)
                    self._check(what, status, body, before, after)
                except Exception as exc:  # noqa: BLE001 - a dropped connection or a non-JSON answer is wrong too
                    self.wrong.append(f"request {i}: {type(exc).__name__}: {exc}")
                with self._cv:
                    for at, step in self._marks:
                        if sent >= at:
                            self.per_step[step] = self.per_step.get(step, 0) + 1
                    self._cv.notify_all()
                i += 1
                time.sleep(0.05)  # leave the CPU to the indexer on a 2-core machine
        finally:
            conn.close()
            with self._cv:
                self._cv.notify_all()


def _write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_live_server_answers_only_active_items_through_every_crash(tmp_path, shared_data, small_embedder,
                                                                     scoreboard):
    assert set(INDEX_STEPS + REMOVE_STEPS) == set(CRASH_POINTS), "a named crash point is not exercised here"
    n_total = N_BASE + STEP_ITEMS * sum(p != "mid-metadata-update" for p in INDEX_STEPS)
    full = write_small_catalog(tmp_path / "cat", n_total, step=59)
    with full.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    catalog = tmp_path / "cat" / "catalog.csv"
    _write_rows(catalog, rows[:N_BASE])
    config = write_config(tmp_path, model={"input_size": 96, "batch_size": 4}, pipeline={"commit_every": 4})
    index_in_process(config, catalog, small_embedder)
    db = tmp_path / "lookalike.db"
    with sqlite3.connect(db) as conn:
        sql_id = dict(conn.execute("SELECT external_id, id FROM catalog_items").fetchall())
    removed = [[rows[1]["id"], rows[2]["id"]], [rows[3]["id"], rows[4]["id"]]]
    # Queries that hit the items about to be removed (their own photos, their ids) and the others.
    photos = [(tmp_path / "cat" / r["image"]).read_bytes() for r in rows[:6]]
    item_ids = [sql_id[r["id"]] for r in rows[:6]]

    proc, url = start_server(config, tmp_path / "server.log")
    client = SearchingClient(url, db, photos, item_ids)
    client.start()
    try:
        n = N_BASE
        for point in INDEX_STEPS:
            if point == "mid-metadata-update":
                rows[:N_BASE] = [{**r, "title": "Retitled " + r["title"]} for r in rows[:N_BASE]]
            else:
                n += STEP_ITEMS
            _write_rows(catalog, rows[:n])
            client.mark(point)
            killed = run_manage("index", str(catalog), "--no-progress", "--crash-at", point, config=config)
            assert killed.returncode == -signal.SIGKILL, (point, killed.stderr[-2000:])
            client.mark(point + " (after the kill)")
            client.wait_for_answers(point + " (after the kill)", ANSWERS_AFTER_KILL)
            scoreboard.cases(1)
        client.mark("index rerun")
        rerun = run_manage("index", str(catalog), "--json", config=config)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        summary = json.loads(rerun.stdout)
        assert summary["rows"] == n == n_total and not summary["problems"]
        assert summary["new"] == 0, "the run killed after the swap had finished every item: none may be redone"
        client.wait_for_answers("index rerun", ANSWERS_AFTER_KILL)
        # The running server now serves the finished generation: the last item added is found by its photo.
        status, health = call_json(url, "GET", "/healthz")
        assert status == 200 and health["count"] == n_total, health
        status, found = call_json(url, "POST", "/api/search", {"image": ("q.jpg", (tmp_path / "cat" / rows[-1]["image"])
                                                                     .read_bytes()), "k": "1", "localize": "off"})
        assert status == 200 and found["results"][0]["external_id"] == rows[-1]["id"], found
        with sqlite3.connect(db) as conn:
            titles = [t for (t,) in conn.execute("SELECT title FROM catalog_items")]
        assert sum(t.startswith("Retitled ") for t in titles) == N_BASE

        for point, ids in zip(REMOVE_STEPS, removed, strict=True):
            client.mark(point)
            killed = run_manage("remove", *ids, "--crash-at", point, config=config)
            assert killed.returncode == -signal.SIGKILL, (point, killed.stderr[-2000:])
            client.mark(point + " (after the kill)")
            client.wait_for_answers(point + " (after the kill)", ANSWERS_AFTER_KILL)
            scoreboard.cases(1)
        client.mark("remove rerun")
        again = run_manage("remove", *removed[0], *removed[1], config=config)
        assert again.returncode in (0, 1), again.stderr[-2000:]  # 1: already purged ("not found")
        client.wait_for_answers("remove rerun", ANSWERS_AFTER_KILL)
    finally:
        client.stop.set()
        client.join(timeout=120)
        stop_server(proc)
    scoreboard.wrong(len(client.wrong))
    assert not client.wrong, client.wrong[:10]
    for step in INDEX_STEPS + REMOVE_STEPS:
        assert client.per_step.get(step, 0) > client.per_step.get(step + " (after the kill)", 0), \
            f"no answer was checked while {step} ran"
    assert "Traceback" not in (tmp_path / "server.log").read_text()
    assert_invariants(config, n_total - 4, small_embedder, scoreboard)

