"""The colour head: which of the catalog's base colours an item is, read from its served vector alone.

The served embedding carries colour only weakly (ImageNet features are trained to be fairly colour invariant), so a
word query's vector ranks "navy blue" items poorly by cosine alone. A small MLP trained on the served vectors of
train products (`manage.py train-colour-head`) reads the colour back out; search adds the posterior of the colour a
query names to the cosine (indexer/search/composed.py). It runs on vectors the index already holds, so nothing is
re-embedded and no index changes.

Checkpoint: a keyed file (engine/models/keyed_files.py), one per image model fingerprint, meta with the colour names
in logit order and the shape of the MLP.

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
    """MLP: (N, dim) unit vectors -> (N, colours) logits; ``layers`` hidden layers of ``hidden`` units."""

    def __init__(self, dim: int, colours: Sequence[str], hidden: int = 1024, layers: int = 2,
                 dropout: float = 0.2) -> None:
        super().__init__()
        if dim <= 0 or len(colours) < 2 or hidden <= 0 or layers < 0:
            raise ValueError(f"bad colour head dim={dim} colours={len(colours)} hidden={hidden} layers={layers}")
        self.dim, self.colours, self.hidden, self.layers = dim, list(colours), hidden, layers
        parts: list[nn.Module] = []
        width = dim
        for _ in range(layers):
            parts += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)]
            width = hidden
        parts.append(nn.Linear(width, len(self.colours)))
        self.mlp = nn.Sequential(*parts)
        self._lock = threading.Lock()

    @property
    def spec(self) -> dict[str, Any]:
        return {"dim": self.dim, "colours": list(self.colours), "hidden": self.hidden, "layers": self.layers}

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.mlp(vectors)

    def posterior(self, vectors: np.ndarray, batch: int = 8192) -> np.ndarray:
        """(N, colours) float32 softmax posteriors of unit vectors (eval mode, no gradients)."""
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"the colour head reads {self.dim}-d vectors, got shape {vectors.shape}")
        out = np.empty((len(vectors), len(self.colours)), np.float32)
        with self._lock, torch.inference_mode():
            self.eval()
            for s in range(0, len(vectors), batch):
                x = torch.from_numpy(np.array(vectors[s:s + batch], np.float32))  # a copy: mmap rows are read-only
                out[s:s + batch] = torch.softmax(self(x), dim=1).numpy()
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
        head = ColourHead(int(spec["dim"]), list(spec["colours"]), int(spec["hidden"]), int(spec["layers"]))
        head.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ColourHeadError(f"colour head {str(path)!r} does not fit its own spec ({exc}); {HINT}") from None
    return head.eval(), meta
