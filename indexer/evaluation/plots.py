"""Recall@k curves as a PNG, drawn with PIL alone (no plotting library is needed at run time)."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from engine.files import write_atomically

PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127))


def plot_recall_curves(curves: Mapping[str, Sequence[float]], path: str | os.PathLike, title: str = "recall@k",
                       size: tuple[int, int] = (720, 480)) -> Path:
    """Draw recall@1..K curves (one line per name) on a 0..1 axis and write a PNG crash-safely.

    Args:
        curves: {legend name: [recall@1, recall@2, ...]}; curves may differ in length.
        path: Output PNG.
        title: Text above the plot.
        size: Image size in pixels.

    Returns:
        The path written.
    """
    w, h = size
    left, right, top, bottom = 60, 20, 40, 50
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    max_k = max((len(c) for c in curves.values()), default=1) or 1
    pw, ph = w - left - right, h - top - bottom

    def xy(k: int, r: float) -> tuple[float, float]:
        x = left + (0.5 if max_k == 1 else (k - 1) / (max_k - 1)) * pw
        return x, top + (1 - r) * ph

    draw.text((left, 12), title, fill="black", font=font)
    for i in range(11):  # horizontal grid every 0.1
        y = top + i * ph / 10
        draw.line((left, y, left + pw, y), fill=(225, 225, 225))
        draw.text((left - 30, y - 6), f"{1 - i / 10:.1f}", fill="black", font=font)
    for k in range(1, max_k + 1):
        if k in (1, max_k) or k % 5 == 0:
            x, _ = xy(k, 0)
            draw.line((x, top + ph, x, top + ph + 4), fill="black")
            draw.text((x - 4, top + ph + 8), str(k), fill="black", font=font)
    draw.rectangle((left, top, left + pw, top + ph), outline="black")
    draw.text((left + pw / 2 - 8, h - 22), "k", fill="black", font=font)
    for i, (name, curve) in enumerate(curves.items()):
        colour = PALETTE[i % len(PALETTE)]
        pts = [xy(k, r) for k, r in enumerate(curve, start=1)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for x, y in pts:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
        ly = top + ph - 16 * (len(curves) - i) - 6
        draw.line((left + pw - 190, ly + 6, left + pw - 170, ly + 6), fill=colour, width=3)
        label = f"{name} (r@1 {curve[0]:.3f})" if curve else name
        draw.text((left + pw - 165, ly), label[:30], fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    out = Path(path)
    data = buf.getvalue()
    write_atomically(out, lambda f: f.write(data))
    return out
