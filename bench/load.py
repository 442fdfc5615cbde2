#!/usr/bin/env python3
"""Load: the production server (`manage.py serve`, waitress, as `make run` starts it) under >= 8 concurrent
loopback clients for a bounded time.

Each client loops over a mix of requests with its own keep-alive connection: POST /api/search with catalog
photos and SYNTHETIC street photos, GET /api/items/<id>/similar, GET /api/items/<id>, GET /healthz. After a
warm-up, the server's resident memory (VmRSS) is sampled every second; the run reports p50/p99 per
endpoint, errors (any non-2xx or connection failure), and RSS growth from the end of warm-up to the end.
The ratio printed is the served rate vs the same server's single-client rate measured first in the same run.

    python bench/load.py [--clients 8] [--seconds 120] [--items 400]
"""

from __future__ import annotations

import argparse
import http.client
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.latency import SHARED, free_port, make_queries, pct, rss_mb, start_server, write_catalog, write_config  # noqa: E402
from bench.report import markdown_table, update_section  # noqa: E402


def drive(port: int, queries, item_ids: list[int], clients: int, seconds: float, seed: int):
    """Run `clients` looping clients for `seconds`; returns ({endpoint: [ms]}, [errors], requests)."""
    lat: dict[str, list[float]] = {}
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker(n: int) -> None:
        rng = random.Random(seed + n)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while time.monotonic() < stop_at:
            r = rng.random()
            if r < 0.6:
                q = rng.choice(queries)
                name, args = f"POST /api/search ({q.kind})", ("POST", "/api/search?k=24", q.body,
                                                              {"Content-Type": q.content_type})
            elif r < 0.8:
                name, args = "GET /api/items/<id>/similar", ("GET", f"/api/items/{rng.choice(item_ids)}/similar?k=24")
            elif r < 0.95:
                name, args = "GET /api/items/<id>", ("GET", f"/api/items/{rng.choice(item_ids)}")
            else:
                name, args = "GET /healthz", ("GET", "/healthz")
            t0 = time.perf_counter()
            try:
                conn.request(*args)
                resp = conn.getresponse()
                body = resp.read()
                if resp.status >= 300:
                    raise RuntimeError(f"{name}: HTTP {resp.status} {body[:160]!r}")
                ms = (time.perf_counter() - t0) * 1000
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                continue
            with lock:
                lat.setdefault(name, []).append(ms)
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, errors, sum(len(v) for v in lat.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--warmup", type=float, default=20)
    ap.add_argument("--items", type=int, default=400, help="catalog items indexed for the run")
    ap.add_argument("--input-size", type=int, default=0, help="model input size (0 = config.toml's)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    assert args.clients >= 8, "the load bench runs at least 8 clients"
    from indexer.settings import load_settings

    input_size = args.input_size or load_settings(REPO / "config.toml", env={}).model.input_size
    with tempfile.TemporaryDirectory(prefix="lookalike-load-") as tmp:
        folder = Path(tmp)
        csv_path = write_catalog(folder, args.items, step=97)
        config = write_config(folder, input_size, torch_threads=0)
        from tests.conftest import run_manage

        for cmd in (("db", "upgrade"), ("index", str(csv_path), "--images-root", str(SHARED), "--no-progress")):
            out = run_manage(*cmd, config=config, timeout=3600)
            if out.returncode:
                raise SystemExit(out.stderr)
        queries = make_queries(csv_path, 40, 40, seed=7)
        port = free_port()
        proc = start_server(config, port, folder / "server.log", threads=args.clients)
        try:
            from indexer.wiring import open_store

            store = open_store(load_settings(config, env={}))
            item_ids = store.sample_ids(200)
            store.close()
            if not item_ids:
                raise SystemExit("nothing was indexed")
            single, single_err, single_n = drive(port, queries, item_ids, 1, args.warmup, seed=1)
            rss_warm = rss_mb(proc.pid)
            samples: list[float] = [rss_warm]
            done = threading.Event()

            def sample_rss() -> None:
                while not done.wait(1.0):
                    samples.append(rss_mb(proc.pid))

            sampler = threading.Thread(target=sample_rss)
            sampler.start()
            t0 = time.perf_counter()
            lat, errors, n = drive(port, queries, item_ids, args.clients, args.seconds, seed=100)
            elapsed = time.perf_counter() - t0
            done.set()
            sampler.join()
            rss_end = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    growth = (max(samples[-5:] + [rss_end]) - rss_warm) / rss_warm
    rows = [[name, len(v), pct(v, 50), pct(v, 99)] for name, v in sorted(lat.items())]
    all_ms = [x for v in lat.values() for x in v]
    rows.append(["**all**", len(all_ms), pct(all_ms, 50), pct(all_ms, 99)])
    rate = n / elapsed
    single_rate = single_n / args.warmup
    body = (
        f"{args.clients} concurrent keep-alive clients for {args.seconds:.0f}s against `manage.py serve` (waitress, "
        f"{args.clients} threads) on loopback; {args.items} real catalog items indexed, model input {input_size}px; "
        f"street photos are **synthetic**. Warm-up: {args.warmup:.0f}s with 1 client "
        f"({single_rate:.1f} req/s, {len(single_err)} errors).\n\n"
        + markdown_table(["endpoint", "requests", "p50 ms", "p99 ms"], rows)
        + f"\n\nThroughput {rate:.1f} req/s = {rate / single_rate:.2f}x the single-client rate. "
        f"Errors: **{len(errors)}** (non-2xx or connection failures). Resident memory: {rss_warm:.0f} MB after "
        f"warm-up, {rss_end:.0f} MB at the end, peak {max(samples):.0f} MB: growth **{growth:+.1%}** "
        f"(acceptance: < 10%)."
    )
    if errors:
        body += "\n\nFirst errors:\n" + "\n".join(f"- {e}" for e in errors[:5])
    print(body)
    if not args.no_write:
        update_section("load", "Load: 8 concurrent clients against the production server", body)
    if errors or growth >= 0.10:
        sys.exit(1)


if __name__ == "__main__":
    main()
