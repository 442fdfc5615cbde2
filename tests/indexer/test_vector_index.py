"""Index tests on seeded synthetic vectors with exact ground truth (IndexFlat / numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.vectors.faiss_index import (
    SearchParams,
    TorchExactSearcher,
    VectorSearcher,
    build_faiss_index,
    choose_spec,
)
from indexer.vectors.synthetic_vectors import clustered_unit_vectors, exact_top_k, recall_against


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return clustered_unit_vectors(n, dim, seed=seed)


def exact(q: np.ndarray, x: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    return ids[exact_top_k(q, x, k)]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return recall_against(found, truth)


@pytest.fixture(scope="module")
def data():
    x = clustered(20_000, 64)
    ids = np.arange(1000, 1000 + len(x), dtype=np.int64) * 3  # sparse, non-contiguous like SQL keys
    q = clustered(200, 64, seed=1)
    return x, ids, q


def test_choose_spec_scales_with_size():
    assert choose_spec(1_000, 1280) == "Flat"
    assert choose_spec(1_000_000, 1280).startswith("IVF2048,")
    assert choose_spec(10_000_000, 512).endswith("SQ8")


@pytest.mark.parametrize("spec,min_recall", [("Flat", 1.0), ("IVF64,Flat", 0.9), ("HNSW32", 0.9)])
def test_recall_against_exact(data, spec, min_recall):
    x, ids, q = data
    index = build_faiss_index(x, ids, spec)
    searcher = VectorSearcher(index, ids, x, backend="cpu", params=SearchParams(nprobe=16, ef_search=64))
    _, found = searcher.search(q, 10)
    r = recall(found, exact(q, x, ids, 10))
    assert r >= min_recall, f"{spec}: recall@10 {r:.3f}"
    assert set(found.ravel()) <= set(ids.tolist())


@pytest.mark.parametrize("spec", ["Flat", "IVF64,Flat", "HNSW32"])
def test_selective_filter_still_returns_k(data, spec):
    x, ids, q = data
    index = build_faiss_index(x, ids, spec)
    searcher = VectorSearcher(index, ids, x, backend="cpu")
    rng = np.random.default_rng(3)
    allowed = rng.choice(ids, 25, replace=False)
    _, found = searcher.search(q[:5], 10, allowed_ids=allowed)
    for row in found:
        assert len(row) == 10 and (row >= 0).all()
        assert set(row.tolist()) <= set(allowed.tolist())
    # The filtered result is the exact top-10 of the allowed subset.
    mask = np.isin(ids, allowed)
    truth = exact(q[:5], x[mask], ids[mask], 10)
    assert recall(found, truth) == 1.0


def test_filter_with_fewer_matches_than_k_pads(data):
    x, ids, q = data
    searcher = VectorSearcher(build_faiss_index(x, ids, "Flat"), ids, x, backend="cpu")
    scores, found = searcher.search(q[:1], 10, allowed_ids=ids[:3])
    assert sorted(found[0][:3].tolist()) == sorted(ids[:3].tolist())
    assert (found[0][3:] == -1).all() and np.isinf(scores[0][3:]).all()


def test_large_filter_goes_through_faiss_selector(data, monkeypatch):
    import indexer.vectors.faiss_index as vi

    monkeypatch.setattr(vi, "EXACT_FILTER_MAX", 10)
    x, ids, q = data
    searcher = VectorSearcher(build_faiss_index(x, ids, "IVF64,Flat"), ids, x, backend="cpu")
    allowed = ids[::50]  # 400 ids, 2%
    _, found = searcher.search(q[:20], 10, allowed_ids=allowed)
    assert set(found.ravel().tolist()) - {-1} <= set(allowed.tolist())
    mask = np.isin(ids, allowed)
    assert recall(found, exact(q[:20], x[mask], ids[mask], 10)) >= 0.9
    assert (found >= 0).all()


def test_torch_exact_matches_flat(data):
    x, ids, q = data
    torch_s = TorchExactSearcher(x, ids, device="cpu", chunk_rows=3000)  # several chunks
    s_t, i_t = torch_s.search(q, 10)
    flat = VectorSearcher(build_faiss_index(x, ids, "Flat"), ids, x, backend="cpu")
    s_f, i_f = flat.search(q, 10)
    assert recall(i_t, i_f) >= 0.999
    np.testing.assert_allclose(s_t, s_f, rtol=1e-4, atol=1e-5)
    allowed = ids[::97]
    _, i_tf = torch_s.search(q[:4], 5, allowed)
    _, i_ff = flat.search(q[:4], 5, allowed)
    assert (i_tf == i_ff).all()


def test_torch_backend_through_vector_searcher(data):
    x, ids, q = data
    s = VectorSearcher(build_faiss_index(x, ids, "Flat"), ids, x, backend="torch-cpu")
    assert s.backend == "torch-cpu"
    _, found = s.search(q[:3], 5)
    assert (found == exact(q[:3], x, ids, 5)).all()


def test_bad_spec_and_dimension_errors(data):
    x, ids, _ = data
    with pytest.raises(ValueError, match="invalid index spec"):
        build_faiss_index(x, ids, "NotAnIndex")
    with pytest.raises(ValueError, match="lists but only"):
        build_faiss_index(x[:10], ids[:10], "IVF64,Flat")
    s = VectorSearcher(build_faiss_index(x, ids, "Flat"), ids, x, backend="cpu")
    with pytest.raises(ValueError, match="dimension"):
        s.search(np.zeros((1, 8), np.float32), 3)


def test_faiss_gpu_absent_degrades_to_cpu(data):
    x, ids, q = data
    s = VectorSearcher(build_faiss_index(x, ids, "Flat"), ids, x, backend="auto")
    assert s.backend in ("faiss-cpu", "faiss-gpu", "torch-cuda")
    _, found = s.search(q[:2], 3)
    assert found.shape == (2, 3)
