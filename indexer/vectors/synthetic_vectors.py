"""Seeded synthetic embedding sets with exact ground truth, for index tests and benchmarks.

Uniform random unit vectors have no structure and make every approximate index look bad; real
embeddings have low intrinsic dimension and clusters. So vectors here are a fixed non-linear map of
a low-dimensional clustered latent, plus a little isotropic noise (faiss's SyntheticDataset idea).
Queries drawn with another seed share the geometry of the database.
"""

from __future__ import annotations

import numpy as np


def clustered_unit_vectors(n: int, dim: int, seed: int = 0, n_clusters: int = 64, latent: int = 12,
                           chunk: int = 100_000) -> np.ndarray:
    """(n, dim) float32 unit vectors; the latent map and centres are fixed, `seed` picks the points."""
    basis = np.random.default_rng(12345).standard_normal((latent, dim)).astype(np.float32)
    centres = np.random.default_rng(54321).standard_normal((n_clusters, latent)).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        z = centres[rng.integers(0, n_clusters, m)] + 0.5 * rng.standard_normal((m, latent)).astype(np.float32)
        x = np.tanh(z @ basis) + 0.05 * rng.standard_normal((m, dim)).astype(np.float32)
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def exact_top_k(queries: np.ndarray, database: np.ndarray, k: int, chunk: int = 200_000) -> np.ndarray:
    """Row indices of the exact top-k inner products (ground truth), computed in chunks."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(database), chunk):
        s = queries @ database[start:start + chunk].T
        kk = min(k, s.shape[1])
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        cat_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], 1)
        cat_i = np.concatenate([best_i, part + start], 1)
        order = np.argsort(-cat_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(cat_s, order, 1), np.take_along_axis(cat_i, order, 1)
    return best_i


def recall_against(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of the true top-k found (recall@k against exact search)."""
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k].tolist()) & set(t.tolist())) / k for f, t in zip(found, truth, strict=True)]))
