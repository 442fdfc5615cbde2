"""Projection heads put on top of a backbone's pooled features, and the backbone+head module."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ProjectionHead(nn.Module):
    """Maps backbone features to the embedding space: one Linear, or Linear-ReLU-Linear when ``hidden > 0``.

    Args:
        in_dim: Backbone feature dimension.
        out_dim: Embedding dimension.
        hidden: Width of the hidden layer; 0 means a single linear layer.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 0) -> None:
        super().__init__()
        if in_dim <= 0 or out_dim <= 0 or hidden < 0:
            raise ValueError(f"bad head dimensions in_dim={in_dim} out_dim={out_dim} hidden={hidden}")
        self.in_dim, self.out_dim, self.hidden = in_dim, out_dim, hidden
        if hidden:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))
        else:
            self.net = nn.Sequential(nn.Linear(in_dim, out_dim))

    @property
    def spec(self) -> dict[str, Any]:
        """JSON-able description, the ``head`` entry of checkpoint meta: type, in_dim, out_dim, hidden."""
        return {"type": "mlp" if self.hidden else "linear", "in_dim": self.in_dim, "out_dim": self.out_dim,
                "hidden": self.hidden}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> ProjectionHead:
        """Build a head from its ``spec`` dict (as stored in checkpoint meta).

        Raises:
            ValueError: When the spec is inconsistent (unknown type, mlp without hidden width, ...).
        """
        kind = spec.get("type")
        hidden = int(spec.get("hidden", 0))
        if kind not in ("linear", "mlp") or (kind == "mlp") != (hidden > 0):
            raise ValueError(f"unsupported head spec {spec!r}: type must be 'linear' (hidden 0) or 'mlp' (hidden > 0)")
        return cls(int(spec["in_dim"]), int(spec["out_dim"]), hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_dim) features -> (N, out_dim) embeddings (not normalized)."""
        return self.net(x)


class EmbeddingNet(nn.Module):
    """Backbone (NCHW -> (N, feature_dim)) followed by an optional head; outputs are not normalized.

    State-dict keys are ``backbone.*`` and ``head.*``; this is the module whose state a checkpoint stores.
    A training script makes one with ``EmbeddingNet(embedder.module.backbone, ProjectionHead(...))``.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head if head is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized NCHW image batch -> (N, dim) features (not L2-normalised)."""
        return self.head(self.backbone(x))
