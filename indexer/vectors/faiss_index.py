"""Vector search over one index generation: FAISS (CPU or GPU) or an exact torch/CUDA search.

Vectors are L2-normalised float32, compared by inner product (= cosine). Ids are SQL primary keys.
Filters arrive as an array of allowed ids and are applied inside the search (a FAISS IDSelector,
or a mask in the torch path), so a selective filter still yields k results when k items match.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import faiss
import numpy as np

log = logging.getLogger(__name__)

# Below this many vectors "auto" uses exact search: it is fast enough and recall is 1.0.
AUTO_FLAT_BELOW = 50_000
# At or below this many allowed ids, a filtered search is done exactly over just those vectors.
EXACT_FILTER_MAX = 20_000


def choose_spec(n: int, dim: int) -> str:
    """The default FAISS factory string for n vectors of dimension dim.

    Flat (exact) below 50k vectors; IVF with ~2*sqrt(n) lists (a power of two; k-means training
    stays affordable on a 2-core machine) and flat storage up to 2M; IVF with 8-bit scalar
    quantisation above that, to bound memory.
    """
    if n < AUTO_FLAT_BELOW:
        return "Flat"
    nlist = 2 ** int(round(math.log2(2 * math.sqrt(n))))
    if n <= 2_000_000:
        return f"IVF{nlist},Flat"
    return f"IVF{nlist},SQ8"


def faiss_has_gpu() -> bool:
    """True when the installed faiss was built with GPU support and sees a GPU."""
    get = getattr(faiss, "get_num_gpus", None)
    try:
        return bool(get and get() > 0 and hasattr(faiss, "StandardGpuResources"))
    except RuntimeError:
        return False


def torch_has_cuda() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return False
    return torch.cuda.is_available()


def build_faiss_index(vectors: np.ndarray, ids: np.ndarray, spec: str) -> faiss.Index:
    """Build a FAISS index from a factory string, with inner-product metric and ids = SQL keys.

    Raises:
        ValueError: the spec is not a valid factory string, or IVF has more lists than vectors.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    n, dim = vectors.shape
    try:
        base = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise ValueError(f"invalid index spec {spec!r}: {str(exc).splitlines()[0]}") from None
    ivf = _ivf_of(base)
    if ivf is not None and n < ivf.nlist:
        raise ValueError(f"index spec {spec!r} has {ivf.nlist} lists but only {n} vectors: use a smaller IVF "
                         "or 'Flat' (index.spec in config.toml)")
    index = base if hasattr(base, "id_map") or ivf is base else faiss.IndexIDMap2(base)
    if not index.is_trained:
        rng = np.random.default_rng(0)
        # 64 points per list trains k-means well (faiss warns below 39) at a quarter of faiss's default cost.
        cap = 64 * (ivf.nlist if ivf is not None else 4096)
        sample = vectors if n <= cap else vectors[np.sort(rng.choice(n, cap, replace=False))]
        index.train(sample)
    if n:
        index.add_with_ids(vectors, ids)
    return index


def _ivf_of(index: faiss.Index) -> faiss.IndexIVF | None:
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def _hnsw_of(index: faiss.Index) -> faiss.IndexHNSW | None:
    inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else index
    return inner if isinstance(inner, faiss.IndexHNSW) else None


@dataclass
class SearchParams:
    nprobe: int = 32
    ef_search: int = 128


class VectorSearcher:
    """Answers top-k inner-product queries over one generation's vectors.

    backend is "faiss-cpu", "faiss-gpu" or "torch-<device>" (exact). The id array and, for
    exact filtered search, the vectors are kept so that small filtered searches are exact.
    """

    def __init__(self, index: faiss.Index, ids: np.ndarray, vectors: np.ndarray | None, backend: str = "auto",
                 params: SearchParams | None = None) -> None:
        self.params = params or SearchParams()
        self.ids = np.ascontiguousarray(ids, dtype=np.int64)
        self.dim = index.d
        self.count = int(index.ntotal)
        self._vectors = vectors
        self._row_of: dict[int, int] | None = None
        self._index = index
        self._gpu_index = None
        self._torch = None
        self.backend = self._choose_backend(backend)
        self._apply_params(index)

    def _choose_backend(self, wanted: str) -> str:
        if wanted == "cpu":
            return "faiss-cpu"
        if wanted.startswith("torch"):
            device = wanted.split("-", 1)[1] if "-" in wanted else ("cuda" if torch_has_cuda() else "cpu")
            self._torch = TorchExactSearcher(self._require_vectors(), self.ids, device=device)
            return f"torch-{device}"
        if wanted not in ("auto", "gpu"):
            raise ValueError(f"index.search_device must be auto, cpu, gpu or torch-<device>, not {wanted!r}")
        if faiss_has_gpu():
            try:
                res = faiss.StandardGpuResources()
                self._gpu_index = faiss.index_cpu_to_gpu(res, 0, self._index)
                self._gpu_res = res
                return "faiss-gpu"
            except (RuntimeError, AttributeError) as exc:  # e.g. HNSW has no GPU version
                log.info("faiss GPU unavailable for this index (%s); trying torch", exc)
        if torch_has_cuda() and self._vectors is not None:
            self._torch = TorchExactSearcher(self._vectors, self.ids, device="cuda")
            return "torch-cuda"
        return "faiss-cpu"

    def _require_vectors(self) -> np.ndarray:
        if self._vectors is None:
            raise ValueError("exact torch search needs the generation's vectors")
        return self._vectors

    def _apply_params(self, index: faiss.Index) -> None:
        ivf = _ivf_of(index)
        if ivf is not None:
            ivf.nprobe = min(self.params.nprobe, ivf.nlist)
        hnsw = _hnsw_of(index)
        if hnsw is not None:
            hnsw.hnsw.efSearch = self.params.ef_search

    def search(self, queries: np.ndarray, k: int,
               allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; missing slots have id -1 and score -inf.

        Args:
            queries: (Q, dim) float32, L2-normalised.
            k: results per query (>= 1).
            allowed_ids: if given, only these ids may be returned.
        """
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise ValueError(f"query dimension {q.shape[1]} != index dimension {self.dim}")
        k = max(1, int(k))
        if self.count == 0:
            return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        if allowed_ids is not None:
            allowed_ids = np.ascontiguousarray(allowed_ids, dtype=np.int64)
            if len(allowed_ids) == 0:
                return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        if self._torch is not None:
            return self._torch.search(q, k, allowed_ids)
        if allowed_ids is not None and len(allowed_ids) <= EXACT_FILTER_MAX and self._vectors is not None:
            return self._exact_subset(q, k, allowed_ids)
        if allowed_ids is None:
            index = self._gpu_index if self._gpu_index is not None else self._index
            scores, ids = index.search(q, min(k, self.count))
        else:
            scores, ids = self._faiss_filtered(q, k, allowed_ids)
        return _pad(scores, ids, k)

    def _faiss_filtered(self, q: np.ndarray, k: int, allowed_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sel = faiss.IDSelectorBatch(allowed_ids)
        ivf = _ivf_of(self._index)
        hnsw = _hnsw_of(self._index)
        frac = len(allowed_ids) / max(self.count, 1)
        if ivf is not None:
            # Probe more lists when few items pass the filter, so k matches are still found.
            nprobe = min(ivf.nlist, max(self.params.nprobe, int(math.ceil(self.params.nprobe / max(frac, 1e-6)))))
            params = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
        elif hnsw is not None:
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(self.params.ef_search, k))
        else:
            params = faiss.SearchParameters(sel=sel)
        # IndexIDMap applies the selector to the external ids.
        return self._index.search(q, min(k, len(allowed_ids)), params=params)

    def _exact_subset(self, q: np.ndarray, k: int, allowed_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._row_of is None:
            self._row_of = {int(i): r for r, i in enumerate(self.ids)}
        rows = np.fromiter((self._row_of.get(int(i), -1) for i in allowed_ids), np.int64, len(allowed_ids))
        rows = rows[rows >= 0]
        if len(rows) == 0:
            return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        sub = self._vectors[rows]
        scores = q @ sub.T
        kk = min(k, len(rows))
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        return _pad(np.take_along_axis(top_scores, order, axis=1), self.ids[rows][top], k)


def _pad(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, np.float32)
    ids = np.asarray(ids, np.int64)
    scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
    if ids.shape[1] < k:
        extra = k - ids.shape[1]
        scores = np.pad(scores, ((0, 0), (0, extra)), constant_values=-np.inf)
        ids = np.pad(ids, ((0, 0), (0, extra)), constant_values=-1)
    return scores, ids


class TorchExactSearcher:
    """Exact inner-product search with torch: the gallery on the device (fp16 on CUDA, fp32 on CPU),
    matmul + top-k over chunks of the gallery, queries batched. Used when torch sees a GPU but the
    installed faiss has no GPU support; also runs on the CPU (tests, and as a reference)."""

    def __init__(self, vectors: np.ndarray, ids: np.ndarray, device: str = "cuda", chunk_rows: int = 1 << 20) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.dtype = dtype
        self.gallery = torch.from_numpy(np.ascontiguousarray(vectors, np.float32)).to(self.device, dtype)
        self.ids_np = np.ascontiguousarray(ids, np.int64)
        self.ids = torch.from_numpy(self.ids_np).to(self.device)
        self.chunk_rows = chunk_rows
        self._row_of: dict[int, int] | None = None

    def search(self, q: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        torch = self.torch
        n = self.gallery.shape[0]
        mask = None
        if allowed_ids is not None:
            if self._row_of is None:
                self._row_of = {int(i): r for r, i in enumerate(self.ids_np)}
            rows = [self._row_of[int(i)] for i in allowed_ids if int(i) in self._row_of]
            mask = torch.zeros(n, dtype=torch.bool, device=self.device)
            if rows:
                mask[torch.tensor(rows, device=self.device)] = True
            allowed = len(rows)
        else:
            allowed = n
        kk = min(k, allowed)
        if kk == 0:
            return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        with torch.inference_mode():
            qt = torch.from_numpy(q).to(self.device, self.dtype)
            best_s = None
            best_i = None
            for start in range(0, n, self.chunk_rows):
                g = self.gallery[start:start + self.chunk_rows]
                s = (qt @ g.T).float()
                if mask is not None:
                    s.masked_fill_(~mask[start:start + g.shape[0]], float("-inf"))
                top_s, top_i = torch.topk(s, min(kk, g.shape[0]), dim=1)
                top_i = top_i + start
                if best_s is None:
                    best_s, best_i = top_s, top_i
                else:
                    cat_s = torch.cat([best_s, top_s], 1)
                    cat_i = torch.cat([best_i, top_i], 1)
                    best_s, pos = torch.topk(cat_s, kk, dim=1)
                    best_i = torch.gather(cat_i, 1, pos)
            out_ids = self.ids[best_i]
            scores = best_s.cpu().numpy()
            ids = out_ids.cpu().numpy()
        return _pad(scores, ids, k)
