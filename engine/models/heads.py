"""Projection heads put on top of a backbone's pooled features, and the backbone+head module."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
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


class TaxonomyClassifier(nn.Module):
    """Classifies backbone features into the classes of one taxonomy level (e.g. article_type).

    Inside an ``EmbeddingNet`` its posterior becomes part of the embedding (see ``EmbeddingNet``), so items the
    model believes to be of the same type sit closer together. The class names travel in the spec, so a prediction
    can be read back as a label.

    Args:
        in_dim: Backbone feature dimension.
        classes: Class names, in logit order.
        hidden: Width of a hidden layer (Linear-GELU-Linear); 0 = a single linear layer.
        level: Taxonomy column the classes come from.
    """

    def __init__(self, in_dim: int, classes: Sequence[str], hidden: int = 0, level: str = "article_type") -> None:
        super().__init__()
        if in_dim <= 0 or len(classes) < 2 or hidden < 0:
            raise ValueError(f"bad classifier in_dim={in_dim} classes={len(classes)} hidden={hidden}: needs "
                             "in_dim > 0, at least 2 classes, hidden >= 0")
        self.in_dim, self.classes, self.hidden, self.level = in_dim, list(classes), hidden, level
        n = len(self.classes)
        if hidden:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, n))
        else:
            self.net = nn.Sequential(nn.Linear(in_dim, n))

    @property
    def spec(self) -> dict[str, Any]:
        """JSON-able description (checkpoint meta ``classifier``, without the mixing weight)."""
        return {"level": self.level, "in_dim": self.in_dim, "hidden": self.hidden, "classes": list(self.classes)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> TaxonomyClassifier:
        """Build a classifier from its ``spec`` dict.

        Raises:
            ValueError: When the spec is incomplete or inconsistent.
        """
        classes = spec.get("classes")
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise ValueError(f"classifier spec needs a list of class names, got {classes!r}")
        return cls(int(spec["in_dim"]), classes, int(spec.get("hidden", 0)), str(spec.get("level", "article_type")))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, in_dim) backbone features -> (N, classes) logits."""
        return self.net(features)


class EmbeddingNet(nn.Module):
    """Backbone (NCHW -> (N, feature_dim)) followed by an optional head, and optionally a taxonomy classifier.

    Without a classifier the output is the head's (not normalized). With one, the output is
    ``[sqrt(1 - w) * e, sqrt(w) * sqrt(p)]`` where ``e`` is the L2-normalised head output, ``p`` the classifier's
    softmax posterior and ``w = taxonomy_weight`` in [0, 1]: a unit vector whose cosine similarity with another is
    ``(1 - w) * cos(e, e') + w * sum(sqrt(p * p'))`` (the Bhattacharyya coefficient of the two posteriors). So one
    inner-product index ranks by appearance and by predicted type at once; w = 0 is the appearance embedding alone.

    State-dict keys are ``backbone.*``, ``head.*`` and ``classifier.*``; this is the module whose state a checkpoint
    stores. A training script makes one with ``EmbeddingNet(embedder.module.backbone, ProjectionHead(...))``.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module | None = None,
                 classifier: TaxonomyClassifier | None = None, taxonomy_weight: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= taxonomy_weight <= 1.0:
            raise ValueError(f"taxonomy_weight must be in [0, 1], got {taxonomy_weight}")
        self.backbone = backbone
        self.head = head if head is not None else nn.Identity()
        self.classifier = classifier
        self.taxonomy_weight = float(taxonomy_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized NCHW image batch -> (N, dim) features (not L2-normalised without a classifier)."""
        return self.from_features(self.backbone(x))

    def from_features(self, features: torch.Tensor) -> torch.Tensor:
        """The output for the backbone's pooled features (N, feature_dim): what ``forward`` does after the backbone
        (training on cached backbone activations runs only this part and the backbone's tail)."""
        emb = self.head(features)
        if self.classifier is None:
            return emb
        w = self.taxonomy_weight
        posterior = torch.softmax(self.classifier(features).float(), dim=1)
        return torch.cat([math.sqrt(1.0 - w) * F.normalize(emb.float(), dim=1), math.sqrt(w) * posterior.sqrt()],
                         dim=1)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized NCHW image batch -> (N, classes) posterior of the taxonomy classifier.

        Raises:
            ValueError: When the net has no classifier.
        """
        if self.classifier is None:
            raise ValueError("this model has no taxonomy classifier")
        return torch.softmax(self.classifier(self.backbone(x)).float(), dim=1)
