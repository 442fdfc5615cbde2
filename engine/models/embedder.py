"""The Embedder: preprocessing + backbone (+ head) -> L2-normalised float32 vectors, with a fingerprint."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from engine.errors import EmbedderError
from engine.models.backbones import DEFAULT_BACKBONE, RANDOM, Backbone, build_backbone
from engine.models.checkpoints import load_checkpoint
from engine.models.heads import EmbeddingNet, ProjectionHead, TaxonomyClassifier
from engine.models.onnx_runtime import attach_onnx_runtime
from engine.models.preprocess import Preprocessor

log = logging.getLogger(__name__)
FINGERPRINT_VERSION = 1
FINGERPRINT_HEX_CHARS = 32


def resolve_device(device: str) -> torch.device:
    """"auto" -> cuda when torch sees a GPU, else cpu; other values are checked to exist.

    Raises:
        EmbedderError: For an unknown device string or a CUDA device that is not available.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise EmbedderError(f"unknown device {device!r} (model.device): use \"auto\", \"cpu\" or \"cuda\"") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise EmbedderError(f"device {device!r} requested (model.device) but torch sees no CUDA GPU; use \"auto\"")
    return resolved


def _tensor_bytes(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()


class Embedder:
    """Turns images into L2-normalised embeddings with one fixed model configuration.

    Build it with ``create_embedder``. Thread-safety: ``preprocess``/``preprocess_batch`` may run in many threads
    at once; call ``embed_tensors`` from one thread at a time.

    Attributes:
        name: Backbone name, e.g. "efficientnet_lite0" or "clip:ViT-B-32".
        dim: Embedding dimension (the head's out_dim when a checkpoint adds a head).
        input_size: Square input side in pixels.
        device: torch.device the module runs on.
        memory_format: torch memory format of the module and of batches fed to it (channels_last on the CPU).
        module: ``EmbeddingNet`` (``.backbone`` + ``.head``) mapping NCHW -> (N, dim) un-normalised features,
            on ``device``; training code may fine-tune it in place (the fingerprint follows the weights).
        preprocessor: The picklable ``Preprocessor`` (size, mean, std, letterbox fill).
        weights_source: Where the weights came from, e.g. "torchvision:IMAGENET1K_V1" or "checkpoint:/path".
        checkpoint: Checkpoint path the weights came from, or "".
        head_spec: The head's spec dict, or None.
        classifier_spec: The taxonomy classifier's spec plus its mixing ``weight`` (see ``EmbeddingNet``), or
            None when the embedding is the head's output alone.
        runtime: What runs the forward pass: "torch", or "onnxruntime"/"onnxruntime-int8" after ``use_forward``
            (``engine.models.onnx_runtime``). The vectors are the same, so the fingerprint does not depend on it.
    """

    def __init__(self, backbone: Backbone, module: EmbeddingNet, dim: int, preprocessor: Preprocessor,
                 device: torch.device, weights_source: str, checkpoint: str = "",
                 head_spec: dict[str, Any] | None = None, classifier_spec: dict[str, Any] | None = None) -> None:
        self.name = backbone.name
        self.dim = dim
        self.input_size = preprocessor.size
        self.preprocessor = preprocessor
        self.device = device
        # NHWC is ~1.5x faster for these convnets on the CPU (measured, same outputs to 1e-5); GPUs keep NCHW.
        self.memory_format = torch.channels_last if device.type == "cpu" else torch.contiguous_format
        self.module = module.to(device, memory_format=self.memory_format).eval()
        self.weights_source = weights_source
        self.checkpoint = checkpoint
        self.head_spec = head_spec
        self.classifier_spec = classifier_spec
        self._fingerprint_cache: tuple[tuple, str] | None = None
        self._forward: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def runtime(self) -> str:
        return getattr(self._forward, "runtime", "torch") if self._forward is not None else "torch"

    def feature_map(self, index: int = 0) -> np.ndarray | None:
        """(C, H, W) last spatial feature map of image ``index`` of the last batch the runtime (not torch) ran, when
        its graph outputs one (ONNX Runtime does); None otherwise. Read it on the thread that ran the batch."""
        fmap = getattr(self._forward, "feature_map", None) if self._forward is not None else None
        if fmap is None or fmap.ndim != 4 or index >= len(fmap):
            return None
        return np.asarray(fmap[index], dtype=np.float32)

    def use_forward(self, forward: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
        """Run eval-mode forward passes through ``forward`` (a CPU batch -> un-normalised features callable with a
        ``fingerprint`` attribute, e.g. ``OnnxForward``) instead of torch; None = torch. ``forward`` is bypassed
        while the module trains or once the module's fingerprint differs from the one it was built for."""
        self._forward = forward

    def __repr__(self) -> str:
        return (f"Embedder(name={self.name!r}, dim={self.dim}, input_size={self.input_size}, device={self.device}, "
                f"runtime={self.runtime!r})")

    @property
    def fingerprint(self) -> str:
        """Hex digest (32 chars) identifying what the embeddings depend on.

        sha256 over: the backbone name, the preprocessing parameters (size, mean, std, letterbox fill, resize
        method), the head spec, the taxonomy classifier's spec and mixing weight (when there is
        one), and every state-dict tensor's name, dtype, shape and bytes, in sorted key order.
        The same config gives the same value in every process and on every device. It is cached and recomputed
        when any tensor changes (tracked through torch's in-place version counters), so fine-tuning
        ``module`` in place changes it.
        """
        state = self.module.state_dict(keep_vars=True)
        key = tuple((k, t._version, t.data_ptr()) for k, t in state.items())
        if self._fingerprint_cache is not None and self._fingerprint_cache[0] == key:
            return self._fingerprint_cache[1]
        digest = hashlib.sha256()
        header = {"version": FINGERPRINT_VERSION, "backbone": self.name, "preprocess": self.preprocessor.params(),
                  "head": self.head_spec}
        if self.classifier_spec is not None:
            header["classifier"] = self.classifier_spec
        digest.update(json.dumps(header, sort_keys=True).encode())
        for name in sorted(state):
            tensor = state[name]
            digest.update(f"\n{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
            digest.update(_tensor_bytes(tensor))
        value = digest.hexdigest()[:FINGERPRINT_HEX_CHARS]
        self._fingerprint_cache = (key, value)
        return value

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        """PIL image of any mode -> (3, input_size, input_size) float32, letterboxed on white and normalized."""
        return self.preprocessor(img)

    def preprocess_batch(self, imgs: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images -> (N, 3, input_size, input_size) float32; N may be 0."""
        return self.preprocessor.batch(imgs)

    def embed_tensors(self, batch: torch.Tensor) -> np.ndarray:
        """Run the model on a preprocessed batch.

        Moves the batch to ``device``, runs in eval mode without autograd (restoring train mode afterwards if
        the module was training), and L2-normalises each row.

        Args:
            batch: (N, 3, H, W) float tensor from ``preprocess_batch``.

        Returns:
            (N, dim) float32 C-contiguous array with unit-norm rows; (0, dim) when N == 0.
        """
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected an (N, 3, H, W) batch, got shape {tuple(batch.shape)}")
        if batch.shape[0] == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        forward = self._forward
        if forward is not None and not self.module.training and forward.fingerprint == self.fingerprint:
            features = forward(batch.to(dtype=torch.float32))
            return np.ascontiguousarray(F.normalize(features.float(), dim=1).numpy(), dtype=np.float32)
        was_training = self.module.training
        self.module.eval()
        try:
            with torch.inference_mode():
                inputs = batch.to(self.device, dtype=torch.float32, non_blocking=True,
                                  memory_format=self.memory_format)
                features = self.module(inputs)
                vectors = F.normalize(features.float(), dim=1).cpu()
        finally:
            if was_training:
                self.module.train()
        return np.ascontiguousarray(vectors.numpy(), dtype=np.float32)

    def embed_images(self, imgs: Sequence[Image.Image], batch_size: int = 64) -> np.ndarray:
        """Preprocess and embed images in batches of ``batch_size``.

        Returns:
            (len(imgs), dim) float32 array with unit-norm rows.
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        parts = [self.embed_tensors(self.preprocess_batch(imgs[i:i + batch_size]))
                 for i in range(0, len(imgs), batch_size)]
        return np.concatenate(parts) if parts else np.empty((0, self.dim), dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for index manifests: name, weights, checkpoint, input_size, dim, fingerprint,
        mean, std, letterbox_fill, head, preprocess, and classifier (level, class count, weight) when there is one."""
        params = self.preprocessor.params()
        out = {"name": self.name, "weights": self.weights_source, "checkpoint": self.checkpoint,
               "input_size": self.input_size, "dim": self.dim, "fingerprint": self.fingerprint,
               "mean": params["mean"], "std": params["std"], "letterbox_fill": params["fill"],
               "head": self.head_spec, "preprocess": params}
        if self.classifier_spec is not None:
            spec = self.classifier_spec
            out["classifier"] = {"level": spec["level"], "classes": len(spec["classes"]), "weight": spec["weight"]}
        return out


def _classifier_from_meta(checkpoint: str, meta: dict[str, Any], weight: float | None) -> \
        tuple[TaxonomyClassifier | None, dict[str, Any] | None]:
    spec = meta.get("classifier")
    if not spec:
        return None, None
    try:
        classifier = TaxonomyClassifier.from_spec(spec)
        w = float(spec["weight"]) if weight is None else float(weight)
    except (ValueError, KeyError, TypeError) as exc:
        raise EmbedderError(f"checkpoint {checkpoint!r} has a bad classifier spec (model.checkpoint): {exc}") from exc
    if not 0.0 <= w <= 1.0:
        raise EmbedderError(f"taxonomy weight must be in [0, 1] (model.taxonomy_weight), got {w}")
    return classifier, {**classifier.spec, "weight": w}


def _from_checkpoint(name: str, checkpoint: str, input_size: int, taxonomy_weight: float | None = None) -> \
        tuple[Backbone, EmbeddingNet, dict | None, str, dict | None]:
    ckpt = load_checkpoint(checkpoint)
    meta = ckpt["meta"]
    backbone_name = meta["backbone"]
    if name and name != backbone_name:
        log.warning("model.backbone is %r but checkpoint %s was trained on %r; using %r", name, checkpoint,
                    backbone_name, backbone_name)
    # A full checkpoint holds the backbone weights too, so the backbone is built untrained rather than downloading
    # anything. A partial one (meta "base_weights", written by `manage.py train`) stores only what fine-tuning
    # changed (head + unfrozen tail); the rest comes from the base weights it names, checked by their source.
    partial = "base_weights" in meta
    backbone = build_backbone(backbone_name, meta["base_weights"] if partial else RANDOM, input_size)
    expected_source = (meta.get("base") or {}).get("source")
    if partial and expected_source and expected_source != backbone.weights_source:
        raise EmbedderError(f"checkpoint {checkpoint!r} was fine-tuned from {expected_source} but the base weights "
                            f"here are {backbone.weights_source} (model.checkpoint)")
    head_spec = meta.get("head")
    try:
        head = ProjectionHead.from_spec(head_spec) if head_spec else None
    except (ValueError, KeyError, TypeError) as exc:
        raise EmbedderError(f"checkpoint {checkpoint!r} has a bad head spec (model.checkpoint): {exc}") from exc
    classifier, classifier_spec = _classifier_from_meta(checkpoint, meta, taxonomy_weight)
    net = EmbeddingNet(backbone.module, head, classifier, classifier_spec["weight"] if classifier_spec else 0.0)
    try:
        result = net.load_state_dict(ckpt["state_dict"], strict=not partial)
    except RuntimeError as exc:
        raise EmbedderError(f"checkpoint {checkpoint!r} does not fit {backbone_name} + head {head_spec} "
                            f"(model.checkpoint): {exc}") from exc
    if partial:
        # Only base backbone weights may be absent; the head must be complete.
        missing = [k for k in result.missing_keys if not k.startswith("backbone.")]
        if missing or result.unexpected_keys:
            raise EmbedderError(f"checkpoint {checkpoint!r} does not fit {backbone_name} + head {head_spec} "
                                f"(model.checkpoint): missing {missing[:8]}, unexpected {result.unexpected_keys[:8]}")
    if "mean" in meta and "std" in meta:
        backbone.mean, backbone.std = tuple(meta["mean"]), tuple(meta["std"])
    return (backbone, net, (head.spec if head else None), f"checkpoint:{checkpoint}#sha256={ckpt['sha256'][:16]}",
            classifier_spec)


def create_embedder(name: str = DEFAULT_BACKBONE, weights: str = "", checkpoint: str = "", input_size: int = 224,
                    device: str = "auto", taxonomy_weight: float | None = None, runtime: str = "torch",
                    onnx_dir: str = "", threads: int = 0) -> Embedder:
    """Build an Embedder from a model recipe (the ``[model]`` section of config.toml).

    Args:
        name: Backbone: "efficientnet_lite0" (default), "resnet18", "resnet50" or "clip:<open_clip model>".
        weights: "" = the backbone's default (packaged ImageNet weights for efficientnet_lite0, torchvision
            IMAGENET1K_V1 for resnet, open_clip "openai" for clip), a local file path, a hub tag, or "random"
            (seeded, reproducible random init).
        checkpoint: "" for none, or a file from ``save_checkpoint``; then the backbone named in its meta is
            built (``name`` and ``weights`` are not used for the weights) with its head and fine-tuned weights.
        input_size: Square input side in pixels (the argument wins over the checkpoint's recorded size).
        device: "auto", "cpu", "cuda" or "cuda:N".
        taxonomy_weight: For a checkpoint with a taxonomy classifier: how much of the embedding is its posterior,
            in [0, 1] (``EmbeddingNet``); None = the weight recorded in the checkpoint. Ignored without one.
        runtime: "torch" (default), "onnxruntime", "onnxruntime-int8" or "auto" (ONNX Runtime on the CPU when it
            is installed, else torch); a runtime that cannot serve the model falls back to torch with one warning.
        onnx_dir: Folder of the cached ONNX graphs (needed unless the runtime resolves to torch).
        threads: ONNX Runtime intra-op threads; 0 = all cores.

    Returns:
        The Embedder, its module in eval mode on the resolved device.

    Raises:
        EmbedderError: Unknown backbone, weights that cannot be had (e.g. no hub reachable), bad checkpoint,
            unavailable device. Messages name the config key to change.
    """
    if not isinstance(input_size, int) or input_size < 32:
        raise EmbedderError(f"input_size must be an integer >= 32 (model.input_size), got {input_size!r}")
    resolved_device = resolve_device(device)
    if checkpoint:
        backbone, net, head_spec, source, classifier_spec = _from_checkpoint(name, checkpoint, input_size,
                                                                             taxonomy_weight)
        dim = head_spec["out_dim"] if head_spec else backbone.dim
        if classifier_spec:
            dim += len(classifier_spec["classes"])
    else:
        backbone = build_backbone(name, weights, input_size)
        net, head_spec, source, dim = EmbeddingNet(backbone.module), None, backbone.weights_source, backbone.dim
        classifier_spec = None
    preprocessor = Preprocessor(input_size, tuple(backbone.mean), tuple(backbone.std))
    embedder = Embedder(backbone, net, dim, preprocessor, resolved_device, source, checkpoint, head_spec,
                        classifier_spec)
    if runtime != "torch":
        if not onnx_dir:
            raise EmbedderError(f"model.runtime {runtime!r} needs a folder for its cached graphs (model.onnx_dir)")
        try:
            attach_onnx_runtime(embedder, runtime, onnx_dir, threads)
        except ValueError as exc:
            raise EmbedderError(str(exc)) from exc
    return embedder
