"""The colour head: which of the catalog's base colours an item is, read from its served vector and, when it was
trained with them, the item picture's colour descriptor (engine/colour.py).

The served embedding carries colour only weakly (ImageNet features are trained to be fairly colour invariant), so a
word query's vector ranks "navy blue" items poorly by cosine alone. A small MLP trained on train products
(`manage.py train-colour-head`) reads the colour back out; search adds the log-probability of the colour a query
names to the cosine (indexer/search/label_terms.py). Its inputs are what the server already holds for every item:
the vectors of the index and the colour descriptors the outfit model uses (``colour_bins`` per channel, cached by
image sha256), so nothing is re-embedded and no index changes.

Checkpoint: a keyed file (engine/models/keyed_files.py), one per image model fingerprint, meta with the colour names
in logit order and the shape of the MLP (``colour_bins`` 0: vectors only).

May import: torch, numpy, engine.models.keyed_files, engine.errors.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.errors import EmbedderError
from engine.models.keyed_files import keyed_path, load_keyed, save_keyed

COLOUR_HEAD_FORMAT = 1
HINT = "run `python manage.py train-colour-head` for the served image model (or set text.colour_head = \"\")"


class ColourHeadError(EmbedderError):
    """A colour head that cannot be used: missing, corrupt, or trained for another image model."""


class ColourHead(nn.Module):
    """MLP: (N, dim) unit vectors, then (N, colour_bins**3) colour descriptors when ``colour_bins`` > 0 ->
    (N, colours) logits; ``layers`` hidden layers of ``hidden`` units."""

    def __init__(self, dim: int, colours: Sequence[str], hidden: int = 1024, layers: int = 2,
                 dropout: float = 0.2, colour_bins: int = 0) -> None:
        super().__init__()
        if dim <= 0 or len(colours) < 2 or hidden <= 0 or layers < 0 or colour_bins < 0:
            raise ValueError(f"bad colour head dim={dim} colours={len(colours)} hidden={hidden} layers={layers} "
                             f"colour_bins={colour_bins}")
        self.dim, self.colours, self.hidden, self.layers = dim, list(colours), hidden, layers
        self.colour_bins = colour_bins
        parts: list[nn.Module] = []
        width = dim + colour_bins**3 if colour_bins else dim
        for _ in range(layers):
            parts += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)]
            width = hidden
        parts.append(nn.Linear(width, len(self.colours)))
        self.mlp = nn.Sequential(*parts)
        self._lock = threading.Lock()

    @property
    def spec(self) -> dict[str, Any]:
        return {"dim": self.dim, "colours": list(self.colours), "hidden": self.hidden, "layers": self.layers,
                "colour_bins": self.colour_bins}

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """(N, dim [+ colour_bins**3]) inputs (``inputs``) -> (N, colours) logits."""
        return self.mlp(inputs)

    def inputs(self, vectors: np.ndarray, descriptors: np.ndarray | None = None) -> np.ndarray:
        """The MLP's (N, input) float32 rows: the vectors, then the colour descriptors when the head reads them.

        Raises:
            ValueError: vectors of another dimension, or descriptors missing / of another size for a head that reads
                them.
        """
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"the colour head reads {self.dim}-d vectors, got shape {vectors.shape}")
        if not self.colour_bins:
            return np.array(vectors, np.float32)  # a copy: mmap rows are read-only
        want = (len(vectors), self.colour_bins**3)
        if descriptors is None or descriptors.shape != want:
            raise ValueError(f"the colour head reads {self.colour_bins}-bin colour descriptors {want}, got "
                             f"{None if descriptors is None else descriptors.shape}")
        return np.concatenate([np.asarray(vectors, np.float32), np.asarray(descriptors, np.float32)], axis=1)

    def posterior(self, vectors: np.ndarray, descriptors: np.ndarray | None = None, batch: int = 8192
                  ) -> np.ndarray:
        """(N, colours) float32 softmax posteriors of items (eval mode, no gradients); ``descriptors`` are their
        pictures' colour descriptors, needed when ``colour_bins`` > 0."""
        x_all = self.inputs(vectors, descriptors)
        out = np.empty((len(x_all), len(self.colours)), np.float32)
        with self._lock, torch.inference_mode():
            self.eval()
            for s in range(0, len(x_all), batch):
                out[s:s + batch] = torch.softmax(self(torch.from_numpy(x_all[s:s + batch])), dim=1).numpy()
        return out


def colour_head_path(configured: str | os.PathLike, image_fingerprint: str) -> Path:
    """Where the colour head of an image model lives (a folder holds one per fingerprint)."""
    return keyed_path(configured, image_fingerprint)


def save_colour_head(path: str | os.PathLike, head: ColourHead, meta: Mapping[str, Any]) -> dict[str, Any]:
    """Write the head and its manifest crash-safely; ``meta`` needs ``image_fingerprint``. Returns the manifest."""
    return save_keyed(path, COLOUR_HEAD_FORMAT, {**meta, "head": head.spec}, head.state_dict())


def load_colour_head(path: str | os.PathLike, image_fingerprint: str | None) -> tuple[ColourHead, dict[str, Any]]:
    """The head (eval mode) and its meta.

    Raises:
        ColourHeadError: missing, unreadable, corrupt, or trained for another image model (the message says what to
            run).
    """
    payload, _ = load_keyed(path, image_fingerprint, "colour head", HINT, ColourHeadError)
    meta = payload["meta"]
    try:
        spec = meta["head"]
        head = ColourHead(int(spec["dim"]), list(spec["colours"]), int(spec["hidden"]), int(spec["layers"]),
                          colour_bins=int(spec.get("colour_bins", 0)))
        head.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ColourHeadError(f"colour head {str(path)!r} does not fit its own spec ({exc}); {HINT}") from None
    return head.eval(), meta
