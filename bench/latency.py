#!/usr/bin/env python3
"""Latency of POST /api/search through the running server vs the same work in-process, same images, same run.

Serves what `make run` serves: the configuration given by --config (default: the repository's config.toml, so the
served model, its runtime (model.runtime) and the index that `manage.py index` built; run that first). Starts
`manage.py serve` (waitress) on a free loopback port and drives it with 1 and 4 concurrent keep-alive clients using
three kinds of photo: catalog product shots, SYNTHETIC street photos (a catalog product pasted at 30-50% of the frame
height on a cluttered scene, 320 px; indexer/datasets/synthetic.py), and the same street photos as 12-megapixel
phone JPEGs (upscaled to 3464x3464, quality 90; decoded reduced, web.decode_min_side). Between HTTP blocks it runs
the in-process path for the same images at the same concurrency: decode_image + QueryEngine.search (crop/localise,
embed, vector search, SQL hydration), which is what a request does besides HTTP, multipart and JSON. Blocks
alternate so that both sides see the same machine load. Reports p50/p99 per client count and image kind, the
HTTP + framework overhead at p50, errors, and the server's resident memory (VmRSS) over the run.

    python bench/latency.py                     # ~2,000 HTTP requests, writes BENCHMARKS.md section "latency"
    python bench/latency.py --requests 400 --no-write   # quick look
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.report import markdown_table, update_section  # noqa: E402
from bench.serving import free_port, rss_mb, start_server  # noqa: E402

# Side of the square phone-size copies of the street photos: 3464 x 3464 = 12.0 megapixels.
PHONE_SIDE = 3464
KINDS = ("catalog", "street", "street-12mp", "text")


@dataclass
class Query:
    kind: str  # one of KINDS
    data: bytes
    body: bytes = b""
    content_type: str = ""


@dataclass
class Samples:
    http: dict[tuple[int, str], list[float]] = field(default_factory=dict)
    server: dict[tuple[int, str], list[float]] = field(default_factory=dict)
    inproc: dict[tuple[int, str], list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    wall: dict[int, float] = field(default_factory=dict)
    count: dict[int, int] = field(default_factory=dict)


def make_queries(store, n_catalog: int, n_street: int, seed: int) -> list[Query]:
    """Catalog product shots, SYNTHETIC street photos of other catalog products, and those street photos as
    12-megapixel phone JPEGs."""
    from PIL import Image

    from indexer.datasets.synthetic import SyntheticConfig, synthesize_street_photo

    ids = store.sample_ids(n_catalog + n_street, seed=seed)
    paths = [Path(store.image_path(i)) for i in ids]
    out = [Query("catalog", path.read_bytes()) for path in paths[:n_catalog]]
    cfg = SyntheticConfig(size=320, min_product_height=0.3, max_product_height=0.5)
    gen = np.random.default_rng(seed)
    phone = []
    for path in paths[n_catalog:]:
        photo = synthesize_street_photo(Image.open(path), gen, cfg=cfg)
        buf = io.BytesIO()
        photo.save(buf, "JPEG", quality=90)
        out.append(Query("street", buf.getvalue()))
        big = io.BytesIO()
        photo.resize((PHONE_SIDE, PHONE_SIDE), Image.BICUBIC).save(big, "JPEG", quality=90)
        phone.append(Query("street-12mp", big.getvalue()))
    out.extend(phone)
    for q in out:
        q.body, q.content_type = multipart(q.data)
    # Search by words (issue 17): titles of other catalog products as JSON queries (docs/text-search.md).
    items = store.get_items(store.sample_ids(n_catalog + n_street, seed=seed + 1))
    for item in items.values():
        body = json.dumps({"text": item["title"]}).encode()
        out.append(Query("text", item["title"].encode(), body, "application/json"))
    return out


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class KeepAliveClient:
    """A minimal HTTP/1.1 keep-alive client: requests are prebuilt bytes, so the client adds next to nothing to
    what is measured beyond the socket round trip."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def exchange(self, request: bytes) -> tuple[int, bytes]:
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(int(line.split(b":", 1)[1]) for line in lines[1:] if line.lower().startswith(b"content-length:"))
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, body

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def close(self) -> None:
        self.sock.close()


def http_block(port: int, queries: list[Query], order: list[int], clients: int, samples: Samples, k: int,
               record: bool) -> None:
    """Send the queries (by index) from `clients` threads, each with its own keep-alive connection."""
    lock = threading.Lock()
    cursor = iter(order)
    requests = [(f"POST /api/search?k={k} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {q.content_type}\r\n"
                 f"Content-Length: {len(q.body)}\r\n\r\n").encode() + q.body for q in queries]

    def worker() -> None:
        conn = KeepAliveClient(port)
        while True:
            with lock:
                i = next(cursor, None)
            if i is None:
                break
            q = queries[i]
            t0 = time.perf_counter()
            try:
                status, payload = conn.exchange(requests[i])
                elapsed = (time.perf_counter() - t0) * 1000
                if status != 200:
                    raise RuntimeError(f"HTTP {status}: {payload[:200]!r}")
                server_total = json.loads(payload)["timing_ms"]["total"]
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                with lock:
                    samples.errors.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = KeepAliveClient(port)
                continue
            if record:
                with lock:
                    samples.http.setdefault((clients, q.kind), []).append(elapsed)
                    samples.server.setdefault((clients, q.kind), []).append(server_total)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def inproc_block(engine, web, queries: list[Query], order: list[int], clients: int, samples: Samples,
                 k: int, record: bool) -> None:
    from indexer.catalog.images import decode_image
    from indexer.search.query import QueryOptions

    def one(i: int) -> tuple[str, float]:
        q = queries[i]
        t0 = time.perf_counter()
        if q.kind == "text":
            engine.search_composed(None, QueryOptions(k=k, text=q.data.decode()))
            return q.kind, (time.perf_counter() - t0) * 1000
        engine.search(decode_image(q.data, web.max_image_pixels, web.decode_min_side), QueryOptions(k=k))
        return q.kind, (time.perf_counter() - t0) * 1000

    with ThreadPoolExecutor(clients) as pool:
        for kind, ms in pool.map(one, order):
            if record:
                samples.inproc.setdefault((clients, kind), []).append(ms)


def balanced_order(n: int, count: int, rng: random.Random) -> list[int]:
    """count indexes into n photos, each photo as often as possible, shuffled."""
    order = (list(range(n)) * (count // n + 1))[:count]
    rng.shuffle(order)
    return order


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=REPO / "config.toml",
                    help="Configuration to serve (its model, runtime and index; `manage.py index` first).")
    ap.add_argument("--images", type=int, default=60, help="Distinct catalog products the query photos show.")
    ap.add_argument("--street-share", type=float, default=1 / 3,
                    help="Share of them shown as street photos (each also as a 12-megapixel JPEG).")
    ap.add_argument("--requests", type=int, default=1000, help="HTTP requests per client count (>= 1000 each).")
    ap.add_argument("--inproc", type=int, default=300, help="In-process queries per client count.")
    ap.add_argument("--clients", default="1,4", help="Concurrent clients to measure, comma-separated.")
    ap.add_argument("--blocks", type=int, default=10, help="Alternating HTTP / in-process blocks per client count.")
    ap.add_argument("--server-threads", type=int, default=8, help="waitress worker threads.")
    ap.add_argument("-k", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="Print only; do not update BENCHMARKS.md.")
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help="Query kinds to measure, comma-separated (e.g. text); a subset implies --no-write.")
    args = ap.parse_args()
    levels = [int(c) for c in args.clients.split(",")]

    from indexer.embedders import create_embedder_from_settings, detector_from_settings, query_embedder_from_settings
    from indexer.search.query import QueryEngine
    from indexer.settings import load_settings
    from indexer.wiring import create_search_service, open_store

    started = time.perf_counter()
    load_start = os.getloadavg()
    config = args.config.resolve()
    settings = load_settings(config, env={})
    store = open_store(settings)
    n_items = store.count_items()
    if n_items == 0:
        raise SystemExit(f"error: nothing is indexed for {config}; run `python manage.py index` first")
    embedder = create_embedder_from_settings(settings)
    n_street = round(args.images * args.street_share)
    queries = [q for q in make_queries(store, args.images - n_street, n_street, args.seed)
               if q.kind in args.kinds.split(",")]
    service = create_search_service(settings, store, embedder)
    from indexer.search.composed import text_setup_from_settings

    detector = detector_from_settings(settings, embedder)[0]
    query_embedder = query_embedder_from_settings(settings, embedder)[0]
    engine = QueryEngine(service, detector, settings.web.localize, *text_setup_from_settings(settings),
                         query_embedder=query_embedder)
    engine.warm_up()
    model = {"fingerprint": embedder.fingerprint[:12], "dim": embedder.dim, "input": embedder.input_size,
             "runtime": embedder.runtime, "detector": settings.web.detector if detector is not None else "none",
             "street_encoder": query_embedder.fingerprint[:12] if query_embedder is not embedder else "none",
             "generation": service.served()[0].manifest.name}
    with tempfile.TemporaryDirectory(prefix="lookalike-latency-") as tmp:
        folder = Path(tmp)
        port = free_port()
        server = start_server(config, port, folder / "server.log", args.server_threads, folder / "thumbs")
        samples = Samples()
        rss: list[tuple[str, float]] = []
        try:
            # Warm-up: every photo twice through every server thread count used (allocator arenas, lazy init).
            warm = list(range(len(queries))) * 2
            http_block(port, queries, warm, max(levels), samples, args.k, record=False)
            inproc_block(engine, settings.web, queries, warm[: len(queries)], max(levels), samples, args.k,
                         record=False)
            rss.append(("after warm-up", rss_mb(server.pid)))
            rng = random.Random(args.seed)
            for clients in levels:
                # Both sides see the same mix: every photo equally often, in a shuffled order.
                http_order = balanced_order(len(queries), args.requests, rng)
                inproc_order = balanced_order(len(queries), args.inproc, rng)
                wall = 0.0
                for b in range(args.blocks):
                    part = http_order[b::args.blocks]
                    t = time.perf_counter()
                    http_block(port, queries, part, clients, samples, args.k, record=True)
                    wall += time.perf_counter() - t
                    inproc_block(engine, settings.web, queries, inproc_order[b::args.blocks], clients, samples,
                                 args.k, record=True)
                    rss.append((f"{clients} client(s), block {b + 1}", rss_mb(server.pid)))
                    print(f"clients={clients} block {b + 1}/{args.blocks}: RSS {rss[-1][1]:.0f} MB, "
                          f"errors {len(samples.errors)}", flush=True)
                samples.wall[clients] = wall
                samples.count[clients] = len(http_order)
        finally:
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
    store.close()
    load_end = os.getloadavg()
    elapsed = time.perf_counter() - started
    body = render(args, samples, rss, load_start, load_end, elapsed, n_items, model)
    print(body)
    if not args.no_write and set(args.kinds.split(",")) >= set(KINDS):
        update_section("latency", "Web latency: POST /api/search over HTTP vs in-process", body)
        print("updated BENCHMARKS.md (section latency)")
    if samples.errors:
        print(f"{len(samples.errors)} errors, first: {samples.errors[0]}", file=sys.stderr)
        sys.exit(1)


def render(args, samples: Samples, rss, load_start, load_end, elapsed: float, n_items: int,  # noqa: ANN001
           model: dict) -> str:
    rows = []
    verdicts = []
    # p50 bounds with 1 client: issue 22 (photos), issue 17 (text)
    targets = {"catalog": 30.0, "street": 80.0, "street-12mp": 100.0, "text": 30.0}
    p50_checks = []
    for clients in sorted(samples.count):
        for kind in (*KINDS, "all"):
            kinds = KINDS if kind == "all" else (kind,)
            h = [v for kd in kinds for v in samples.http.get((clients, kd), [])]
            s = [v for kd in kinds for v in samples.server.get((clients, kd), [])]
            p = [v for kd in kinds for v in samples.inproc.get((clients, kd), [])]
            if not h and not p:  # a kind left out with --kinds
                continue
            overhead = pct(h, 50) / pct(p, 50) - 1
            verdicts.append((clients, kind, overhead))
            if clients == 1 and kind in targets:
                p50_checks.append((kind, pct(h, 50), targets[kind]))
            rows.append([clients, kind, len(h), round(pct(h, 50), 1), round(pct(h, 99), 1), round(pct(s, 50), 1),
                         len(p), round(pct(p, 50), 1), round(pct(p, 99), 1), f"{overhead * 100:+.1f}%",
                         round(samples.count[clients] / samples.wall[clients], 1) if kind == "all" else ""])
    table = markdown_table(["clients", "photos", "HTTP requests", "HTTP p50 ms", "HTTP p99 ms",
                            "server handler p50 ms", "in-process runs", "in-process p50 ms", "in-process p99 ms",
                            "HTTP+framework overhead at p50", "HTTP req/s"], rows)
    n_street = round(args.images * args.street_share)
    n_catalog = args.images - n_street
    first, last = rss[0][1], rss[-1][1]
    half = rss[len(rss) // 2][1]
    peak = max(v for _, v in rss)
    total = sum(samples.count.values())
    ok = all(v <= 0.20 for _, _, v in verdicts) and not samples.errors
    worst = max(verdicts, key=lambda t: t[2])
    per_level = f"worst row: {worst[0]} client(s), {worst[1]} photos, {worst[2] * 100:+.1f}%"
    p50_ok = bool(p50_checks) and all(got <= bound for _, got, bound in p50_checks)
    p50_text = ", ".join(f"{kind} {got:.1f} ms (bound {bound:.0f})" for kind, got, bound in p50_checks)
    localised = ("the detector's forward pass at 256 px, then the whole photo + every detected garment in one "
                 "batched forward (grid crops + the activation crop when nothing is detected)"
                 if model["detector"] != "none" else
                 "whole photo + 5 grid crops in one batched forward, then the activation crop in a second")
    return "\n".join([
        f"{total} HTTP requests ({', '.join(f'{c} client(s): {n}' for c, n in samples.count.items())}), "
        f"{len(samples.errors)} errors. Served configuration: {args.config.name}, index generation "
        f"{model['generation']} of {n_items:,} items; model fingerprint {model['fingerprint']} ({model['dim']}-d, "
        f"{model['input']} px input), runtime {model['runtime']}, garment detector {model['detector']}, street "
        f"encoder {model['street_encoder']} (query photos). "
        f"Query photos of {args.images} catalog products: "
        f"{n_catalog} catalog product shots (searched whole), {n_street} SYNTHETIC street photos (a catalog product "
        f"pasted at 30-50% of the frame height on a cluttered scene, 320 px, indexer/datasets/synthetic.py; "
        f"localised by `web.localize = \"auto\"`: {localised}) and the same {n_street} street photos as "
        f"12-megapixel JPEGs "
        f"({PHONE_SIDE}x{PHONE_SIDE}, quality 90; decoded reduced, web.decode_min_side); text = the titles of "
        f"{args.images} other catalog products as "
        f"JSON `{{\"text\": ...}}` queries (text tower, then the vector search, or an exact scan when the words "
        f"name a colour; docs/text-search.md). k={args.k}.",
        "",
        "In-process = `decode_image` + `QueryEngine.search` (localise, embed, vector search, SQL hydration) in the "
        "bench process, at the same concurrency, in blocks alternating with the HTTP blocks. HTTP = the client's "
        f"wall time for the whole request over a keep-alive loopback connection to `manage.py serve` (waitress, "
        f"{args.server_threads} threads): multipart upload, Flask, JSON. Server handler = the handler's own "
        "`timing_ms.total`.",
        "",
        table,
        "",
        f"Server resident memory (VmRSS): {first:.0f} MB after warm-up, {last:.0f} MB at the end, peak {peak:.0f} MB "
        f"({last - first:+.0f} MB over the run, {last - half:+.0f} MB over its second half). By block: "
        f"{', '.join(f'{v:.0f}' for _, v in rss[1:])} MB.",
        f"Load average (1/5/15 min) at start {load_start[0]:.1f}/{load_start[1]:.1f}/{load_start[2]:.1f}, at end "
        f"{load_end[0]:.1f}/{load_end[1]:.1f}/{load_end[2]:.1f} (other jobs share these 2 cores). Run took "
        f"{elapsed / 60:.1f} min.",
        "",
        f"HTTP p50 with 1 client against the bounds of issue 22: {'PASS' if p50_ok else 'FAIL'} ({p50_text}).",
        f"HTTP + framework overhead <= 20% at p50 in every row, zero errors: {'PASS' if ok else 'FAIL'} "
        f"({per_level}). The `all` rows mix clusters (product shots 1 forward pass, street photos 7), so their "
        "p50 sits between them and is the least stable number here.",
    ])


if __name__ == "__main__":
    main()
