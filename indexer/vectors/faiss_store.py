"""FAISS index generations as the vector store (the embedded default), and their checks against SQL.

FaissVectorStore builds a generation from SQL and makes it current by an atomic swap
(indexer/vectors/generations.py); verify_generation refuses a generation that does not fit the model or SQL;
check_consistency compares SQL with the current generation (`manage.py check`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer.vectors.base import CheckReport
from indexer.vectors.faiss_index import SearchParams, VectorSearcher, build_faiss_index, choose_spec
from indexer.vectors.generations import (
    GenerationError,
    LoadedGeneration,
    current_name,
    ids_digest,
    load_generation,
    make_current,
    read_manifest,
    write_generation,
)

if TYPE_CHECKING:
    from indexer.store.catalog_store import Store

log = logging.getLogger(__name__)


class FaissVectorStore:
    """FAISS index generations in index_dir (see indexer/vectors/generations.py): the embedded default."""

    kind = "faiss"

    def __init__(self, index_dir: Path, spec: str = "auto", search_device: str = "auto",
                 params: SearchParams | None = None) -> None:
        self.index_dir = index_dir
        self.spec = spec
        self.search_device = search_device
        self.params = params or SearchParams()

    def current_name(self, store: Store | None = None) -> str | None:
        return current_name(self.index_dir)

    def publish(self, store: Store, embedder, report, force: bool = False,  # noqa: ANN001
                settings_snapshot: dict[str, Any] | None = None, hook=None) -> bool:
        """Build a generation from SQL and make it current, unless the current one already matches."""
        hook = hook or (lambda _p: None)
        fp = embedder.fingerprint
        state = store.state(fp)
        digest = ids_digest(state.ids, state.revisions)
        cur = current_name(self.index_dir)
        if cur and not force:
            try:
                m = read_manifest(self.index_dir / cur)
                if m.fingerprint == fp and m.ids_sha256 == digest:
                    load_generation(self.index_dir, cur)  # verifies files; raises if corrupt
                    report.generation, report.generation_count, report.spec = cur, m.count, m.spec
                    return False
            except GenerationError as exc:
                log.warning("current generation unusable (%s); rebuilding", exc)
        tb = time.perf_counter()
        ids, revs, vectors = store.load_vectors(fp)
        if len(ids) == 0:
            vectors = np.zeros((0, embedder.dim), np.float32)
        spec = self.spec if self.spec != "auto" else choose_spec(len(ids), vectors.shape[1])
        if spec.startswith("IVF") and self.spec == "auto" and len(ids) < 39 * 2:
            spec = "Flat"
        index = build_faiss_index(vectors, ids, spec)
        hook("before-index-save")
        manifest = write_generation(
            self.index_dir, index, ids, vectors,
            {"spec": spec, "metric": "inner_product", "dim": int(vectors.shape[1]), "count": int(len(ids)),
             "fingerprint": fp, "high_water": int(revs.max()) if len(revs) else 0,
             "ids_sha256": ids_digest(ids, revs), "model": embedder.describe(),
             "settings": settings_snapshot or {}, "build_seconds": round(time.perf_counter() - tb, 3)},
            crash_hook=hook, floor=store.last_generation_number(),
        )
        hook("before-swap")
        make_current(self.index_dir, manifest.name)
        hook("after-swap")
        store.record_generation(manifest)
        report.generation, report.generation_count, report.spec, report.published = (
            manifest.name, manifest.count, spec, True)
        return True

    def open(self, name: str | None, store: Store, embedder) -> tuple[Any, VectorSearcher]:  # noqa: ANN001
        """Load and verify a generation (the current one when name is None) and a searcher over it.

        Raises:
            GenerationError: nothing built, corrupt files, or a generation that does not fit SQL or the model.
        """
        gen = load_generation(self.index_dir, name)
        verify_generation(gen, store, embedder)
        return gen, VectorSearcher(gen.index, gen.ids, gen.vectors, backend=self.search_device, params=self.params)

    def check(self, store: Store, fingerprint: str) -> CheckReport:
        return check_consistency(store, self.index_dir, fingerprint)

    def close(self) -> None:
        pass


def verify_generation(gen: LoadedGeneration, store: Store, embedder) -> None:  # noqa: ANN001 - engine.Embedder
    """Refuse a generation built by another model, of another dimension, or holding ids SQL does not know.

    Raises:
        GenerationError: the message names the fix.
    """
    m = gen.manifest
    if m.fingerprint != embedder.fingerprint:
        raise GenerationError(
            f"index {m.name} was built with model {m.fingerprint} but the configured model is "
            f"{embedder.fingerprint}: run `python manage.py index --rebuild`")
    if m.dim != embedder.dim:
        raise GenerationError(f"index {m.name} has dimension {m.dim}, the model gives {embedder.dim}: "
                              "run `python manage.py index --rebuild`")
    # Every id the index can return must be an item SQL knows (active or tombstoned). A newer
    # SQL (items added since) is fine: they are served after the next publish.
    known = store.get_items(gen.ids.tolist(), include_removed=True) if len(gen.ids) <= 200_000 else None
    if known is not None and len(known) != len(gen.ids):
        raise GenerationError(
            f"index {m.name} holds {len(gen.ids) - len(known)} ids unknown to the database "
            f"{store.engine.url.render_as_string(hide_password=True)}: run `python manage.py index --rebuild`")


def check_consistency(store: Store, index_dir: Path, fingerprint: str) -> CheckReport:
    """Compare SQL (active items, embeddings of this fingerprint) with the current generation."""
    state = store.state(fingerprint)
    report = CheckReport(ok=True, generation=current_name(index_dir), fingerprint=fingerprint,
                         sql_count=len(state.ids), not_embedded=state.not_embedded)
    if state.not_embedded:
        report.problems.append(f"{state.not_embedded} active items have no embedding from the current model: "
                               "run `python manage.py index`")
    try:
        gen = load_generation(index_dir)
    except GenerationError as exc:
        report.ok = False
        report.problems.append(str(exc))
        return report
    report.index_count = gen.manifest.count
    if gen.manifest.fingerprint != fingerprint:
        report.problems.append(f"index {gen.manifest.name} was built by model {gen.manifest.fingerprint}, the "
                               f"configured model is {fingerprint}: run `python manage.py index --rebuild`")
    sql_rev = dict(zip(state.ids.tolist(), state.revisions.tolist(), strict=True))
    index_ids = gen.ids.tolist()
    index_set = set(index_ids)
    report.missing_from_index = sorted(set(sql_rev) - index_set)
    report.extra_in_index = sorted(index_set - set(sql_rev))
    if gen.manifest.ids_sha256 != ids_digest(state.ids, state.revisions) and not (
        report.missing_from_index or report.extra_in_index
    ):
        # Same ids, different revisions: some vectors in the index are older than SQL's.
        report.stale_vectors = True
    if len(index_ids) != len(index_set):
        report.problems.append("the index holds duplicate ids")
    if report.missing_from_index:
        report.problems.append(f"{len(report.missing_from_index)} items in SQL are not in the index")
    if report.extra_in_index:
        report.problems.append(f"{len(report.extra_in_index)} ids in the index are not active items in SQL")
    if report.stale_vectors:
        report.problems.append("the index holds vectors older than SQL's")
    report.ok = not report.problems
    return report
