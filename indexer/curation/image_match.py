"""Same-picture verification: do two catalog images show the same photograph (re-encoded, resized, cropped a little,
brightened or darkened)?

Embedding similarity alone cannot tell a re-encoded copy from a different product shot the same way (measured on
the 42k catalog: a copy re-encoded at JPEG q30 and resized to half its size can sit at cosine 0.6 from its source
while distinct products of one type reach 0.99; BENCHMARKS.md "Curation: near-duplicates"). So near-duplicate
candidates found by vector search are verified on the pixels, in three steps:

1. Each image is resampled to a GRID_W x GRID_H working grid (3:4, the catalog's aspect).
2. Alignment: a copy is a crop (up to ``MAX_CROP`` of each side, split between its two ends) of the other picture.
   Each axis is aligned on its own, cheaply: the picture's darkness profile along the axis (its silhouette against
   the white background), for every crop of that axis in steps of ``STEP``, against the other picture's whole
   profile. Both directions are tried (either picture may be the crop of the other).
3. Score: at the best alignment both pictures become THUMB_W x THUMB_H colour thumbnails, each normalised to zero
   mean and unit norm (one gain and offset for all three channels: brightness and contrast cancel, colour does
   not). The thumbnails are cut into 4 x 4 regions and the similarity is 1 - the ``WORST_REGION``-th largest
   regional residual norm: a copy is close everywhere (JPEG noise spreads thin), another product shot alike
   differs somewhere (a print, a logo, a buckle), which a single global correlation averages away.

Pure numpy over decoded images; pairs are scored in batches grouped by alignment.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image

# Working grid an image is resampled to (width, height; the catalog's pictures are 60 x 80).
GRID_W, GRID_H = 48, 64
# Compared thumbnail (width, height): about the resolution of a half-size copy of a catalog picture.
THUMB_W, THUMB_H = 24, 32
# Largest share of an image's side a copy may have lost to cropping, split between the two ends.
MAX_CROP = 0.10
# Step of the crop offsets tried per end of an axis.
STEP = 0.0125
# Regions per axis of the thumbnail, and which worst region decides the score (1 = the worst; 3 forgives two
# regions damaged by JPEG blocking at an edge).
REGIONS = 4
WORST_REGION = 3


def _crop_offsets() -> tuple[tuple[float, float], ...]:
    ends = np.round(np.arange(0.0, MAX_CROP + 1e-9, STEP), 4)
    return tuple((float(a), float(b)) for a in ends for b in ends if a + b <= MAX_CROP + 1e-9)


# (start, end) shares of an axis cut away, the first one none.
OFFSETS = _crop_offsets()


def picture_grid(image: Image.Image) -> np.ndarray:
    """(GRID_H, GRID_W, 3) float32 of an image resampled to the working grid (RGB, 0..1)."""
    img = image.convert("RGB").resize((GRID_W, GRID_H), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 255.0


@lru_cache(maxsize=4)
def _sampling(n_out: int, n_in: int) -> np.ndarray:
    """(len(OFFSETS), n_out, n_in) box-filter matrices: one axis's crop averaged into n_out cells."""
    out = np.zeros((len(OFFSETS), n_out, n_in), np.float32)
    for k, (start, end) in enumerate(OFFSETS):
        lo, hi = start * n_in, (1.0 - end) * n_in
        step = (hi - lo) / n_out
        for j in range(n_out):
            a, b = lo + j * step, lo + (j + 1) * step
            for i in range(int(np.floor(a)), min(int(np.ceil(b)), n_in)):
                out[k, j, i] += max(0.0, min(b, i + 1) - max(a, i))
            out[k, j] /= out[k, j].sum()
    return out


def _unit_rows(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(len(x), -1)
    flat = flat - flat.mean(axis=1, keepdims=True)
    return (flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-6)).reshape(x.shape)


def _profiles(grids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised darkness profiles of every crop: ((N, A, THUMB_W) along x, (N, A, THUMB_H) along y)."""
    dark = 1.0 - grids.mean(axis=-1)                                   # (N, GRID_H, GRID_W)
    px = np.einsum("akw,nw->nak", _sampling(THUMB_W, GRID_W), dark.mean(axis=1))
    py = np.einsum("akh,nh->nak", _sampling(THUMB_H, GRID_H), dark.mean(axis=2))
    return _unit_rows(px.reshape(-1, THUMB_W)).reshape(px.shape), _unit_rows(py.reshape(-1, THUMB_H)).reshape(py.shape)


def _thumbnails(grids: np.ndarray, ax: int = 0, ay: int = 0) -> np.ndarray:
    """(N, THUMB_H, THUMB_W, 3) thumbnails of the crop (ax, ay) of each grid, normalised per picture."""
    n = len(grids)
    my, mx = _sampling(THUMB_H, GRID_H)[ay], _sampling(THUMB_W, GRID_W)[ax]
    rows = np.matmul(my, grids.reshape(n, GRID_H, GRID_W * 3)).reshape(n, THUMB_H, GRID_W, 3)
    both = np.matmul(rows.transpose(0, 1, 3, 2), mx.T).transpose(0, 1, 3, 2)
    return _unit_rows(both)


def _scores(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(similarity, correlation) of aligned normalised thumbnails (P, THUMB_H, THUMB_W, 3)."""
    corr = (a * b).sum(axis=(1, 2, 3))
    h, w = THUMB_H // REGIONS, THUMB_W // REGIONS
    diff = (a - b).reshape(len(a), REGIONS, h, REGIONS, w, 3)
    regional = np.sqrt((diff ** 2).sum(axis=(2, 4, 5))).reshape(len(a), -1)
    return 1.0 - np.sort(regional, axis=1)[:, -WORST_REGION], corr


_CHUNK = 16384  # pairs aligned at once (bounds memory: a chunk's crop profiles take ~100 MB)


def _best_crop(cropped: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """Index of the crop (of ``cropped`` (P, A, K)) whose profile best matches ``whole`` (P, K)."""
    return np.einsum("pak,pk->pa", cropped, whole).argmax(axis=1)


def pair_similarities(grids: Sequence[np.ndarray] | np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Picture similarity of each (i, j) row of ``pairs`` (indices into ``grids``), float32 (P,), at most 1.

    The pair's better direction (i cropped to fit j, or j to fit i; by correlation) gives the score.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    out = np.full(len(pairs), -1.0, np.float32)
    if not len(pairs):
        return out
    used = np.unique(pairs)
    local = np.searchsorted(used, pairs)
    g = np.stack([np.asarray(grids[int(r)], np.float32) for r in used])
    px, py = _profiles(g)
    whole = _thumbnails(g)
    best_corr = np.full(len(pairs), -np.inf, np.float32)
    for cropped, other in ((local[:, 0], local[:, 1]), (local[:, 1], local[:, 0])):
        code = np.concatenate([_best_crop(px[cropped[s:s + _CHUNK]], px[other[s:s + _CHUNK], 0]) * len(OFFSETS)
                               + _best_crop(py[cropped[s:s + _CHUNK]], py[other[s:s + _CHUNK], 0])
                               for s in range(0, len(pairs), _CHUNK)])
        for c in np.unique(code):
            rows = np.flatnonzero(code == c)
            sim, corr = _scores(_thumbnails(g[cropped[rows]], int(c) // len(OFFSETS), int(c) % len(OFFSETS)),
                                whole[other[rows]])
            better = corr > best_corr[rows]
            out[rows[better]] = sim[better]
            best_corr[rows[better]] = corr[better]
    return out


def picture_similarity(grid_a: np.ndarray, grid_b: np.ndarray) -> float:
    """Picture similarity (at most 1) of two picture grids; see the module docstring."""
    return float(pair_similarities([grid_a, grid_b], np.array([[0, 1]]))[0])
