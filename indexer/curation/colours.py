"""Colour descriptors (engine/colour.py) of catalog pictures for the label audit, cached by image sha256 in one
.npz file written crash-safely."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from engine.colour import COLOUR_DIM, colour_descriptor
from engine.files import write_atomically


def picture_colours(rows: Sequence[dict[str, Any]], cache_path: Path | None, progress: bool = True) -> np.ndarray:
    """(len(rows), COLOUR_DIM) colour descriptors of the rows' ``image_path`` pictures, keyed by ``content_sha256``
    in ``cache_path`` (None: no cache). An unreadable picture gets zeros (it then votes for nothing)."""
    cache: dict[str, np.ndarray] = {}
    if cache_path is not None and cache_path.is_file():
        with np.load(cache_path) as data:
            cache = dict(zip(data["keys"].tolist(), data["values"], strict=True))
    out = np.zeros((len(rows), COLOUR_DIM), np.float32)
    missing = 0
    for k, r in enumerate(tqdm(rows, desc="colour descriptors", unit="img", disable=not progress)):
        key = r["content_sha256"]
        if key not in cache:
            missing += 1
            try:
                with Image.open(r["image_path"]) as img:
                    cache[key] = colour_descriptor(img)
            except OSError:
                cache[key] = np.zeros(COLOUR_DIM, np.float32)
        out[k] = cache[key]
    if missing and cache_path is not None:
        keys = np.array(list(cache))
        values = np.stack([cache[k] for k in keys])

        def write(fh) -> None:  # noqa: ANN001 - a binary file object
            np.savez(fh, keys=keys, values=values)

        write_atomically(cache_path, write)
    return out
