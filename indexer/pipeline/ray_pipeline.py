"""Distributed embedding with Ray Data: `manage.py index --ray auto|ADDRESS`.

The driver (this process) reads the catalog and SQL's record of what is already embedded, exactly as the
single-process pipeline does. Each catalog window becomes a Ray dataset of small rows (image path + the image
hash SQL already holds an embedding for), and `map_batches` sends it through a fixed pool of embedding
actors: each actor loads the configured model once (on a GPU where the cluster has GPUs), then reads, hashes,
decodes, preprocesses and embeds its batches, skipping the forward pass for images whose hash SQL already
holds. The driver writes the results through the same SQL path as the single-process pipeline (one
transaction per pipeline.commit_every items, same crash points), then publishes to the configured vector
store. So a Ray run is as idempotent and resumable as a local one: rerunning skips every item whose content
sha256 + model fingerprint are already in SQL.

Image paths must be readable at the same paths from every node (shared storage); the lookalike packages
(engine/, indexer/) are shipped to the workers with the job (runtime_env py_modules), the third-party
dependencies (torch, the model weights package) must be installed on every node.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from indexer.catalog.images import ImageDecodeError, decode_image
from indexer.catalog.source import CatalogRow, CatalogSource, RowProblem, count_rows, iter_catalog
from indexer.extras import require_module
from indexer.pipeline.crash_safety import writer_lock
from indexer.pipeline.indexing import IndexingPipeline, WorkItem, read_work
from indexer.pipeline.plan import IndexReport, classify, embedded_sha, note_unchanged

REPO = Path(__file__).resolve().parents[2]
PACKAGES = (REPO / "engine", REPO / "indexer")


class RayIndexError(RuntimeError):
    """Ray could not be started or reached, or the embedding actors failed; the message says why."""


@dataclass(frozen=True)
class RayOptions:
    """How `index --ray` uses Ray.

    address: "auto" starts a local cluster for this run (stopped at the end); anything else is passed to
        ray.init (e.g. "ray://head:10001", "10.0.0.5:6379"). A process already connected to Ray (the tests)
        keeps its connection.
    workers: embedding actors; 0 = one per GPU where the cluster has GPUs, else one per CPU.
    window: catalog rows per Ray dataset (bounds the driver's memory for huge catalogs; each window starts
        its own actor pool, so keep it large).
    num_cpus / object_store_mb: limits of a local cluster (0 = Ray's defaults).
    """

    address: str = "auto"
    workers: int = 0
    window: int = 200_000
    num_cpus: int = 0
    object_store_mb: int = 0


def _ray():
    return require_module("ray", "manage.py index --ray")


def connect_ray(opts: RayOptions) -> bool:
    """Start (address "auto") or join a Ray cluster; returns True when this call connected (so it should shut
    Ray down afterwards), False when the process was already connected."""
    ray = _ray()
    require_module("ray.data", "manage.py index --ray")
    if ray.is_initialized():
        return False
    runtime_env = {"py_modules": [str(p) for p in PACKAGES]}
    kwargs: dict[str, Any] = {"runtime_env": runtime_env, "log_to_driver": False, "logging_level": logging.WARNING}
    if opts.address == "auto":
        kwargs.update(address="local", include_dashboard=False)
        if opts.num_cpus:
            kwargs["num_cpus"] = opts.num_cpus
        if opts.object_store_mb:
            kwargs["object_store_memory"] = opts.object_store_mb * 1024 * 1024
    else:
        kwargs["address"] = opts.address
    try:
        ray.init(**kwargs)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError from ray.init
        raise RayIndexError(f"cannot start or reach Ray at {opts.address!r}: {_first_line(exc)}") from None
    _quiet_ray_data()
    return True


def _quiet_ray_data() -> None:
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        # Ray Data's own context constructor warns about one of its deprecated settings.
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False


def _first_line(exc: BaseException) -> str:
    """The most useful one-line description of an exception, digging out a Ray task's original error."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and cause is not exc:
        return _first_line(cause)
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.split(":", 1)[0].endswith(("Error", "Exception"))]
    return (errors[-1] if errors else lines[0] if lines else type(exc).__name__)[:500]


# ---- the embedding actor ----------------------------------------------------------------------------------------

def embed_batch(embedder, batch: dict[str, np.ndarray], max_pixels: int, pool: ThreadPoolExecutor | None = None) \
        -> dict[str, np.ndarray]:  # noqa: ANN001 - engine.Embedder
    """Read, hash, decode and embed one batch of rows (columns key, path, skip_sha).

    Returns columns key, sha, embedded (bool), vector ((n, dim) float32, zeros where not embedded), error ("" or
    the same reason the single-process pipeline reports), forward_s (seconds of model time, on the first row).
    An image whose sha256 equals skip_sha is already embedded in SQL: no forward pass.
    """
    keys = np.asarray(batch["key"], np.int64)
    paths = [str(p) for p in batch["path"]]
    skips = [str(s) for s in batch["skip_sha"]]
    n = len(keys)

    def load(i: int):
        data, err = read_work(_PathRow(Path(paths[i])))
        if data is None:
            return "", None, err or "unreadable"
        sha = hashlib.sha256(data).hexdigest()
        if sha == skips[i]:
            return sha, None, ""
        try:
            return sha, embedder.preprocessor.pixels(decode_image(data, max_pixels)), ""
        except ImageDecodeError as exc:
            return sha, None, f"undecodable image: {exc}"

    loaded = list(pool.map(load, range(n))) if pool is not None else [load(i) for i in range(n)]
    vectors = np.zeros((n, embedder.dim), np.float32)
    embedded = np.zeros(n, bool)
    rows = [i for i, (_, pixels, _) in enumerate(loaded) if pixels is not None]
    forward = np.zeros(n, np.float64)
    if rows:
        t0 = time.perf_counter()
        vectors[rows] = embedder.embed_tensors(embedder.preprocessor.batch_from_pixels([loaded[i][1] for i in rows]))
        embedded[rows] = True
        forward[0] = time.perf_counter() - t0
    return {"key": keys, "sha": np.asarray([s for s, _, _ in loaded], dtype=object), "embedded": embedded,
            "vector": vectors, "error": np.asarray([e for _, _, e in loaded], dtype=object), "forward_s": forward}


@dataclass
class _PathRow:
    image_path: Path


class EmbedActor:
    """A Ray Data actor: loads the configured model once, then embeds batches (see embed_batch)."""

    def __init__(self, settings, fingerprint: str, max_pixels: int, torch_threads: int,  # noqa: ANN001
                 decode_threads: int) -> None:
        import torch

        from engine import EmbedderError
        from indexer.embedders import create_embedder_from_settings

        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.embedder = create_embedder_from_settings(settings)
        if self.embedder.fingerprint != fingerprint:
            raise EmbedderError(
                f"the model on Ray node {os.uname().nodename} has fingerprint {self.embedder.fingerprint}, the "
                f"driver's is {fingerprint}: install the same weights/checkpoint at the same paths on every node")
        self.max_pixels = max_pixels
        self.pool = ThreadPoolExecutor(max(1, decode_threads), thread_name_prefix="decode")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return embed_batch(self.embedder, batch, self.max_pixels, self.pool)


# ---- the pipeline -----------------------------------------------------------------------------------------------

class RayIndexingPipeline(IndexingPipeline):
    """IndexingPipeline whose embedding runs on a Ray cluster; SQL writes and publishing are the inherited ones."""

    def __init__(self, *args: Any, settings, ray_options: RayOptions | None = None,  # noqa: ANN001
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = settings
        self.ray_options = ray_options or RayOptions()
        self.runner = ""
        # Seconds from starting the first window's dataset to its first embedded batch (actor start-up + model
        # load), and the rows in that batch: lets a benchmark separate start-up from the steady rate.
        self.first_batch: tuple[float, int] | None = None

    def _pool_shape(self) -> tuple[int, float, float, int]:
        """(actors, GPUs per actor, CPUs per actor, torch threads per actor) for the connected cluster."""
        ray = _ray()
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = max(1, int(resources.get("CPU", 1)))
        if gpus:
            workers = self.ray_options.workers or gpus
            self.runner = f"ray: {workers} GPU actors ({gpus} GPUs, {cpus} CPUs in the cluster)"
            return workers, min(1.0, gpus / workers), 1.0, 0
        workers = self.ray_options.workers or cpus
        per_actor = max(1, cpus // workers)
        self.runner = f"ray: {workers} CPU actors x {per_actor} CPUs ({cpus} CPUs in the cluster)"
        return workers, 0.0, float(min(per_actor, cpus)), per_actor

    def run(self, source: CatalogSource, rebuild: bool = False) -> IndexReport:
        """Index a catalog with Ray actors doing the embedding, then publish to the vector store."""
        report = IndexReport()
        t0 = time.perf_counter()
        lock = writer_lock(self.index_dir)
        try:
            self._start_run(source)
            owns = connect_ray(self.ray_options)
            bar = tqdm(total=count_rows(source), unit="item", desc="indexing (ray)", disable=not self.progress,
                       smoothing=0.05, dynamic_ncols=True)
            try:
                shape = self._pool_shape()
                existing = self.store.existing_items()
                pending_meta: list[tuple[int, dict[str, Any]]] = []
                window: list[CatalogRow] = []
                for rec in iter_catalog(source):
                    if isinstance(rec, RowProblem):
                        report.problems.append(rec)
                        bar.update(1)
                        continue
                    report.rows += 1
                    window.append(rec)
                    if len(window) >= self.ray_options.window:
                        self._run_window(window, existing, shape, pending_meta, report, bar)
                        window = []
                if window:
                    self._run_window(window, existing, shape, pending_meta, report, bar)
                self._write_metadata(pending_meta, report)
            finally:
                bar.close()
                if owns:
                    # Wait for raylet, GCS & co. to exit (and be reaped) rather than leave them dying.
                    _ray().shutdown(wait_for_processes=True)
            self._publish_and_purge(report, rebuild)
        finally:
            lock.release()
        report.elapsed_seconds = time.perf_counter() - t0
        return report

    def _dataset(self, rows: list[CatalogRow], existing: dict[str, Any], shape: tuple[int, float, float, int]):
        import ray.data

        workers, gpus, cpus, threads = shape
        fp = self.embedder.fingerprint
        items = [{"key": i, "path": str(r.image_path), "skip_sha": embedded_sha(existing.get(r.external_id), fp)}
                 for i, r in enumerate(rows)]
        # One block per batch, and batches small enough that every actor gets work even in a small window.
        batch = max(1, min(self.batch_size, math.ceil(len(items) / workers)))
        ds = ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(items) / batch)))
        return ds.map_batches(
            EmbedActor, batch_size=batch, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers), num_gpus=gpus or None, num_cpus=cpus,
            fn_constructor_kwargs={"settings": self.settings, "fingerprint": fp, "max_pixels": self.max_pixels,
                                   "torch_threads": threads, "decode_threads": self.decode_workers})

    def _run_window(self, rows: list[CatalogRow], existing: dict[str, Any], shape: tuple[int, float, float, int],
                    pending_meta: list[tuple[int, dict[str, Any]]], report: IndexReport, bar: tqdm) -> None:
        fp = self.embedder.fingerprint
        pending: list[tuple[WorkItem, np.ndarray]] = []
        t0 = time.perf_counter()
        try:
            for out in self._dataset(rows, existing, shape).iter_batches(batch_size=None, batch_format="numpy"):
                if self.first_batch is None:
                    self.first_batch = (time.perf_counter() - t0, len(out["key"]))
                report.embedded_seconds += float(np.sum(out["forward_s"]))
                for j in range(len(out["key"])):
                    row = rows[int(out["key"][j])]
                    bar.update(1)
                    if out["error"][j]:
                        report.problems.append(RowProblem(row.row, row.external_id, str(out["error"][j])))
                        continue
                    sha, old = str(out["sha"][j]), existing.get(row.external_id)
                    kind = classify(old, sha, fp)
                    if kind is None:
                        note_unchanged(row, old, pending_meta, report)
                        continue
                    if not out["embedded"][j]:  # the actor skipped an image the driver wants: a logic error
                        raise RayIndexError(f"row {row.row}: image {sha[:12]} was not embedded")
                    pending.append((WorkItem(row, b"", sha, old, kind), np.array(out["vector"][j], np.float32)))
                    if len(pending) >= self.commit_every:
                        self._write(pending, report)
                        pending = []
        except RayIndexError:
            raise
        except Exception as exc:
            if type(exc).__module__.startswith("ray"):
                raise RayIndexError(f"Ray embedding failed: {_first_line(exc)}") from None
            raise
        self._write(pending, report)
