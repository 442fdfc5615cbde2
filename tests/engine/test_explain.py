"""engine/explain.py: an explanation scores and perturbs the query with the embedder that scored it."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw


def _picture(colour: tuple[int, int, int], box: tuple[int, int, int, int]) -> Image.Image:
    img = Image.new("RGB", (60, 80), (255, 255, 255))
    ImageDraw.Draw(img).rectangle(box, fill=colour)
    return img


def test_query_side_uses_its_own_embedder() -> None:
    from engine import create_embedder
    from engine.explain import explain_pair

    served = create_embedder("efficientnet_lite0", weights="random", input_size=64, device="cpu")
    street = create_embedder("efficientnet_lite0", weights="random", input_size=64, device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a "street encoder": the served model's weights, nudged
        for p in street.module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    query, item = _picture((200, 30, 40), (10, 10, 50, 70)), _picture((40, 70, 170), (5, 20, 55, 60))
    both = served.preprocess_batch([query, item])
    same = float(np.dot(*served.embed_tensors(both)))
    cross = float(street.embed_tensors(street.preprocess_batch([query]))[0]
                  @ served.embed_tensors(served.preprocess_batch([item]))[0])
    assert abs(same - cross) > 1e-3  # the two models disagree enough to tell which one scored
    plain = explain_pair(served, query, item, grid=4)
    mixed = explain_pair(served, query, item, grid=4, query_embedder=street)
    assert abs(plain["score"] - same) < 1e-5 and abs(mixed["score"] - cross) < 1e-5
    assert plain["query"]["heatmap"] != mixed["query"]["heatmap"]
    assert len(mixed["item"]["heatmap"]) == 4

