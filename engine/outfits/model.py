"""Outfit compatibility in the spirit of type-aware embeddings (Vasileva et al., ECCV 2018), and a slot classifier.

Both sit on the served image embedding (the vectors already stored for every catalog item), so training and
serving never re-embed images:

* a *general* embedding ``g(x)`` (a small MLP on the image vector), shared by all slots;
* one non-negative mask per unordered slot pair (u, v): items are compared in the subspace
  ``normalize(g(x) * relu(m_uv))``, so "what makes shoes go with a top" is learned apart from
  "what makes a bag go with shoes";
* compatibility of two items = minus the squared distance there (in [-4, 0]); an outfit's score is the mean
  over its item pairs;
* a slot classifier (MLP on the image vector) that gives an uploaded photo's slot, with a last "none" class for
  items that are not part of outfits.

The checkpoint is one small torch file plus a JSON manifest beside it (written crash-safely), recording the
slots, the embedder fingerprint and dimension the model was trained on, training data and metrics.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.files import file_sha256, write_atomically
from engine.models.checkpoints import manifest_path

OUTFIT_FORMAT = 1
NONE_SLOT = "none"


class OutfitModelError(ValueError):
    """An outfit checkpoint that cannot be used (missing, corrupt, or trained for another model or slots)."""


def _mlp(in_dim: int, hidden: int, out_dim: int, dropout: float = 0.0) -> nn.Sequential:
    # Dropout (training only) on the input and hidden layer: outfits reuse items, and without it the MLP
    # memorises training items instead of learning what makes items compatible.
    if hidden:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU(inplace=True),
                             nn.Dropout(dropout), nn.Linear(hidden, out_dim))
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, out_dim))


def pair_table(n_slots: int) -> torch.Tensor:
    """(n, n) long tensor: the id of the unordered slot pair {u, v} (u == v included), symmetric."""
    table = torch.zeros(n_slots, n_slots, dtype=torch.long)
    k = 0
    for u in range(n_slots):
        for v in range(u, n_slots):
            table[u, v] = table[v, u] = k
            k += 1
    return table


class OutfitModel(nn.Module):
    """Type-aware compatibility embedding plus slot classifier over image vectors.

    Args:
        in_dim: Dimension of the image vectors (the served embedder's ``dim``).
        slots: Slot names; a slot's position is its id.
        embed_dim: Dimension of the general embedding.
        hidden: Hidden width of the general-embedding MLP (0 = linear).
        slot_hidden: Hidden width of the slot classifier (0 = linear).
        dropout: Dropout rate inside the general-embedding MLP while training.
        colour_bins: Bins per channel of the colour descriptor (engine/colour.py) appended to each image vector
            (0 = none); ``in_dim`` includes it.
    """

    def __init__(self, in_dim: int, slots: Sequence[str], embed_dim: int = 64, hidden: int = 256,
                 slot_hidden: int = 256, dropout: float = 0.0, colour_bins: int = 0) -> None:
        super().__init__()
        if in_dim <= 0 or embed_dim <= 0 or len(slots) < 2 or len(set(slots)) != len(slots):
            raise ValueError(f"bad outfit model shape in_dim={in_dim} embed_dim={embed_dim} slots={list(slots)}")
        self.in_dim, self.embed_dim, self.hidden, self.slot_hidden = in_dim, embed_dim, hidden, slot_hidden
        self.dropout = float(dropout)
        self.colour_bins = int(colour_bins)
        if self.colour_dim >= in_dim:
            raise ValueError(f"in_dim {in_dim} leaves no room for an image vector beside {self.colour_dim} colour dims")
        self.slots = tuple(slots)
        self.general = _mlp(in_dim, hidden, embed_dim, dropout)
        self.register_buffer("pairs", pair_table(len(slots)), persistent=False)
        n_pairs = len(slots) * (len(slots) + 1) // 2
        # Vasileva et al. initialise masks around 0.9 with spread, so pairs start from slightly different subspaces.
        self.masks = nn.Parameter(torch.empty(n_pairs, embed_dim).normal_(0.9, 0.7))
        self.slot_head = _mlp(in_dim, slot_hidden, len(slots) + 1)

    @property
    def colour_dim(self) -> int:
        """Dimensions of the colour descriptor at the end of each input (0 without one)."""
        return self.colour_bins**3 if self.colour_bins else 0

    @property
    def image_dim(self) -> int:
        """Dimension of the image vector part of the input (the served embedder's ``dim``)."""
        return self.in_dim - self.colour_dim

    @property
    def spec(self) -> dict[str, Any]:
        """JSON-able shape: in_dim, embed_dim, hidden, slot_hidden, dropout, colour_bins, slots."""
        return {"in_dim": self.in_dim, "embed_dim": self.embed_dim, "hidden": self.hidden,
                "slot_hidden": self.slot_hidden, "dropout": self.dropout, "colour_bins": self.colour_bins,
                "slots": list(self.slots)}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> OutfitModel:
        return cls(int(spec["in_dim"]), list(spec["slots"]), int(spec["embed_dim"]), int(spec["hidden"]),
                   int(spec["slot_hidden"]), float(spec.get("dropout", 0.0)), int(spec.get("colour_bins", 0)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_dim) image vectors -> (N, embed_dim) general embeddings."""
        return self.general(x)

    def pair_masks(self, slot_a: torch.Tensor, slot_b: torch.Tensor) -> torch.Tensor:
        """(N,) slot ids of both sides -> (N, embed_dim) non-negative masks of their pairs."""
        return F.relu(self.masks[self.pairs[slot_a, slot_b]])

    def distance(self, ga: torch.Tensor, slot_a: torch.Tensor, gb: torch.Tensor, slot_b: torch.Tensor) -> torch.Tensor:
        """Squared distance in the pair's subspace, row by row; in [0, 4] (smaller = more compatible)."""
        m = self.pair_masks(slot_a, slot_b)
        a = F.normalize(ga * m, dim=-1, eps=1e-8)
        b = F.normalize(gb * m, dim=-1, eps=1e-8)
        return (a - b).pow(2).sum(-1)

    def slot_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_dim) -> (N, n_slots + 1) logits; the last class is "none" (not an outfit item)."""
        return self.slot_head(x)

    # ---- inference helpers (numpy in, numpy out) -----------------------------------------------------------

    @torch.no_grad()
    def general_embeddings(self, vectors: np.ndarray, batch: int = 8192) -> np.ndarray:
        """General embeddings of many image vectors, float32 (N, embed_dim)."""
        self.eval()
        out = [self.embed(torch.from_numpy(np.array(vectors[i:i + batch], np.float32))).numpy()
               for i in range(0, len(vectors), batch)]
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim), np.float32)

    @torch.no_grad()
    def slot_probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """(N, n_slots + 1) softmax probabilities of the slot classifier."""
        self.eval()
        logits = self.slot_logits(torch.from_numpy(np.array(vectors, np.float32)))
        return torch.softmax(logits, -1).numpy()

    def projected(self, general: np.ndarray, slot_a: int, slot_b: int) -> np.ndarray:
        """Unit rows of ``general * relu(mask(slot_a, slot_b))``: dot products there are pair compatibilities."""
        with torch.no_grad():
            mask = F.relu(self.masks[self.pairs[slot_a, slot_b]]).numpy()
        p = general * mask
        return p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-8)

    def compatibility(self, general_a: np.ndarray, slot_a: int, general_b: np.ndarray, slot_b: int) -> np.ndarray:
        """Compatibility of one item (``general_a`` (d,)) of slot_a with many items (``general_b`` (N, d)) of slot_b.

        Returns:
            (N,) scores in [-4, 0]: minus the squared distance in the pair's subspace (= 2 * cosine - 2).
        """
        qa = self.projected(np.atleast_2d(general_a), slot_a, slot_b)[0]
        cand = self.projected(general_b, slot_a, slot_b)
        return 2.0 * (cand @ qa) - 2.0


def outfit_compatibility(model: OutfitModel, general: np.ndarray, slots: Sequence[int]) -> float:
    """Mean pairwise compatibility of an outfit's items (their general embeddings and slot ids)."""
    scores = [float(model.compatibility(general[i], slots[i], general[j:j + 1], slots[j])[0])
              for i in range(len(slots)) for j in range(i + 1, len(slots))]
    return float(np.mean(scores)) if scores else 0.0


def save_outfit_model(path: str | os.PathLike, model: OutfitModel, meta: Mapping[str, Any]) -> dict[str, Any]:
    """Write the outfit checkpoint and its ``<path>.json`` manifest, each crash-safely (checkpoint first).

    Args:
        path: Destination file.
        model: The trained model.
        meta: JSON-able record: at least ``fingerprint`` (of the image vectors' embedder); also the training
            data, settings and metrics.

    Returns:
        The manifest written.

    Raises:
        ValueError: ``meta`` lacks a fingerprint or is not JSON-able.
    """
    if not isinstance(meta.get("fingerprint"), str) or not meta["fingerprint"]:
        raise ValueError("outfit model meta needs the 'fingerprint' of the embedder its vectors came from")
    clean = json.loads(json.dumps({**meta, "model": model.spec}))
    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    payload = {"format": OUTFIT_FORMAT, "meta": clean, "state_dict": state}
    write_atomically(path, lambda f: torch.save(payload, f))
    manifest = {"format": OUTFIT_FORMAT, "file": path.name, "bytes": path.stat().st_size, "sha256": file_sha256(path),
                "meta": clean}
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    write_atomically(manifest_path(path), lambda f: f.write(text.encode()))
    return manifest


def load_outfit_model(path: str | os.PathLike) -> tuple[OutfitModel, dict[str, Any]]:
    """Read an outfit checkpoint (verified against its manifest's sha256 when the manifest exists).

    Returns:
        (model in eval mode on the CPU, meta).

    Raises:
        OutfitModelError: Missing file, checksum mismatch, or not an outfit checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise OutfitModelError(f"outfit model not found: {str(path)!r} (outfit.checkpoint); "
                               "build it with `python manage.py train-outfits`")
    mf = manifest_path(path)
    if mf.is_file():
        try:
            expected = json.loads(mf.read_text())["sha256"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise OutfitModelError(f"unreadable outfit model manifest {str(mf)!r}: {exc}") from None
        if expected != file_sha256(path):
            raise OutfitModelError(f"outfit model {str(path)!r} does not match its manifest's sha256 "
                                   "(interrupted save or edited file?): run `python manage.py train-outfits`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != OUTFIT_FORMAT:
            raise ValueError(f"not an outfit model of format {OUTFIT_FORMAT}")
        meta = payload["meta"]
        model = OutfitModel.from_spec(meta["model"])
        model.load_state_dict(payload["state_dict"])
    except (OSError, RuntimeError, ValueError, KeyError, TypeError, EOFError) as exc:
        raise OutfitModelError(f"cannot read outfit model {str(path)!r}: {exc}") from None
    return model.eval(), meta


def model_pair_scorer(model: OutfitModel, general: np.ndarray, slots: np.ndarray):
    """A vectorised pair scorer (see engine.outfits.metrics) over rows of ``general`` with slot ids ``slots``."""
    with torch.no_grad():
        masks = F.relu(model.masks).numpy()
    pairs = model.pairs.numpy()
    slots = np.asarray(slots, np.int64)

    def score(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        m = masks[pairs[slots[a], slots[b]]]
        x = general[a] * m
        y = general[b] * m
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)
        y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-8)
        return -((x - y) ** 2).sum(1)

    return score


def cosine_pair_scorer(vectors: np.ndarray):
    """The visual-similarity baseline: compatibility = cosine similarity of the image vectors."""
    v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-8)

    def score(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (v[a] * v[b]).sum(1)

    return score
