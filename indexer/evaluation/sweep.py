"""Index setting sweeps: recall@k against exact search, queries/s and memory per (spec, nprobe, efSearch).

``manage.py sweep`` runs ``measure_sweep`` on the current catalog embeddings (the served generation's vectors),
stores the points as ``SweepResult`` rows, marks the Pareto front (no other setting is both at least as accurate
and at least as fast) and recommends the fastest front point that reaches a recall target. ``set_config_value``
edits the one ``index.spec`` line of config.toml in place, comments untouched. docs/analytics.md explains the
numbers.
"""

from __future__ import annotations

import math
import os
import re
import time
import tomllib
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from engine.files import write_bytes_atomically
from indexer.store.tables import SweepResult
from indexer.vectors.faiss_index import SearchParams, VectorSearcher, build_faiss_index
from indexer.vectors.synthetic_vectors import exact_top_k

# Recall@k against exact search the recommended setting must reach: search results that differ from exact search
# in at most one of a hundred places.
DEFAULT_MIN_RECALL = 0.99


@dataclass(frozen=True)
class SweepSetting:
    """One index setting: a FAISS factory string plus the search knob it has (None when it has none)."""

    spec: str
    nprobe: int | None = None
    ef_search: int | None = None

    @property
    def label(self) -> str:
        knob = f" nprobe={self.nprobe}" if self.nprobe is not None else ""
        knob += f" efSearch={self.ef_search}" if self.ef_search is not None else ""
        return self.spec + knob


@dataclass
class SweepPoint:
    """A measured setting. ``recall`` is recall@k against exact (Flat) search on the same vectors."""

    spec: str
    nprobe: int | None
    ef_search: int | None
    k: int
    recall: float
    queries_per_s: float
    memory_bytes: int
    build_seconds: float
    n_vectors: int
    n_queries: int
    pareto: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return SweepSetting(self.spec, self.nprobe, self.ef_search).label

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.label}


def _is_ivf(spec: str) -> bool:
    return any(part.strip().upper().startswith("IVF") for part in spec.split(","))


def _is_hnsw(spec: str) -> bool:
    return "HNSW" in spec.upper()


def sweep_settings(specs: Sequence[str], nprobes: Sequence[int], ef_searches: Sequence[int]) -> list[SweepSetting]:
    """Expand specs by their knob: IVF specs x nprobe values, HNSW specs x efSearch values, others once."""
    out: list[SweepSetting] = []
    for spec in specs:
        if _is_ivf(spec):
            out += [SweepSetting(spec, nprobe=v) for v in nprobes]
        elif _is_hnsw(spec):
            out += [SweepSetting(spec, ef_search=v) for v in ef_searches]
        else:
            out.append(SweepSetting(spec))
    return out


def index_memory_bytes(index: faiss.Index) -> int:
    """Bytes the index holds: its serialised size (codes, lists, graph, centroids), which is what it occupies."""
    return int(faiss.serialize_index(index).nbytes)


def single_query_rate(searcher: VectorSearcher, queries: np.ndarray, k: int, budget_s: float) -> float:
    """Queries/s, one query per call on one OpenMP thread (as a serving thread answers one request).

    Runs through the queries (cycling) until ``budget_s`` has passed and at least 5 queries are done.
    """
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        done = 0
        t0 = time.perf_counter()
        while True:
            searcher.search(queries[done % len(queries)][None, :], k)
            done += 1
            if done >= 5 and (time.perf_counter() - t0 > budget_s or done >= 20 * len(queries)):
                break
        return done / (time.perf_counter() - t0)
    finally:
        faiss.omp_set_num_threads(threads)


def recall_with_ties(found: np.ndarray, queries: np.ndarray, database: np.ndarray, truth: np.ndarray,
                     tol: float = 1e-5) -> float:
    """recall@k against exact search, counting a result as correct when its true score reaches the k-th exact score.

    Catalogs hold duplicate images (identical vectors); an id-based recall would mark an index wrong for returning
    the twin that exact search happened to rank 11th. Scores are recomputed from the vectors, so approximate
    (quantised) scores of the index do not matter.

    Args:
        found: (Q, >=k) row indices returned by the index (-1 = none).
        queries: (Q, dim) query vectors.
        database: (n, dim) the indexed vectors (rows = ids).
        truth: (Q, k) exact top-k rows.
    """
    k = truth.shape[1]
    kth = np.einsum("ij,ij->i", queries, database[truth[:, -1]])
    hits = 0
    for q in range(len(queries)):
        rows = found[q, :k]
        rows = rows[rows >= 0]
        scores = database[rows] @ queries[q]
        hits += min(k, int(np.count_nonzero(scores >= kth[q] - tol)))
    return hits / (len(queries) * k)


def split_queries(vectors: np.ndarray, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Hold out up to ``n_queries`` vectors (at most a tenth) as queries; returns (database, queries)."""
    n = len(vectors)
    m = max(1, min(n_queries, n // 10))
    held = np.random.default_rng(seed).choice(n, m, replace=False)
    mask = np.ones(n, bool)
    mask[held] = False
    return np.ascontiguousarray(vectors[mask]), np.ascontiguousarray(vectors[np.sort(held)])


def measure_sweep(vectors: np.ndarray, settings: Sequence[SweepSetting], k: int = 10, n_queries: int = 1000,
                  budget_s: float = 2.0, seed: int = 0,
                  problems: list[str] | None = None) -> list[SweepPoint]:
    """Measure every setting on the same vectors and held-out queries; Pareto front marked.

    Args:
        vectors: (n, dim) L2-normalised float32 catalog embeddings.
        settings: From ``sweep_settings``.
        k: recall@k against exact search.
        n_queries: Queries held out of the database (at most a tenth of the vectors).
        budget_s: Seconds of single-query timing per setting.
        seed: Picks the held-out queries.
        problems: Settings that cannot be built (e.g. more IVF lists than vectors) are noted here and skipped.

    Returns:
        One point per measured setting, in the order given.
    """
    database, queries = split_queries(np.ascontiguousarray(vectors, np.float32), n_queries, seed)
    ids = np.arange(len(database), dtype=np.int64)
    k = min(k, len(database))
    truth = exact_top_k(queries, database, k)
    points: list[SweepPoint] = []
    built: dict[str, tuple[faiss.Index, float, int]] = {}
    for setting in settings:
        if setting.spec not in built:
            t0 = time.perf_counter()
            try:
                index = build_faiss_index(database, ids, setting.spec)
            except ValueError as exc:
                if problems is not None:
                    problems.append(f"{setting.spec}: {exc}")
                built[setting.spec] = (None, 0.0, 0)  # type: ignore[assignment]
                continue
            built[setting.spec] = (index, time.perf_counter() - t0, index_memory_bytes(index))
        index, build_s, memory = built[setting.spec]
        if index is None:
            continue
        params = SearchParams(nprobe=setting.nprobe or 1, ef_search=setting.ef_search or 16)
        searcher = VectorSearcher(index, ids, None, backend="cpu", params=params)
        _, found = searcher.search(queries, k)
        rate = single_query_rate(searcher, queries, k, budget_s)
        recall = recall_with_ties(found, queries, database, truth)
        points.append(SweepPoint(setting.spec, setting.nprobe, setting.ef_search, k, recall,
                                 rate, memory, round(build_s, 3), len(database), len(queries)))
    for i in pareto_front([(p.recall, p.queries_per_s) for p in points]):
        points[i].pareto = True
    return points


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates, maximising both coordinates (recall, queries/s).

    A point is dominated when another is at least as good in both and better in one. Ties (equal points) all
    stay on the front.
    """
    front = []
    for i, (r, q) in enumerate(points):
        if not any((r2 >= r and q2 >= q) and (r2 > r or q2 > q) for j, (r2, q2) in enumerate(points) if j != i):
            front.append(i)
    return front


def recommend(points: Sequence[SweepPoint], min_recall: float = DEFAULT_MIN_RECALL) -> SweepPoint | None:
    """The fastest Pareto point whose recall reaches ``min_recall``; else the most accurate point."""
    front = [p for p in points if p.pareto]
    if not front:
        return None
    good = [p for p in front if p.recall >= min_recall]
    if good:
        return max(good, key=lambda p: p.queries_per_s)
    return max(front, key=lambda p: (p.recall, p.queries_per_s))


def find_point(points: Sequence[SweepPoint], spec: str, nprobe: int | None = None,
               ef_search: int | None = None) -> SweepPoint | None:
    """The measured point of a configured setting (its knob value when the spec has one)."""
    for p in points:
        if p.spec == spec and (p.nprobe is None or p.nprobe == nprobe) and \
                (p.ef_search is None or p.ef_search == ef_search):
            return p
    return None


# ---- storing ---------------------------------------------------------------------------------------------------

def record_sweep(store, points: Sequence[SweepPoint], fingerprint: str = "", generation: str = "",
                 details: dict[str, Any] | None = None) -> str:
    """Store the points as ``SweepResult`` rows sharing a new sweep id (returned)."""
    sweep_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    with store.sessions() as s:
        for p in points:
            s.add(SweepResult(sweep_id=sweep_id, index_spec=p.spec, nprobe=p.nprobe, ef_search=p.ef_search, k=p.k,
                              recall=float(p.recall), queries_per_s=float(p.queries_per_s),
                              memory_bytes=int(p.memory_bytes), build_seconds=float(p.build_seconds),
                              n_vectors=p.n_vectors, n_queries=p.n_queries, model_fingerprint=fingerprint,
                              generation=generation, details={"pareto": p.pareto, **(details or {}), **p.details}))
        s.commit()
    return sweep_id


def _point(row: SweepResult) -> SweepPoint:
    d = dict(row.details or {})
    return SweepPoint(row.index_spec, row.nprobe, row.ef_search, row.k, row.recall, row.queries_per_s,
                      row.memory_bytes, row.build_seconds, row.n_vectors, row.n_queries, bool(d.pop("pareto", False)),
                      d)


def list_sweeps(store, limit: int = 50) -> list[dict[str, Any]]:
    """Stored sweeps, newest first: id, time, model, generation, settings measured, best recall and speed."""
    from sqlalchemy import func, select

    with store.sessions() as s:
        rows = s.execute(
            select(SweepResult.sweep_id, func.min(SweepResult.created_at), func.count(),
                   func.max(SweepResult.recall), func.max(SweepResult.queries_per_s),
                   func.max(SweepResult.model_fingerprint), func.max(SweepResult.generation),
                   func.max(SweepResult.n_vectors), func.max(SweepResult.k))
            .group_by(SweepResult.sweep_id).order_by(func.max(SweepResult.id).desc()).limit(limit)).all()
    return [{"sweep_id": r[0], "created_at": r[1].isoformat() if r[1] else None, "n_settings": int(r[2]),
             "best_recall": float(r[3]), "best_queries_per_s": float(r[4]), "model_fingerprint": r[5],
             "generation": r[6], "n_vectors": int(r[7]), "k": int(r[8])} for r in rows]


def load_sweep(store, sweep_id: str) -> list[SweepPoint]:
    """The points of one stored sweep, in measurement order ([] when there is no such sweep)."""
    from sqlalchemy import select

    with store.sessions() as s:
        rows = s.scalars(select(SweepResult).where(SweepResult.sweep_id == sweep_id).order_by(SweepResult.id)).all()
        return [_point(r) for r in rows]


# ---- config.toml -----------------------------------------------------------------------------------------------

_SECTION = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")


def _toml_value(value: str | int) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def set_config_value(path: str | os.PathLike, section: str, key: str, value: str | int) -> str | None:
    """Set ``[section] key = "value"`` (or an integer) in a TOML file by editing that one line.

    Comments and layout are untouched.
    The key is added at the end of its section (or a new section at the end of the file) when absent. The file
    is replaced crash-safely and the result must parse to the new value.

    Returns:
        The previous raw line, or None when the key was added.
    """
    p = Path(path)
    text = p.read_text()
    lines = text.splitlines(keepends=True)
    key_re = re.compile(rf"^(\s*{re.escape(key)}\s*=\s*)(\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^#\s]*)(.*?)(\r?\n)?$")
    current, last_in_section, old = None, None, None
    for i, line in enumerate(lines):
        m = _SECTION.match(line)
        if m:
            current = m.group(1).strip()
            if current == section:
                last_in_section = i
            continue
        if current != section:
            continue
        if line.strip() and not line.lstrip().startswith("#"):
            last_in_section = i
        km = key_re.match(line)
        if km:
            old = line
            lines[i] = f"{km.group(1)}{_toml_value(value)}{km.group(3)}{km.group(4) or ''}"
            break
    if old is None:
        new_line = f"{key} = {_toml_value(value)}\n"
        if last_in_section is None:
            lines.append(("" if text.endswith("\n") or not text else "\n") + f"\n[{section}]\n{new_line}")
        else:
            if not lines[last_in_section].endswith("\n"):
                lines[last_in_section] += "\n"
            lines.insert(last_in_section + 1, new_line)
    out = "".join(lines)
    parsed = tomllib.loads(out)
    if parsed.get(section, {}).get(key) != value:  # pragma: no cover - a guard, not a path
        raise ValueError(f"could not set [{section}] {key} in {p}")
    write_bytes_atomically(p, out.encode())
    return old


def validate_spec(spec: str, dim: int, n: int) -> None:
    """Raise ValueError unless ``spec`` is a FAISS factory string buildable over n vectors of dimension dim."""
    try:
        index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise ValueError(f"invalid index spec {spec!r}: {str(exc).splitlines()[0]}") from None
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        ivf = None
    if ivf is not None and n < ivf.nlist:
        raise ValueError(f"index spec {spec!r} has {ivf.nlist} lists but the catalog has only {n} vectors")


def format_bytes(n: float) -> str:
    """1.5 MiB style."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def default_grid(n: int) -> list[str]:
    """Specs worth sweeping for n vectors: Flat, IVF with ~sqrt(n) .. ~4*sqrt(n) lists, HNSW32."""
    specs = ["Flat"]
    for mult in (1, 2, 4):
        nlist = 2 ** max(2, int(round(math.log2(mult * math.sqrt(max(n, 1))))))
        if nlist * 39 <= n and f"IVF{nlist},Flat" not in specs:
            specs.append(f"IVF{nlist},Flat")
    return specs + ["HNSW32"]


# ---- wiring from settings (manage.py sweep) -------------------------------------------------------------------

def sweep_catalog(settings, specs: Sequence[str] | None, nprobes: Sequence[int], ef_searches: Sequence[int],
                  k: int = 10, n_queries: int = 1000, budget_s: float = 2.0,
                  problems: list[str] | None = None) -> tuple[list[SweepPoint], Any]:
    """Sweep the served generation's vectors (the current catalog embeddings); returns (points, its manifest).

    ``specs`` None or empty = ``default_grid`` for the catalog size.

    Raises:
        GenerationError: no index generation has been built yet (run ``manage.py index``).
    """
    from indexer.vectors.generations import load_generation

    gen = load_generation(settings.index_dir)
    vectors = np.ascontiguousarray(gen.vectors, np.float32)
    grid = sweep_settings(list(specs or default_grid(len(vectors))), nprobes, ef_searches)
    return measure_sweep(vectors, grid, k, n_queries, budget_s, problems=problems), gen.manifest


def apply_spec(settings, setting: SweepSetting | str, embedder=None) -> tuple[str, int]:
    """Write the setting into the settings' config file and rebuild the index generation with it.

    ``index.spec`` is always written; ``index.nprobe`` / ``index.ef_search`` too when the setting has that knob
    at a value other than the configured one.
    Each is an in-place edit of its one line. The spec is checked against the catalog first; if the rebuild fails
    the old lines are put back.

    Returns:
        (the new generation's name, its vector count).
    """
    import dataclasses

    from indexer.embedders import create_embedder_from_settings
    from indexer.pipeline.crash_safety import writer_lock
    from indexer.pipeline.plan import IndexReport
    from indexer.vectors.generations import load_generation
    from indexer.wiring import create_pipeline, open_store

    setting = SweepSetting(setting) if isinstance(setting, str) else setting
    if not settings.source or settings.source.startswith("<"):
        raise ValueError("--apply needs a config file (--config PATH)")
    gen = load_generation(settings.index_dir, verify_checksums=False)
    validate_spec(setting.spec, gen.manifest.dim, gen.manifest.count)
    values: dict[str, str | int] = {"spec": setting.spec}
    if setting.nprobe is not None and setting.nprobe != settings.index.nprobe:
        values["nprobe"] = setting.nprobe
    if setting.ef_search is not None and setting.ef_search != settings.index.ef_search:
        values["ef_search"] = setting.ef_search
    old = {key: set_config_value(settings.source, "index", key, value) for key, value in values.items()}
    index = dataclasses.replace(settings.index, **values)
    new_settings = dataclasses.replace(settings, index=index)
    store = open_store(new_settings)
    lock = writer_lock(new_settings.index_dir)
    try:
        pipeline = create_pipeline(new_settings, store, embedder or create_embedder_from_settings(new_settings),
                                   progress=False)
        report = IndexReport()
        pipeline.publish(report, force=True)
    except BaseException:
        for key, line in old.items():
            if line is not None:
                set_config_value(settings.source, "index", key, tomllib.loads(line.strip())[key])
        raise
    finally:
        lock.release()
        store.close()
    return report.generation or "", int(report.generation_count or 0)


def resolve_apply(points: Sequence[SweepPoint], apply: str, settings, min_recall: float) -> SweepSetting:
    """What ``--apply`` means: "recommended" = the recommended point (spec and knob); else SPEC with the
    configured nprobe / efSearch.

    Raises:
        ValueError: "recommended" when no setting could be measured.
    """
    if apply.strip().lower() == "recommended":
        chosen = recommend(points, min_recall)
        if chosen is None:
            raise ValueError("nothing was measured, so there is no recommended setting to apply")
        return SweepSetting(chosen.spec, chosen.nprobe, chosen.ef_search)
    spec = apply.strip()
    return SweepSetting(spec, settings.index.nprobe if _is_ivf(spec) else None,
                        settings.index.ef_search if _is_hnsw(spec) else None)


def configured_setting(settings, n: int, dim: int) -> SweepSetting:
    """The setting config.toml serves: index.spec ("auto" resolved for n vectors) with its knob."""
    from indexer.vectors.faiss_index import choose_spec

    spec = choose_spec(n, dim) if settings.index.spec == "auto" else settings.index.spec
    return SweepSetting(spec, settings.index.nprobe if _is_ivf(spec) else None,
                        settings.index.ef_search if _is_hnsw(spec) else None)


def sweep_report(points: Sequence[SweepPoint], settings, min_recall: float = DEFAULT_MIN_RECALL,
                 problems: Sequence[str] = (), sweep_id: str | None = None, generation: str = "",
                 applied: SweepSetting | None = None) -> dict[str, Any]:
    """The sweep as a markdown table (BENCHMARKS.md, terminal) and JSON, with the recommendation and a verdict on
    whether the configured default is on the measured Pareto front."""
    n = points[0].n_vectors + points[0].n_queries if points else 0
    chosen = recommend(points, min_recall)
    configured = configured_setting(settings, n, 0) if points else None
    current = find_point(points, configured.spec, configured.nprobe, configured.ef_search) if configured else None
    header = ["index", "setting", f"recall@{points[0].k if points else 10}", "single q/s", "memory", "build s",
              "Pareto"]
    rows = []
    for p in points:
        knob = f"nprobe={p.nprobe}" if p.nprobe is not None else (f"efSearch={p.ef_search}"
                                                                   if p.ef_search is not None else "-")
        mark = "yes" + (" (recommended)" if p is chosen else "") + (" (configured)" if p is current else "")
        rows.append([p.spec, knob, f"{p.recall:.4f}", f"{p.queries_per_s:,.0f}", format_bytes(p.memory_bytes),
                     f"{p.build_seconds:.2f}", mark if p.pareto else ("no (configured)" if p is current else "no")])
    table = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] +
                       ["| " + " | ".join(r) + " |" for r in rows])
    lines = [f"{points[0].n_vectors:,} catalog vectors of generation {generation or '?'}, "
             f"{points[0].n_queries} held-out catalog vectors as queries; recall@{points[0].k} against exact "
             "(Flat) search; queries/s one query per call on one thread; memory = the index's serialised size "
             "(the generation's vectors.npy, kept by every setting for exact filtered search, is not counted)."
             if points else "No setting could be measured.", "", table, ""]
    if chosen:
        lines.append(f"Recommended (fastest Pareto point with recall >= {min_recall}): **{chosen.label}** "
                     f"(recall {chosen.recall:.4f}, {chosen.queries_per_s:,.0f} q/s). Apply it (spec and knob) with "
                     "`python manage.py sweep --apply recommended`.")
    if configured is not None:
        state = ("not measured (add it to --index-specs)" if current is None else
                 "on the measured Pareto front" if current.pareto else "NOT on the measured Pareto front")
        lines.append(f"Configured default (index.spec = {settings.index.spec!r} -> {configured.label}): {state}.")
    applied_point = find_point(points, applied.spec, applied.nprobe, applied.ef_search) if applied else None
    if applied is not None:
        state = ("not measured in this sweep" if applied_point is None else
                 "on the measured Pareto front" if applied_point.pareto else "NOT on the measured Pareto front")
        lines.append(f"Applied as the new default (--apply): {applied.label}: {state}.")
    if problems:
        lines.append("Skipped: " + "; ".join(problems))
    head, rest = lines[:4], [line for line in lines[4:] if line]
    return {"markdown": ("\n".join(head) + "\n" + "\n\n".join(rest)).strip() + "\n",
            "json": {"sweep_id": sweep_id, "generation": generation, "points": [p.as_dict() for p in points],
                     "recommended": chosen.as_dict() if chosen else None,
                     "configured": configured.label if configured else None,
                     "configured_on_front": bool(current and current.pareto),
                     "applied": applied.label if applied else None,
                     "applied_on_front": bool(applied_point and applied_point.pareto) if applied else None,
                     "problems": list(problems)}}
