"""Several server processes over one database and index dir while `manage.py index` / `remove` change the catalog.

Three `manage.py serve` processes (waitress), as behind a proxy, share the database (PostgreSQL, the server `make
test` starts, where it is reachable; SQLite otherwise) and the index dir. While a client keeps searching all three,
`manage.py index` adds items, then changes items (new titles), and `manage.py remove` removes items; each publishes
an index generation.

The bound, stated and checked: every process serves the new generation from the first request it answers after the
publishing command has returned (each request re-reads the CURRENT pointer; no timer, no polling interval), and no
request sent after a removal's SQL commit (the `remove` command's return) gets a removed item, from any process
(hits are hydrated from SQL active rows). No answer is a 5xx.
"""

from __future__ import annotations

import csv
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from indexer.settings import load_settings
from indexer.vectors.generations import current_name
from tests.conftest import index_in_process, run_manage, write_config, write_small_catalog
from tests.e2e.conftest import start_server, stop_server
from tests.e2e.test_live_http import call_json
from tests.pg import database_url, pg_available

pytestmark = [pytest.mark.slow, pytest.mark.reliability("concurrency")]
N_SERVERS = 3
N_BASE, N_ADDED = 12, 4
DB_KIND = "postgresql" if pg_available() else "sqlite"



class Client(threading.Thread):
    """Searches every server in turn (by photo and by item) and records what would break the bound."""

    def __init__(self, urls: list[str], photos: list[bytes], item_ids: list[int]) -> None:
        super().__init__(daemon=True)
        self.urls, self.photos, self.item_ids = urls, photos, item_ids
        self.removed: dict[str, float] = {}  # external id -> when its removal had been committed
        self.problems: list[str] = []
        self.answers = 0
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            url = self.urls[i % len(self.urls)]
            sent = time.monotonic()
            try:
                if i % 2:
                    item = self.item_ids[i % len(self.item_ids)]
                    status, body = call_json(url, "GET", f"/api/items/{item}/similar?k=8")
                else:
                    status, body = call_json(url, "POST", "/api/search", {"image": ("q.jpg", self.photos[i % len(
                        self.photos)]), "k": "8", "localize": "off"})
            except Exception as exc:  # noqa: BLE001 - a dropped connection counts too
                self.problems.append(f"{url}: {type(exc).__name__}: {exc}")
                continue
            if status != 200:
                self.problems.append(f"{url}: HTTP {status} {body}")
            else:
                for hit in body["results"]:
                    if self.removed.get(hit["external_id"], float("inf")) < sent:
                        self.problems.append(f"{url}: removed item {hit['external_id']} served")
            self.answers += 1
            i += 1
            time.sleep(0.05)


def write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def assert_all_serve(urls: list[str], generation: str) -> None:
    """The first request each process answers now is served from `generation`."""
    for url in urls:
        status, health = call_json(url, "GET", "/healthz")
        assert status == 200 and health["generation"] == generation, (url, health)


@pytest.fixture
def db_url(tmp_path: Path):
    with database_url(DB_KIND, tmp_path) as url:
        yield url


@pytest.mark.parametrize("kind", [pytest.param(DB_KIND, marks=[pytest.mark.postgres] if DB_KIND == "postgresql"
                                               else [])])
def test_three_processes_follow_index_changes(tmp_path, db_url, kind, small_embedder, shared_data, scoreboard):
    full = write_small_catalog(tmp_path / "cat", N_BASE + N_ADDED, step=67)
    with full.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    catalog = tmp_path / "cat" / "catalog.csv"
    write_rows(catalog, rows[:N_BASE])
    config = write_config(tmp_path, db_url=db_url, model={"input_size": 96, "batch_size": 8},
                          web={"image_roots": [str(tmp_path / "cat")], "thumb_cache_dir": str(tmp_path / "thumbs")})
    index_in_process(config, catalog, small_embedder)
    index_dir = load_settings(config, env={}).index_dir
    photo = {r["id"]: (tmp_path / "cat" / r["image"]).read_bytes() for r in rows}

    with ThreadPoolExecutor(N_SERVERS) as pool:
        started = list(pool.map(lambda n: start_server(config, tmp_path / f"server{n}.log"), range(N_SERVERS)))
    procs, urls = [p for p, _ in started], [u for _, u in started]
    try:
        status, first = call_json(urls[0], "GET", "/api/items/1")
        assert status == 200, first
        client = Client(urls, [photo[r["id"]] for r in rows[:4]], [2, 3, 4])  # 1 = rows[0], removed below
        client.start()

        # Add: the new items are found by every process right after `index` returns.
        write_rows(catalog, rows)
        out = run_manage("index", str(catalog), "--no-progress", config=config)
        assert out.returncode == 0, out.stderr
        generation = current_name(index_dir)
        assert_all_serve(urls, generation)
        for url in urls:
            status, found = call_json(url, "POST", "/api/search", {"image": ("q.jpg", photo[rows[-1]["id"]]), "k": "1",
                                                              "localize": "off"})
            assert status == 200 and found["results"][0]["external_id"] == rows[-1]["id"], (url, found)
        scoreboard.cases(1)

        # Change: new titles are what every process answers next.
        changed = [{**r, "title": "Changed " + r["title"]} if n < 2 else r for n, r in enumerate(rows)]
        write_rows(catalog, changed)
        out = run_manage("index", str(catalog), "--no-progress", config=config)
        assert out.returncode == 0, out.stderr
        for url in urls:
            status, found = call_json(url, "POST", "/api/search", {"image": ("q.jpg", photo[rows[0]["id"]]), "k": "1",
                                                              "localize": "off"})
            assert status == 200 and found["results"][0]["title"] == changed[0]["title"], (url, found)
        scoreboard.cases(1)

        # Remove: from the remove command's return on, no process serves the removed items.
        gone = [rows[0]["id"], rows[-1]["id"]]
        write_rows(catalog, [r for r in changed if r["id"] not in gone])
        before = current_name(index_dir)
        out = run_manage("remove", *gone, config=config)
        assert out.returncode == 0, out.stderr
        committed = time.monotonic()
        client.removed.update(dict.fromkeys(gone, committed))
        generation = current_name(index_dir)
        assert generation != before
        assert_all_serve(urls, generation)
        for url in urls:
            for external_id in gone:
                status, found = call_json(url, "POST", "/api/search", {"image": ("q.jpg", photo[external_id]), "k": "8",
                                                                  "localize": "off"})
                assert status == 200 and external_id not in [h["external_id"] for h in found["results"]], url
        scoreboard.cases(1)
        answers = client.answers
        deadline = time.monotonic() + 120
        while client.answers < answers + 2 * N_SERVERS and time.monotonic() < deadline and client.is_alive():
            time.sleep(0.1)  # a few more answers from every process after the removal
        client.stop.set()
        client.join(timeout=120)
    finally:
        for p in procs:
            stop_server(p)
    scoreboard.wrong(len(client.problems))
    assert not client.problems, client.problems[:10]
    assert client.answers >= 2 * N_SERVERS
    for n in range(N_SERVERS):
        assert "Traceback" not in (tmp_path / f"server{n}.log").read_text()
