"""Split a backbone into a frozen trunk and a trainable tail, so training can run on cached trunk activations.

On a CPU the trunk (stem and most blocks) is what costs; computing its output once per training view and caching
it makes every later epoch cheap. The tail (the last MBConv blocks, the 1x1 head convolution and the pooling) is
small enough to fine-tune on those cached activations: that is the "unfreeze" stage of the schedule.

``unfreeze_blocks`` counts trainable stages from the end of EfficientNet-Lite0:
0 = nothing (the tap is the pooled 1280-d feature), 1 = the head convolution (+ its BatchNorm), 2 = that plus the
last MBConv block, n = that plus the last n - 1 MBConv blocks; 17 = every MBConv block (only the stem stays frozen)
and 18 = the whole backbone, stem included: the trunk is then the identity and the "activations" cached are the
preprocessed images themselves (a GPU recipe: nothing is saved by caching, but the views are made only once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.efficientnet_lite import EfficientNetLite0


@dataclass
class BackboneSplit:
    """A backbone cut in two.

    Attributes:
        trunk: Image batch (N, 3, S, S) -> tap activations; frozen, run once per view when caching.
        tail: nn.Module mapping tap activations -> (N, feature_dim) pooled features (Identity when nothing is
            unfrozen). Its parameters are the backbone's own (shared objects), so training it updates the backbone.
        tail_prefixes: State-dict key prefixes, relative to the backbone module, of the tail's parameters and
            buffers: what a fine-tuned checkpoint must store besides the head.
        unfreeze_blocks: As passed to ``split_backbone``.
    """

    trunk: Callable[[torch.Tensor], torch.Tensor]
    tail: nn.Module
    tail_prefixes: tuple[str, ...]
    unfreeze_blocks: int


class _LiteTail(nn.Module):
    """The last MBConv blocks, the head convolution and global average pooling of an EfficientNetLite0 (with
    ``stem``: the stem convolution first, i.e. the whole network up to the pooled feature)."""

    def __init__(self, net: EfficientNetLite0, first_block: int, stem: bool = False) -> None:
        super().__init__()
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6()) if stem else nn.Identity()
        self.blocks = nn.ModuleList(list(net._blocks)[first_block:])
        self.conv_head = net._conv_head
        self.bn = net._bn1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return F.relu6(self.bn(self.conv_head(x))).mean(dim=(2, 3))


def split_backbone(module: nn.Module, unfreeze_blocks: int = 0) -> BackboneSplit:
    """Cut ``module`` (a backbone from ``engine.models.backbones``) into trunk and tail.

    Args:
        module: The backbone's feature module (NCHW -> pooled features).
        unfreeze_blocks: How much of the end to make trainable (see the module docstring). Any backbone supports 0;
            EfficientNet-Lite0 supports 0..18.

    Returns:
        The split; the module itself is not modified.

    Raises:
        ValueError: ``unfreeze_blocks`` > 0 for a backbone other than EfficientNet-Lite0, or out of range.
    """
    if unfreeze_blocks == 0:
        return BackboneSplit(trunk=module, tail=nn.Identity(), tail_prefixes=(), unfreeze_blocks=0)
    if not isinstance(module, EfficientNetLite0):
        raise ValueError("unfreezing backbone blocks is implemented for efficientnet_lite0 only; use "
                         "--unfreeze-blocks 0 (train the projection head on frozen features)")
    n_blocks = len(module._blocks)
    if not 1 <= unfreeze_blocks <= n_blocks + 2:
        raise ValueError(f"unfreeze_blocks must be in 0..{n_blocks + 2} for efficientnet_lite0, got {unfreeze_blocks}")
    if unfreeze_blocks == n_blocks + 2:
        prefixes = ("_conv_stem.", "_bn0.") + tuple(f"_blocks.{i}." for i in range(n_blocks)) + ("_conv_head.",
                                                                                                  "_bn1.")
        return BackboneSplit(trunk=nn.Identity(), tail=_LiteTail(module, 0, stem=True), tail_prefixes=prefixes,
                             unfreeze_blocks=unfreeze_blocks)
    first = n_blocks - (unfreeze_blocks - 1)

    def trunk(x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(module._bn0(module._conv_stem(x)))
        for block in list(module._blocks)[:first]:
            x = block(x)
        return x

    prefixes = tuple(f"_blocks.{i}." for i in range(first, n_blocks)) + ("_conv_head.", "_bn1.")
    return BackboneSplit(trunk=trunk, tail=_LiteTail(module, first), tail_prefixes=prefixes,
                         unfreeze_blocks=unfreeze_blocks)


def freeze_batchnorm(module: nn.Module) -> None:
    """Put every BatchNorm of ``module`` in eval mode (running statistics frozen) - small fine-tuning batches
    would otherwise overwrite the ImageNet statistics."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
