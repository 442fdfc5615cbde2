"""Why did this match: heatmaps of the regions that drive the similarity of two pictures, and the deletion test that
measures how faithful a heatmap is.

Two methods over a GRID x GRID grid of cells of the model input:
- occlusion (gradient-free): grey out one cell at a time and measure how much the cosine with the other picture's
  embedding drops; every occluded copy goes through ``Embedder.embed_tensors`` in batches, so it runs on every
  runtime (torch, ONNX Runtime);
- gradient: d cosine / d input times the input (gradient x input) of the torch module, summed per cell (one
  backward pass; needs the torch module, whatever runtime serves the embeddings).
Deletion test: grey out the top ``fraction`` of cells by heat and re-score; a faithful map drops the similarity more
than greying out random cells of the same area. Pure torch + numpy.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

GRID = 8
METHODS = ("occlusion", "gradient")
# Normalised value of a grey (mean) pixel: occluded cells carry no information either way.
FILL = 0.0


def _cells(size: int, grid: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, size, grid + 1).round().astype(int)
    return [(int(edges[i]), int(edges[i + 1])) for i in range(grid)]


def mask_cells(x: torch.Tensor, cells: np.ndarray, grid: int = GRID) -> torch.Tensor:
    """Copy of the (3, H, W) input with the grid cells flagged in ``cells`` (grid, grid) set to grey."""
    out = x.clone()
    rows, cols = _cells(x.shape[1], grid), _cells(x.shape[2], grid)
    for i, j in zip(*np.nonzero(cells), strict=True):
        (y0, y1), (x0, x1) = rows[i], cols[j]
        out[:, y0:y1, x0:x1] = FILL
    return out


def occlusion_heatmap(embedder, x: torch.Tensor, target: np.ndarray, grid: int = GRID,
                      batch: int = 64) -> tuple[np.ndarray, float]:
    """(heat (grid, grid), cosine of the whole picture with ``target``): heat = cosine drop when a cell is greyed.

    Args:
        embedder: An Embedder (engine.models.embedder); its ``embed_tensors`` runs every forward pass.
        x: (3, H, W) preprocessed picture.
        target: (dim,) unit embedding of the other picture.
    """
    t = np.asarray(target, np.float32)
    copies = [x]
    for k in range(grid * grid):
        cells = np.zeros((grid, grid), bool)
        cells[k // grid, k % grid] = True
        copies.append(mask_cells(x, cells, grid))
    stack = torch.stack(copies)
    vectors = np.concatenate([embedder.embed_tensors(stack[i:i + batch]) for i in range(0, len(stack), batch)])
    scores = vectors @ t
    return (scores[0] - scores[1:]).reshape(grid, grid).astype(np.float32), float(scores[0])


def gradient_heatmap(embedder, x: torch.Tensor, target: np.ndarray, grid: int = GRID) -> tuple[np.ndarray, float]:
    """(heat (grid, grid), cosine): gradient x input of the cosine with ``target``, summed over channels and cells.
    Uses the torch module (eval mode, on its device)."""
    module = embedder.module
    was_training = module.training
    module.eval()
    try:
        inp = x[None].to(embedder.device, dtype=torch.float32).requires_grad_(True)
        with torch.enable_grad():
            emb = F.normalize(module(inp).float(), dim=1)[0]
            cosine = emb @ torch.as_tensor(np.asarray(target, np.float32), device=emb.device)
            (grad,) = torch.autograd.grad(cosine, inp)
        relevance = (grad * inp).sum(dim=1)[0].detach().cpu().numpy()
    finally:
        if was_training:
            module.train()
    rows, cols = _cells(x.shape[1], grid), _cells(x.shape[2], grid)
    heat = np.array([[relevance[y0:y1, x0:x1].sum() for (x0, x1) in cols] for (y0, y1) in rows], np.float32)
    return heat, float(cosine.detach().cpu())


def heatmap(embedder, x: torch.Tensor, target: np.ndarray, method: str = "occlusion",
            grid: int = GRID) -> tuple[np.ndarray, float]:
    """Heat of ``method`` ("occlusion" or "gradient"); see the two functions."""
    if method == "occlusion":
        return occlusion_heatmap(embedder, x, target, grid)
    if method == "gradient":
        return gradient_heatmap(embedder, x, target, grid)
    raise ValueError(f"unknown explanation method {method!r}; known: {', '.join(METHODS)}")


def top_cells(heat: np.ndarray, fraction: float) -> np.ndarray:
    """(grid, grid) bool mask of the ``fraction`` of cells with the most heat (at least one)."""
    n = max(1, round(heat.size * fraction))
    mask = np.zeros(heat.size, bool)
    mask[np.argsort(-heat.reshape(-1), kind="stable")[:n]] = True
    return mask.reshape(heat.shape)


def deletion_test(embedder, x: torch.Tensor, target: np.ndarray, heat: np.ndarray, fraction: float = 0.2,
                  rng: np.random.Generator | None = None, random_draws: int = 1) -> tuple[float, float, float]:
    """(cosine, cosine after greying the top-heat cells, mean cosine after greying as many random cells)."""
    rng = rng or np.random.default_rng(0)
    grid = heat.shape[0]
    top = top_cells(heat, fraction)
    batch = [x, mask_cells(x, top, grid)]
    for _ in range(random_draws):
        cells = np.zeros(heat.size, bool)
        cells[rng.choice(heat.size, int(top.sum()), replace=False)] = True
        batch.append(mask_cells(x, cells.reshape(heat.shape), grid))
    scores = embedder.embed_tensors(torch.stack(batch)) @ np.asarray(target, np.float32)
    return float(scores[0]), float(scores[1]), float(scores[2:].mean())


# Named colours the explanation reports (a short palette; catalog colour names are finer than a picture can tell).
PALETTE = {"Black": (20, 20, 20), "White": (245, 245, 245), "Grey": (128, 128, 128), "Red": (200, 30, 40),
           "Pink": (235, 130, 170), "Orange": (240, 130, 30), "Yellow": (240, 210, 40), "Green": (40, 140, 60),
           "Blue": (40, 70, 170), "Navy Blue": (25, 30, 80), "Purple": (110, 50, 140), "Brown": (120, 75, 40),
           "Beige": (220, 200, 160)}


def colour_name(image) -> str:
    """The palette colour nearest the mean of a picture's non-background pixels (PIL image)."""
    img = image.convert("RGB").resize((48, 48))
    px = np.asarray(img, np.float32).reshape(-1, 3)
    fg = px[(px < 236).any(axis=1)]
    mean = (fg if len(fg) >= 16 else px).mean(axis=0)
    return min(PALETTE, key=lambda name: float(((np.array(PALETTE[name]) - mean) ** 2).sum()))


def read_attributes(embedder, vector: np.ndarray) -> dict[str, object]:
    """What the model reads from a picture's embedding: its predicted article type and that prediction's
    probability (from the taxonomy classifier's components of the vector; None without a classifier)."""
    spec = getattr(embedder, "classifier_spec", None)
    if not spec or not spec.get("weight"):
        return {"type": None, "type_confidence": None}
    classes = spec["classes"]
    tail = np.square(np.asarray(vector, np.float32)[-len(classes):]) / float(spec["weight"])
    tail = tail / max(float(tail.sum()), 1e-12)
    best = int(tail.argmax())
    return {"type": classes[best], "type_confidence": round(float(tail[best]), 4)}


def _display(heat: np.ndarray) -> list[list[float]]:
    """Heat scaled to [0, 1] for display (negative evidence shown as none)."""
    h = np.clip(heat, 0.0, None)
    top = float(h.max())
    return (h / top if top > 0 else h).round(3).tolist()


def explain_pair(embedder, query_image, item_image, method: str = "occlusion", grid: int = GRID,
                 query_embedder=None) -> dict[str, object]:  # noqa: ANN001 - engine Embedders
    """Why ``item_image`` matched ``query_image``: the cosine, a heatmap on each picture (which cells of the
    letterboxed model input drive the similarity to the other picture), and the attributes the model reads from
    each (type, colour) with whether they agree. Heatmaps are ``grid`` rows of ``grid`` values in [0, 1].

    Args:
        embedder: The Embedder of the catalog pictures (the served model): embeds and perturbs ``item_image``.
        query_embedder: The Embedder that embedded the query when it scored the result (a street encoder for query
            photos gives vectors of the same space); None = ``embedder``. It embeds and perturbs ``query_image``.
            The type each side reads comes from ``embedder``'s classifier components (both vectors live in its
            space).
    """
    if method not in METHODS:
        raise ValueError(f"unknown explanation method {method!r}; known: {', '.join(METHODS)}")
    query_side = query_embedder or embedder
    if query_side is embedder:
        x = embedder.preprocess_batch([query_image, item_image])
        vectors = embedder.embed_tensors(x)
        xq, xi = x[0], x[1]
    else:
        xq, xi = query_side.preprocess_batch([query_image])[0], embedder.preprocess_batch([item_image])[0]
        vectors = np.stack([query_side.embed_tensors(xq[None])[0], embedder.embed_tensors(xi[None])[0]])
    heat_q, _ = heatmap(query_side, xq, vectors[1], method, grid)
    heat_i, _ = heatmap(embedder, xi, vectors[0], method, grid)
    sides = {}
    for name, image, vector, heat in (("query", query_image, vectors[0], heat_q), ("item", item_image, vectors[1],
                                                                                    heat_i)):
        sides[name] = {**read_attributes(embedder, vector), "colour": colour_name(image), "heatmap": _display(heat)}
    agree = {"type": None if sides["query"]["type"] is None else sides["query"]["type"] == sides["item"]["type"],
             "colour": sides["query"]["colour"] == sides["item"]["colour"]}
    return {"score": round(float(vectors[0] @ vectors[1]), 6), "method": method, "grid": grid, **sides,
            "agree": agree}
