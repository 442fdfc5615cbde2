"""GPU bench: indexing and search on one GPU, each figure next to the hardware ceiling it is measured against.

One run, five sections, written to --out as gpu.md (markdown tables), gpu.json and BENCHMARKS.md (a copy holding
only the `gpu` section, stamped with the GPU machine's description):
  1. ceilings: dense matmul TFLOP/s (fp32, bf16, fp16) and device-memory bandwidth (copy), measured here;
  2. encode: the served model (config.toml [model]) at 128 and 224 px, fp32 / bf16 / fp16 autocast, NCHW or
     channels_last, a batch sweep, one torch.compile row; torchvision ResNet-50 and open_clip ViT-B-32 with random
     weights (speed only). Images/s and the share of the matmul ceiling (FLOPs counted by FlopCounterMode);
  3. decode: torchvision.io.decode_jpeg on the device (batched) vs PIL on every CPU core, images/s;
  4. end to end: catalog rows through the real IndexingPipeline (CSV -> JPEG -> SQLite + FAISS generation) vs
     min(decode rate, encode rate);
  5. search: TorchExactSearcher over 1M and 10M synthetic unit vectors of the served dimension: single-query
     latency vs the bandwidth floor (gallery bytes / bandwidth), batch-1024 throughput vs the matmul ceiling.

    python bench/gpu.py --out DIR [--catalog CSV]      # on the GPU machine (scripts/gpu-bench.sh run)
    python bench/gpu.py --dry-run --out DIR            # the same code on the CPU with tiny sizes, well under a minute
    python bench/gpu.py --adopt DIR/BENCHMARKS.md      # copy a real run's section into BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import io
import json
import os
import re
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import BENCHMARKS, markdown_table, update_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SECTION = "gpu"
TITLE = "GPU: indexing and search vs the device's ceilings"
# Vendor data sheets, dense (no sparsity): (bf16/fp16 tensor-core TFLOP/s, memory GB/s). Context only: every share
# in the report is of the ceiling measured in section 1.
DATA_SHEETS = {"H100 80GB HBM3": (989, 3350), "H100 PCIe": (756, 2000), "H100 NVL": (835, 3900), "H200": (989, 4800)}


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is: FULL for the GPU (one call, under 8 minutes), DRY for a CPU smoke run."""

    device: str
    matmul_n: int
    copy_mib: int
    min_seconds: float
    min_iters: int
    encode_sizes: tuple[int, ...]
    encode_batches: tuple[int, ...]
    other_size: int
    other_batch: int
    decode_images: int
    decode_batch: int
    e2e_rows: int
    search_sizes: tuple[int, ...]
    single_queries: int
    query_batch: int
    compile: bool


FULL = Sizes("cuda", 8192, 2048, 0.5, 3, (128, 224), (64, 256, 1024), 224, 256, 8192, 256, 20_000,
             (1_000_000, 10_000_000), 50, 1024, True)
DRY = Sizes("cpu", 256, 32, 0.01, 1, (128,), (2,), 64, 2, 32, 16, 48, (1000,), 5, 1024, False)
DTYPES = ("fp32", "bf16", "fp16")


@dataclass
class Section:
    key: str
    title: str
    header: list[str]
    rows: list[list[object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Clock:
    """The run's time budget: sections skip what would not fit (and say so)."""

    def __init__(self, budget_s: float) -> None:
        self.start = time.perf_counter()
        self.budget_s = budget_s

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)


def _torch():
    import torch

    return torch


def torch_dtype(name: str):
    torch = _torch()
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def sync_fn(device: str) -> Callable[[], None]:
    torch = _torch()
    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def measure(fn: Callable[[], object], sync: Callable[[], None], min_seconds: float, min_iters: int,
            warmup: int = 1) -> float:
    """Seconds per call of fn: after warm-up, at least min_iters calls and min_seconds of wall time."""
    for _ in range(warmup):
        fn()
    sync()
    iters, t0 = 0, time.perf_counter()
    while True:
        fn()
        iters += 1
        if iters >= min_iters:
            sync()
            elapsed = time.perf_counter() - t0
            if elapsed >= min_seconds:
                return elapsed / iters


def autocast(device: str, precision: str):
    torch = _torch()
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=torch_dtype(precision))


def data_sheet(name: str) -> tuple[int, int] | None:
    return next((v for k, v in DATA_SHEETS.items() if k in name), None)


# ---- 1. ceilings ----------------------------------------------------------------------------------------------


def measure_ceilings(sz: Sizes, dev: str, name: str) -> tuple[Section, dict[str, float]]:
    torch = _torch()
    sync = sync_fn(dev)
    sec = Section("ceilings", "1. Device ceilings (measured)", ["what", "size", "measured", "unit", "data sheet"])
    sheet = data_sheet(name)
    ceil: dict[str, float] = {}
    n = sz.matmul_n
    for p in DTYPES:
        a = torch.randn(n, n, device=dev, dtype=torch_dtype(p))
        b = torch.randn(n, n, device=dev, dtype=torch_dtype(p))
        ceil[p] = 2 * n ** 3 / measure(lambda a=a, b=b: a @ b, sync, sz.min_seconds, sz.min_iters) / 1e12
        what = "dense matmul fp32" + (" (TF32 off, torch's default)" if not torch.backends.cuda.matmul.allow_tf32
                                      else " (TF32 on)")
        sec.rows.append([what if p == "fp32" else f"dense matmul {p}", f"{n}x{n}x{n}", ceil[p], "TFLOP/s",
                         sheet[0] if sheet and p != "fp32" else "-"])
        del a, b
    x = torch.empty(sz.copy_mib << 18, device=dev, dtype=torch.float32).normal_()
    y = torch.empty_like(x)
    per = measure(lambda x=x, y=y: y.copy_(x), sync, sz.min_seconds, sz.min_iters)
    ceil["bandwidth_gbs"] = 2 * x.nbytes / per / 1e9
    sec.rows.append(["memory bandwidth (copy; read + write counted)", f"{sz.copy_mib} MiB", ceil["bandwidth_gbs"],
                     "GB/s", sheet[1] if sheet else "-"])
    del x, y
    sec.notes.append("Shares below are of these measured ceilings; fp32 rows against the fp32 matmul (cuDNN may "
                     "still use TF32 in convolutions: torch.backends.cudnn.allow_tf32="
                     f"{torch.backends.cudnn.allow_tf32}).")
    return sec, ceil


# ---- 2. encode ------------------------------------------------------------------------------------------------


def flops_per_image(module, size: int, dev: str) -> float:
    torch = _torch()
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(2, 3, size, size, device=dev)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() / 2


def encode_rate(embedder, x, precision: str, channels_last: bool, sz: Sizes) -> float:
    """Images/s of Embedder.embed_tensors (the served call) on a batch already on the device."""
    torch = _torch()
    embedder.memory_format = torch.channels_last if channels_last else torch.contiguous_format
    embedder.module.to(memory_format=embedder.memory_format)
    dev = str(embedder.device)

    def step() -> None:
        with autocast(dev, precision):
            embedder.embed_tensors(x)

    return x.shape[0] / measure(step, sync_fn(dev), sz.min_seconds, sz.min_iters)


def _encode_row(label: str, size: int, batch: int, precision: str, layout: str, rate: float, flops: float,
                ceil: dict[str, float]) -> list[object]:
    achieved = rate * flops / 1e12
    return [label, size, batch, precision, layout, rate, flops / 1e9, achieved, 100 * achieved / ceil[precision]]


def sweep_model(label: str, embedder, size: int, batches: tuple[int, ...], layouts: tuple[bool, ...], sz: Sizes,
                ceil: dict[str, float], clock: Clock, sec: Section, rates: dict) -> None:
    torch = _torch()
    dev = str(embedder.device)
    flops = flops_per_image(embedder.module, size, dev)
    for batch in batches:
        x = torch.randn(batch, 3, size, size, device=dev)
        for precision in DTYPES:
            for cl in layouts:
                if clock.left() < 30:
                    sec.notes.append(f"{label} {size} px batch {batch} {precision}: skipped (time budget)")
                    continue
                try:
                    rate = encode_rate(embedder, x, precision, cl, sz)
                except RuntimeError as exc:  # e.g. out of memory at the largest batch: the row says so
                    sec.notes.append(f"{label} {size} px batch {batch} {precision}: failed: "
                                     f"{str(exc).splitlines()[0][:160]}")
                    _torch_empty_cache(dev)
                    continue
                rates[(label, size, batch, precision, cl)] = rate
                sec.rows.append(_encode_row(label, size, batch, precision, "channels_last" if cl else "NCHW", rate,
                                            flops, ceil))
        del x


def compile_row(embedder, sz: Sizes, ceil: dict[str, float], clock: Clock, sec: Section) -> None:
    torch = _torch()
    size, batch, precision = embedder.input_size, sz.encode_batches[min(1, len(sz.encode_batches) - 1)], "bf16"
    if not sz.compile:
        sec.notes.append("torch.compile: skipped in the dry run (it needs a C++ toolchain and minutes on a CPU).")
        return
    if clock.left() < 150:
        sec.notes.append("torch.compile: skipped (time budget).")
        return
    eager = embedder.module
    flops = flops_per_image(eager, size, str(embedder.device))
    try:
        embedder.module = torch.compile(eager)
        x = torch.randn(batch, 3, size, size, device=embedder.device)
        t0 = time.perf_counter()
        with autocast(str(embedder.device), precision):
            embedder.embed_tensors(x)
        compile_s = time.perf_counter() - t0
        rate = encode_rate(embedder, x, precision, True, sz)
        sec.rows.append(_encode_row("served + torch.compile", size, batch, precision, "channels_last", rate, flops,
                                    ceil))
        sec.notes.append(f"torch.compile (default mode): first call {compile_s:.1f} s.")
    except Exception as exc:  # inductor/triton failures vary; the row says what happened
        sec.notes.append(f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    finally:
        embedder.module = eager


def measure_encode(settings, sz: Sizes, ceil: dict[str, float], clock: Clock) -> tuple[Section, dict]:
    from engine import EmbedderError, create_embedder
    from indexer.embedders import create_embedder_from_settings

    sec = Section("encode", "2. Encode: images/s and share of the matmul ceiling",
                  ["model", "px", "batch", "precision", "layout", "images/s", "GFLOP/image", "TFLOP/s",
                   "% of matmul ceiling"])
    rates: dict = {}
    served_name = None
    for size in sz.encode_sizes:
        model = dataclasses.replace(settings.model, input_size=size, device=sz.device)
        embedder = create_embedder_from_settings(dataclasses.replace(settings, model=model))
        served_name = f"served {embedder.name} (dim {embedder.dim})"
        sweep_model("served", embedder, size, sz.encode_batches, (False, True), sz, ceil, clock, sec, rates)
        if size == settings.model.input_size:
            compile_row(embedder, sz, ceil, clock, sec)
        del embedder
    for label, name, layouts in (("ResNet-50 (random)", "resnet50", (False, True)),
                                 ("ViT-B-32 (random)", "clip:ViT-B-32", (False,))):
        try:
            embedder = create_embedder(name, weights="random", input_size=sz.other_size, device=sz.device)
        except EmbedderError as exc:
            sec.notes.append(f"{label}: skipped: {exc}")
            continue
        sweep_model(label, embedder, sz.other_size, (sz.other_batch,), layouts, sz, ceil, clock, sec, rates)
        del embedder
    _torch_empty_cache(sz.device)
    sec.notes.append(f"\"served\" = {served_name} from config.toml via create_embedder_from_settings, timed through "
                     "Embedder.embed_tensors (the pipeline's call: normalise + copy to host included) on random "
                     "input already on the device; precision = autocast dtype; 224 px is speed only (the model was "
                     "trained at 128). FLOPs per image by torch.utils.flop_counter (2 per multiply-add).")
    return sec, rates


def _torch_empty_cache(dev: str) -> None:
    if dev.startswith("cuda"):
        _torch().cuda.empty_cache()


# ---- 3. decode ------------------------------------------------------------------------------------------------


def catalog_rows(catalog: Path, images_root: Path, n: int) -> list[dict[str, str]]:
    """The first n catalog rows whose image file exists under images_root."""
    out = []
    with catalog.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("image") and (images_root / row["image"]).is_file():
                out.append(row)
                if len(out) == n:
                    break
    if not out:
        raise SystemExit(f"no catalog rows with an image under {images_root}")
    return out


def _pil_work(job: tuple[list[bytes], object, int]) -> int:
    """Process-pool worker: decode (and optionally preprocess) each blob; returns how many."""
    from PIL import Image

    blobs, preprocessor, max_pixels = job
    if preprocessor is not None:
        import torch

        torch.set_num_threads(1)  # one process per core: torch's own threads would only contend
    if preprocessor is None:
        for data in blobs:
            Image.open(io.BytesIO(data)).convert("RGB").load()
    else:
        from indexer.catalog.images import decode_image

        for data in blobs:
            preprocessor(decode_image(data, max_pixels))
    return len(blobs)


def pil_rate(pool: ProcessPoolExecutor, workers: int, blobs: list[bytes], preprocessor, max_pixels: int,
             sz: Sizes) -> float:
    step = max(1, len(blobs) // (workers * 4))
    jobs = [(blobs[i:i + step], preprocessor, max_pixels) for i in range(0, len(blobs), step)]
    return len(blobs) / measure(lambda: sum(pool.map(_pil_work, jobs)), lambda: None, sz.min_seconds, 2)


def measure_decode(blobs: list[bytes], preprocessor, max_pixels: int, sz: Sizes) -> tuple[Section, dict]:
    torch = _torch()
    from torchvision.io import decode_jpeg

    sec = Section("decode", "3. Decode: JPEG -> pixels, images/s", ["decoder", "where", "images", "images/s"])
    rates = {}
    tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    batches = [tensors[i:i + sz.decode_batch] for i in range(0, len(tensors), sz.decode_batch)]
    sync = sync_fn(sz.device)

    def gpu_pass() -> None:
        for b in batches:
            decode_jpeg(b, device=sz.device)

    try:
        rates["device"] = len(blobs) / measure(gpu_pass, sync, sz.min_seconds, 2)
        sec.rows.append([f"torchvision.io.decode_jpeg, batches of {sz.decode_batch}", sz.device, len(blobs),
                         rates["device"]])
    except RuntimeError as exc:  # e.g. a torchvision built without nvJPEG
        sec.notes.append(f"torchvision.io.decode_jpeg on {sz.device} failed: {str(exc).splitlines()[0][:200]}")
    workers = os.cpu_count() or 1
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        list(pool.map(_pil_work, [([blobs[0]], None, max_pixels)] * workers))  # start every worker first
        rates["pil"] = pil_rate(pool, workers, blobs, None, max_pixels, sz)
        rates["pil_preprocess"] = pil_rate(pool, workers, blobs, preprocessor, max_pixels, sz)
    sec.rows.append(["PIL Image.open + convert RGB", f"{workers} CPU processes", len(blobs), rates["pil"]])
    sec.rows.append([f"PIL decode_image + served preprocess ({preprocessor.size} px letterbox), the pipeline's "
                     "decode stage", f"{workers} CPU processes", len(blobs), rates["pil_preprocess"]])
    sec.notes.append("Distinct catalog photos (60x80 JPEGs), bytes already in memory; the device decoder's rate "
                     "includes the host-to-device copy of the bytes.")
    return sec, rates


# ---- 4. end to end --------------------------------------------------------------------------------------------


def write_e2e_catalog(rows: list[dict[str, str]], n: int, path: Path) -> int:
    """n catalog rows cycling over the given photos, each repeat under a new id; returns the distinct photo count."""
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        w.writeheader()
        for i in range(n):
            row = dict(rows[i % len(rows)])
            if i >= len(rows):
                row["id"] = f"{row['id']}~{i // len(rows)}"
            w.writerow(row)
    return min(n, len(rows))


def run_pipeline(settings, csv_path: Path, images_root: Path, tmp: Path, name: str):
    """One full `manage.py index` run into a fresh SQLite database and index dir: (report, seconds, publish s)."""
    from indexer.catalog.source import open_catalog
    from indexer.embedders import create_embedder_from_settings
    from indexer.pipeline.plan import IndexReport
    from indexer.store.db import upgrade_database
    from indexer.wiring import create_pipeline, open_store

    settings = dataclasses.replace(
        settings, database=dataclasses.replace(settings.database, url=f"sqlite:///{tmp / name}.db"),
        index=dataclasses.replace(settings.index, dir=str(tmp / f"{name}-index")))
    upgrade_database(settings.database_url)
    embedder = create_embedder_from_settings(settings)
    store = open_store(settings)
    try:
        pipeline = create_pipeline(settings, store, embedder, progress=False)
        t0 = time.perf_counter()
        report = pipeline.run(open_catalog(csv_path, images_root=images_root))
        seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        pipeline.publish(IndexReport(), force=True)
        publish_s = time.perf_counter() - t0
    finally:
        store.close()
    if report.new == 0 or report.problems:
        raise SystemExit(f"pipeline run {name} indexed {report.new} items, problems: {report.problems[:3]}")
    return report, seconds, publish_s


def measure_e2e(settings, sz: Sizes, rows: list[dict[str, str]], images_root: Path, encode: dict, decode: dict,
                clock: Clock) -> Section:
    sec = Section("e2e", "4. End to end: catalog -> SQLite + FAISS generation, items/s",
                  ["pipeline settings", "rows (distinct photos)", "items/s", "embed share of wall time",
                   "ceiling items/s", "% of ceiling", "publish s (rebuild)"])
    cores = os.cpu_count() or 1
    served = dataclasses.replace(settings.model, device=sz.device)
    configs = [("as configured", dataclasses.replace(settings, model=served))]
    tuned_batch = max(sz.encode_batches[:2])
    configs.append(("tuned, prefetch 8", dataclasses.replace(
        settings, model=dataclasses.replace(served, batch_size=tuned_batch),
        pipeline=dataclasses.replace(settings.pipeline, decode_workers=cores, prefetch_batches=8))))
    with tempfile.TemporaryDirectory(prefix="lookalike-gpu-bench-") as tmpdir:
        tmp = Path(tmpdir)
        csv_path = tmp / "e2e.csv"
        distinct = write_e2e_catalog(rows, sz.e2e_rows, csv_path)
        for i, (label, cfg) in enumerate(configs):
            if clock.left() < 60:
                sec.notes.append(f"{label}: skipped (time budget)")
                continue
            report, seconds, publish_s = run_pipeline(cfg, csv_path, images_root, tmp, f"run{i}")
            p, batch = cfg.pipeline, cfg.model.batch_size
            enc = encode.get(("served", cfg.model.input_size, batch, "fp32", False))
            dec = decode.get("pil_preprocess")
            ceiling = min(v for v in (enc, dec) if v) if enc or dec else None
            rate = report.new / seconds
            sec.rows.append([f"{label} (decode_workers {p.decode_workers}, batch {batch}, spec {cfg.index.spec})",
                             f"{report.new} ({distinct})", rate, f"{100 * report.embedded_seconds / seconds:.0f}%",
                             ceiling if ceiling else "n/a", 100 * rate / ceiling if ceiling else "n/a", publish_s])
    sec.notes.append("The real IndexingPipeline (indexer.wiring.create_pipeline) with the served model on the "
                     "device, SQLite in a temp dir, faiss on the CPU for the generation (index.spec); items/s over "
                     "the whole run, publish included. Rows cycle over the distinct photos under new ids (each row "
                     "is read, hashed, decoded, embedded and written). Ceiling = min(PIL decode + preprocess on "
                     "every core from section 3, served fp32 encode at that batch from section 2); "
                     "\"publish s\" is a separate forced rebuild of the generation from SQL.")
    return sec


# ---- 5. search ------------------------------------------------------------------------------------------------


def synthetic_gallery(n: int, dim: int, dev: str, seed: int = 0):
    """n unit vectors (float32 numpy), generated on the device in chunks."""
    import numpy as np

    torch = _torch()
    out = np.empty((n, dim), dtype=np.float32)
    gen = torch.Generator(device=dev).manual_seed(seed)
    for start in range(0, n, 1 << 20):
        stop = min(n, start + (1 << 20))
        chunk = torch.randn(stop - start, dim, device=dev, generator=gen)
        torch.from_numpy(out[start:stop]).copy_(torch.nn.functional.normalize(chunk, dim=1).cpu())
    return out


def search_fits(n: int, dim: int, dev: str) -> str | None:
    """Why n x dim does not fit the device or host memory, or None."""
    torch = _torch()
    need_host = n * dim * 4
    avail = _mem_available()
    if avail is not None and need_host > 0.8 * avail:
        return f"needs {need_host / 2**30:.0f} GiB of host memory, {avail / 2**30:.0f} GiB available"
    if dev.startswith("cuda"):
        free, _total = torch.cuda.mem_get_info()
        need = n * dim * 6 + (8 << 30)  # fp32 staging + fp16 gallery + scores of a batch-1024 chunk
        if need > free:
            return f"needs {need / 2**30:.0f} GiB on the device, {free / 2**30:.0f} GiB free"
    return None


def _mem_available() -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def search_rows(n: int, dim: int, k: int, sz: Sizes, ceil: dict[str, float], sec: Section) -> None:
    import numpy as np

    from indexer.vectors.faiss_index import TorchExactSearcher

    searcher = TorchExactSearcher(synthetic_gallery(n, dim, sz.device), np.arange(n, dtype=np.int64),
                                  device=sz.device)
    precision = "fp16" if searcher.dtype == _torch().float16 else "fp32"
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((sz.single_queries + 3, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    times = []
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        searcher.search(q[None], k)
        if i >= 3:  # warm-up
            times.append(time.perf_counter() - t0)
    gallery_bytes = n * dim * searcher.gallery.element_size()
    floor_ms = gallery_bytes / (ceil["bandwidth_gbs"] * 1e9) * 1e3
    median_ms = statistics.median(times) * 1e3
    p90_ms = sorted(times)[int(0.9 * (len(times) - 1))] * 1e3
    sec.rows.append([f"{n:,}", precision, "1 query", median_ms, p90_ms, 1e3 / median_ms, "-",
                     f"bandwidth floor {floor_ms:.3g} ms", 100 * floor_ms / median_ms])
    batch = rng.standard_normal((sz.query_batch, dim)).astype(np.float32)
    batch /= np.linalg.norm(batch, axis=1, keepdims=True)
    per = measure(lambda s=searcher: s.search(batch, k), lambda: None, sz.min_seconds, 2)
    tflops = 2 * sz.query_batch * n * dim / per / 1e12
    sec.rows.append([f"{n:,}", precision, f"batch {sz.query_batch}", per * 1e3, "-", sz.query_batch / per, tflops,
                     f"{precision} matmul {ceil[precision]:.4g} TFLOP/s", 100 * tflops / ceil[precision]])
    del searcher


def measure_search(dim: int, k: int, sz: Sizes, ceil: dict[str, float], clock: Clock) -> Section:
    sec = Section("search", f"5. Search: exact top-{k} over synthetic {dim}-d unit vectors",
                  ["vectors", "gallery", "queries", "ms (median)", "ms (p90)", "queries/s", "TFLOP/s", "ceiling",
                   "% of ceiling"])
    for n in sz.search_sizes:
        why = search_fits(n, dim, sz.device)
        if why or clock.left() < 40:
            sec.notes.append(f"{n:,} vectors: skipped ({why or 'time budget'})")
            continue
        search_rows(n, dim, k, sz, ceil, sec)
        _torch_empty_cache(sz.device)
    sec.notes.append("indexer.vectors.faiss_index.TorchExactSearcher (the search path used where torch sees CUDA and "
                     "faiss has no GPU support): gallery on the device (fp16 on CUDA, fp32 on the CPU), matmul + "
                     "top-k over 1M-row chunks, results copied to the host. Latency floor = gallery bytes / measured "
                     "bandwidth; % of ceiling = floor / median for single queries, TFLOP/s / matmul for batches.")
    sec.notes.append(faiss_note())
    return sec


def faiss_note() -> str:
    try:
        import faiss

        from indexer.vectors.faiss_index import faiss_has_gpu
    except ImportError:
        return "faiss is not importable here: no faiss rows."
    if not faiss_has_gpu():
        return f"faiss {faiss.__version__} has no GPU support here (a CPU build): no faiss-gpu rows."
    return f"faiss {faiss.__version__} has GPU support, but this bench has no faiss-gpu rows yet."


# ---- report ---------------------------------------------------------------------------------------------------


def render(sections: list[Section], dry_run: bool, context: list[str]) -> str:
    parts = []
    if dry_run:
        parts.append("**DRY RUN on the CPU with tiny sizes: these numbers only show that the script works.**\n")
    parts += context
    for s in sections:
        parts.append(f"\n### {s.title}\n")
        parts.append(markdown_table(s.header, s.rows) if s.rows else "(no rows)")
        parts += [f"\n{n}" for n in s.notes]
    return "\n".join(parts) + "\n"


def write_outputs(out: Path, sections: list[Section], dry_run: bool, context: list[str], extra: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    body = render(sections, dry_run, context)
    (out / "gpu.md").write_text(f"# {TITLE}{' (DRY RUN)' if dry_run else ''}\n\n{body}")
    data = {"dry_run": dry_run, "context": context, **extra,
            "sections": {s.key: dataclasses.asdict(s) for s in sections}}
    (out / "gpu.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    update_section(SECTION, TITLE + (" (DRY RUN)" if dry_run else ""), body, path=out / "BENCHMARKS.md")


def adopt(report: Path, benchmarks: Path = BENCHMARKS) -> None:
    """Copy the gpu section of a report's BENCHMARKS.md (from a real run) into benchmarks."""
    pattern = re.compile(rf"<!-- bench:{SECTION} -->.*?<!-- /bench:{SECTION} -->", re.S)
    found = pattern.search(report.read_text())
    if not found:
        raise SystemExit(f"error: {report} has no {SECTION} section")
    block = found.group(0)
    if "DRY RUN" in block:
        raise SystemExit(f"error: {report} is a dry run; its numbers are not benchmarks")
    text = benchmarks.read_text()
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    benchmarks.write_text(text)


def run(args: argparse.Namespace) -> None:
    torch = _torch()
    from indexer.embedders import create_embedder_from_settings
    from indexer.settings import load_settings

    sz = DRY if args.dry_run else FULL
    if sz.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: torch sees no CUDA GPU; use --dry-run to try the script on the CPU")
    clock = Clock(args.budget_s)
    settings = load_settings(args.config)
    catalog = Path(args.catalog) if args.catalog else settings.resolve_path(settings.catalog.default_csv)
    images_root = Path(args.images_root) if args.images_root else catalog.parent
    rows = catalog_rows(catalog, images_root, sz.decode_images)
    blobs = [(images_root / r["image"]).read_bytes() for r in rows]
    served = create_embedder_from_settings(dataclasses.replace(
        settings, model=dataclasses.replace(settings.model, device="cpu")))  # its preprocessor and dimension
    name = torch.cuda.get_device_name(0) if sz.device == "cuda" else "CPU"
    context = [f"Device: {name}; torch {torch.__version__}; {os.cpu_count()} CPU cores; catalog {catalog.name} "
               f"({len(rows)} distinct photos used); time budget {args.budget_s:.0f} s."]
    sections: list[Section] = []
    results: dict = {"seconds": {}}
    steps = [
        ("ceilings", lambda: measure_ceilings(sz, sz.device, name)),
        ("encode", lambda: measure_encode(settings, sz, results["ceilings"], clock)),
        ("decode", lambda: measure_decode(blobs, served.preprocessor, settings.web.max_image_pixels, sz)),
        ("e2e", lambda: (measure_e2e(settings, sz, rows, images_root, results["encode"], results["decode"],
                                     clock), None)),
        ("search", lambda: (measure_search(served.dim, settings.web.default_k, sz, results["ceilings"], clock),
                            None)),
    ]
    for key, step in steps:
        t0 = time.perf_counter()
        try:
            section, results[key] = step()
        except Exception as exc:  # one call on a lent machine: a failed section must not cost the others
            traceback.print_exc()
            section, results[key] = Section(key, f"{key}: FAILED", ["error"], [[f"{type(exc).__name__}: {exc}"]]), {}
        results["seconds"][key] = round(time.perf_counter() - t0, 1)
        sections.append(section)
        # Written after every section, so a run cut short by its time limit still brings back what it measured.
        write_outputs(Path(args.out), sections, args.dry_run, context,
                      {"ceilings": results["ceilings"], "seconds": results["seconds"]})
    context.append("Seconds per section: " + ", ".join(f"{k} {v:.0f}" for k, v in results["seconds"].items())
                   + f"; total {time.perf_counter() - clock.start:.0f}.")
    write_outputs(Path(args.out), sections, args.dry_run, context,
                  {"ceilings": results["ceilings"], "seconds": results["seconds"]})
    print(render(sections, args.dry_run, context))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "var" / "gpu-bench" / "out"), help="folder for gpu.md/json")
    ap.add_argument("--config", default=str(REPO / "config.toml"))
    ap.add_argument("--catalog", help="catalog CSV (default: config.toml catalog.default_csv)")
    ap.add_argument("--images-root", help="folder the CSV's image paths are relative to (default: its folder)")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: checks the script, measures nothing")
    ap.add_argument("--budget-s", type=float, default=420.0, help="seconds after which sections skip what is left")
    ap.add_argument("--adopt", type=Path, metavar="BENCHMARKS_MD",
                    help="copy the gpu section of a real run's BENCHMARKS.md (in its --out) into BENCHMARKS.md")
    ap.add_argument("--benchmarks", type=Path, default=BENCHMARKS, help="the file --adopt writes")
    args = ap.parse_args(argv)
    if args.adopt:
        adopt(args.adopt, args.benchmarks)
        return
    run(args)


if __name__ == "__main__":
    main()
