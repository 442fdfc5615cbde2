#!/usr/bin/env python3
"""Soak: several server processes over one database and index dir, mixed traffic and indexing churn, for a long time.

Three `manage.py serve` processes (waitress) share one SQLite database and one index dir, as several workers behind
a proxy would. A few clients with think time (so the run measures stability, not saturation of a small machine)
send a mix of requests, round robin over the processes: POST /api/search (real catalog photos and SYNTHETIC street
photos), GET /api/items/<id>/similar, GET /api/items/<id>/outfit, GET /api/items/<id>. Once a minute, in this
process, indexing churn runs as `manage.py index` / `remove` do (same library calls): a few new items are added,
a few catalog items change (new title; one gets another picture, so it is re-embedded), the items added two
minutes before are removed; each publishes a new index generation.

Every answer is checked: any 5xx, connection failure or unexpected 4xx is an error; a search result naming an item
whose removal had been committed before the request was sent is a wrong answer. Per minute: p50/p99 over all
requests, each process's resident memory (VmRSS) at the minute's end, errors, generations published. Acceptance
(issue 20): 0 errors, RSS growth <= 5% per process from the end of minute 2 (warm-up) to the end, p99 of the last
minute within 1.5x of minute 2.

    nice -n 10 python bench/soak.py [--minutes 30] [--servers 3] [--clients 4] [--think 0.5] [--items 300]
"""

from __future__ import annotations

import argparse
import csv
import http.client
import io
import json
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.report import markdown_table, update_section  # noqa: E402
from bench.serving import free_port, rss_mb, start_server  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "fashion-product-images"

ADD_PER_MINUTE = 4
CHANGE_PER_MINUTE = 3


@dataclass
class Query:
    kind: str  # "catalog" or "street" (SYNTHETIC)
    body: bytes
    content_type: str


def make_queries(rows: list[dict[str, str]], n_catalog: int, n_street: int, seed: int) -> list[Query]:
    """Multipart bodies of real catalog photos and SYNTHETIC street photos of other catalog products."""
    from PIL import Image

    from indexer.datasets.synthetic import SyntheticConfig, synthesize_street_photo

    rng = random.Random(seed)
    picks = rng.sample(rows, n_catalog + n_street)
    photos = [("catalog", (SHARED / r["image"]).read_bytes()) for r in picks[:n_catalog]]
    cfg = SyntheticConfig(size=320, min_product_height=0.3, max_product_height=0.5)
    gen = np.random.default_rng(seed)
    for r in picks[n_catalog:]:
        buf = io.BytesIO()
        synthesize_street_photo(Image.open(SHARED / r["image"]), gen, cfg=cfg).save(buf, "JPEG", quality=90)
        photos.append(("street", buf.getvalue()))
    out = []
    for kind, data in photos:
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.jpg\"\r\n"
                f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        out.append(Query(kind, body, f"multipart/form-data; boundary={boundary}"))
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def write_config(folder: Path) -> Path:
    """The served model (checkpoint, input size and runtime of config.toml) over a database and index in folder."""
    from indexer.settings import load_settings

    served = load_settings(REPO / "config.toml", env={})
    onnx = folder / "onnx"
    if (REPO / served.model.onnx_dir).is_dir():  # reuse the exported graph (read only); else it is exported here
        shutil.copytree(REPO / served.model.onnx_dir, onnx)
    text = f"""
[database]
url = "sqlite:///{folder / 'lookalike.db'}"
[model]
checkpoint = "{REPO / served.model.checkpoint}"
input_size = {served.model.input_size}
runtime = "{served.model.runtime}"
threads = 1
onnx_dir = "{onnx}"
[index]
dir = "{folder / 'index'}"
[web]
image_roots = ["{SHARED}"]
thumb_cache_dir = "{folder / 'thumbs'}"
torch_threads = 1
[outfit]
checkpoint = "{REPO / served.outfit.checkpoint}"
cache_dir = "{folder / 'outfits'}"
"""
    path = folder / "config.toml"
    path.write_text(text)
    return path


@dataclass
class Minute:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wrong: int = 0
    requests: int = 0
    rss: list[float] = field(default_factory=list)
    generations: int = 0
    churn_s: float = 0.0


class Soak:
    """Clients, churn and per-minute records."""

    def __init__(self, ports: list[int], queries, base_ids: list[int], started: float) -> None:
        self.ports, self.queries, self.base_ids = ports, queries, base_ids
        self.started = started
        self.minutes: dict[int, Minute] = {}
        self.removed_at: dict[int, float] = {}  # SQL id -> monotonic time its removal was committed
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def minute(self, t: float) -> Minute:
        return self.minutes.setdefault(int((t - self.started) // 60) + 1, Minute())

    def client(self, n: int, think: float) -> None:
        rng = random.Random(1000 + n)
        conns = {p: http.client.HTTPConnection("127.0.0.1", p, timeout=120) for p in self.ports}
        i = n
        while not self.stop.is_set():
            port = self.ports[i % len(self.ports)]
            i += 1
            r = rng.random()
            item = rng.choice(self.base_ids)
            if r < 0.4:
                q = rng.choice(self.queries)
                name, args = "search", ("POST", "/api/search?k=24", q.body, {"Content-Type": q.content_type})
            elif r < 0.6:
                name, args = "similar", ("GET", f"/api/items/{item}/similar?k=24")
            elif r < 0.75:
                name, args = "outfit", ("GET", f"/api/items/{item}/outfit")
            else:
                name, args = "item", ("GET", f"/api/items/{item}")
            t0 = time.monotonic()
            error, wrong = None, 0
            try:
                conns[port].request(*args)
                resp = conns[port].getresponse()
                body = resp.read()
                if resp.status != 200:
                    error = f"{name} on :{port}: HTTP {resp.status} {body[:160]!r}"
                elif name in ("search", "similar"):
                    ids = [h["id"] for h in json.loads(body)["results"]]
                    with self.lock:
                        wrong = sum(1 for x in ids if self.removed_at.get(x, float("inf")) < t0)
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                error = f"{name} on :{port}: {type(exc).__name__}: {exc}"
                conns[port].close()
                conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            ms = (time.monotonic() - t0) * 1000
            with self.lock:
                m = self.minute(t0)
                m.requests += 1
                m.latencies.append(ms)
                m.wrong += wrong
                if error:
                    m.errors.append(error)
            self.stop.wait(think * rng.uniform(0.5, 1.5))
        for c in conns.values():
            c.close()


def churn_rows(rows: list[dict[str, str]], step: int, pool: list[dict[str, str]], live_added: list[list[dict]]):
    """The catalog for churn step `step`: base rows (a few retitled, one with another picture) + the added rows
    still live; returns (rows to write, rows added this step, rows to remove this step)."""
    added = [dict(r, id=f"soak{step}-{r['id']}") for r in pool[step * ADD_PER_MINUTE:(step + 1) * ADD_PER_MINUTE]]
    live_added.append(added)
    gone = live_added.pop(0) if len(live_added) > 2 else []
    for j in range(CHANGE_PER_MINUTE):
        r = rows[(step * CHANGE_PER_MINUTE + j) % len(rows)]
        r["title"] = r["title"].split(" (rev")[0] + f" (rev {step})"
    rows[step % len(rows)]["image"] = pool[-1 - step % 20]["image"]
    return rows + [r for batch in live_added for r in batch], added, gone


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=int, default=30)
    ap.add_argument("--servers", type=int, default=3)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--think", type=float, default=0.5, help="mean seconds a client waits between requests")
    ap.add_argument("--items", type=int, default=300, help="catalog items indexed before the run")
    ap.add_argument("--threads", type=int, default=4, help="waitress threads per server process")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    from indexer.catalog.source import open_catalog
    from indexer.embedders import create_embedder_from_settings
    from indexer.settings import load_settings
    from indexer.wiring import create_pipeline, open_store, remove_items

    with (SHARED / "catalog.csv").open(newline="") as fh:
        every = list(csv.DictReader(fh))
    rows = every[::61][:args.items]
    pool = every[7::61][:(args.minutes + 2) * ADD_PER_MINUTE + 20]
    with tempfile.TemporaryDirectory(prefix="lookalike-soak-") as tmp:
        folder = Path(tmp)
        config = write_config(folder)
        settings = load_settings(config, env={})
        from indexer.store.db import upgrade_database

        upgrade_database(settings.database_url)
        store = open_store(settings)
        embedder = create_embedder_from_settings(settings)
        csv_path = folder / "catalog.csv"

        def index(rows_now: list[dict[str, str]]):
            with csv_path.open("w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(every[0].keys()))
                w.writeheader()
                w.writerows(rows_now)
            return create_pipeline(settings, store, embedder, progress=False).run(
                open_catalog(csv_path, images_root=SHARED))

        t0 = time.perf_counter()
        index(rows)
        print(f"indexed {len(rows)} items in {time.perf_counter() - t0:.0f}s", flush=True)
        base_ids = sorted(store.existing_items()[r["id"]].id for r in rows)
        queries = make_queries(rows, 20, 20, seed=11)
        ports = [free_port() for _ in range(args.servers)]
        procs = []
        try:
            for n, port in enumerate(ports):
                procs.append(start_server(config, port, folder / f"server{n}.log", threads=args.threads))
            print(f"{args.servers} servers up on ports {ports}", flush=True)
            soak = Soak(ports, queries, base_ids, time.monotonic())
            clients = [threading.Thread(target=soak.client, args=(n, args.think), daemon=True)
                       for n in range(args.clients)]
            for c in clients:
                c.start()
            live_added: list[list[dict]] = []
            for step in range(args.minutes):
                minute_start = soak.started + step * 60
                time.sleep(max(0.0, minute_start + 5 - time.monotonic()))  # churn 5 s into each minute
                c0 = time.monotonic()
                rows_now, _added, gone = churn_rows(rows, step, pool, live_added)
                report = index(rows_now)
                published = int(bool(report.published))
                if gone:
                    ids = {r["id"]: store.existing_items()[r["id"]].id for r in gone}
                    remove_items(settings, store, embedder, list(ids))
                    with soak.lock:
                        now = time.monotonic()
                        soak.removed_at.update({i: now for i in ids.values()})
                    published += 1
                with soak.lock:
                    m = soak.minute(c0)
                    m.churn_s += time.monotonic() - c0
                    m.generations += published
                time.sleep(max(0.0, minute_start + 60 - time.monotonic()))
                with soak.lock:
                    soak.minute(minute_start).rss = [round(rss_mb(p.pid), 1) for p in procs]
                m = soak.minutes.get(step + 1, Minute())
                print(f"minute {step + 1}: {m.requests} requests, p50 {pct(m.latencies, 50):.0f} ms, "
                      f"p99 {pct(m.latencies, 99):.0f} ms, errors {len(m.errors)}, wrong {m.wrong}, "
                      f"RSS {m.rss} MB, churn {m.churn_s:.1f}s", flush=True)
            soak.stop.set()
            for c in clients:
                c.join(timeout=180)
        finally:
            for p in procs:
                p.terminate()
                p.wait(timeout=30)
            store.close()
    report_soak(soak, args)


def report_soak(soak: Soak, args) -> None:  # noqa: ANN001 - argparse namespace
    minutes = [soak.minutes[m] for m in sorted(soak.minutes) if m <= args.minutes]
    rows = []
    for n, m in enumerate(minutes, 1):
        rows.append([n, m.requests, round(pct(m.latencies, 50), 1), round(pct(m.latencies, 99), 1), len(m.errors),
                     m.wrong, m.generations, round(m.churn_s, 1), " / ".join(f"{x:.0f}" for x in m.rss)])
    errors = sum(len(m.errors) for m in minutes)
    wrong = sum(m.wrong for m in minutes)
    warm, last = minutes[1], minutes[-1]
    growth = [(b - a) / a for a, b in zip(warm.rss, last.rss, strict=True)]
    ratio = pct(last.latencies, 99) / pct(warm.latencies, 99)
    ok = errors == 0 and wrong == 0 and max(growth) <= 0.05 and ratio <= 1.5
    examples = sorted({e for m in minutes for e in m.errors})[:5]
    body = (
        f"{args.servers} `manage.py serve` processes (waitress, {args.threads} threads each) over one SQLite "
        f"database and one index dir; served model (config.toml: efficientnet_lite0 + `models/lite0-street2shop/"
        f"model.pt`, 128 px, runtime auto, 1 thread per process). {args.items} real catalog items indexed first. "
        f"{args.clients} clients, think time {args.think:.1f} s (mean), round robin over the processes: 40% POST "
        f"/api/search (real catalog photos and **SYNTHETIC** street photos, localize auto), 20% similar, 15% outfit, "
        f"25% item. Churn once a minute in the bench process (library calls of `index` / `remove`): "
        f"{ADD_PER_MINUTE} items added, {CHANGE_PER_MINUTE} retitled, 1 new picture (re-embedded), the items added "
        f"two minutes before removed; each publishes a generation. Run under `nice -n 10` on a machine shared "
        f"with other jobs.\n\n"
        + markdown_table(["minute", "requests", "p50 ms", "p99 ms", "errors", "removed items served",
                          "generations published", "churn s", "RSS MB per process"], rows)
        + f"\n\nErrors (5xx, connection failures, unexpected 4xx): **{errors}**; removed items served after their "
        f"removal was committed: **{wrong}**. RSS growth per process from the end of minute 2 to the end of minute "
        f"{len(minutes)}: **{', '.join(f'{g:+.1%}' for g in growth)}** (acceptance <= +5%). p99 minute "
        f"{len(minutes)} / minute 2: **{ratio:.2f}x** (acceptance <= 1.5x). Verdict: **{'pass' if ok else 'FAIL'}**."
        + (f"\n\nFirst errors: {examples}" if examples else "")
    )
    print(body)
    if not args.no_write:
        update_section("soak", f"Soak: {args.servers} server processes, {len(minutes)} minutes of mixed traffic "
                               "with indexing churn", body)


if __name__ == "__main__":
    main()
