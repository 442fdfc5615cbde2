"""Backbone split: trunk + tail reproduce the full forward pass; the tail's key prefixes are right."""

from __future__ import annotations

import pytest
import torch

from engine import build_backbone
from engine.models.backbone_split import split_backbone


@pytest.fixture(scope="module")
def lite0_random():
    return build_backbone("efficientnet_lite0", "random", 64).module.eval()


@pytest.mark.parametrize("unfreeze", [0, 1, 2, 4, 17, 18])
def test_trunk_then_tail_equals_the_whole_network(lite0_random, unfreeze: int) -> None:
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    split = split_backbone(lite0_random, unfreeze)
    with torch.no_grad():
        whole = lite0_random(x)
        parts = split.tail.eval()(split.trunk(x))
    torch.testing.assert_close(parts, whole, atol=1e-5, rtol=1e-5)


def test_tail_prefixes_name_exactly_the_tail_parameters(lite0_random) -> None:
    split = split_backbone(lite0_random, 2)
    tail_ids = {id(p) for p in split.tail.parameters()}
    named = {name for name, p in lite0_random.named_parameters() if id(p) in tail_ids}
    assert named and all(name.startswith(split.tail_prefixes) for name in named)
    covered = {name for name, _ in lite0_random.named_parameters() if name.startswith(split.tail_prefixes)}
    assert covered == named
    assert split.tail_prefixes == ("_blocks.15.", "_conv_head.", "_bn1.")


def test_unfreezing_is_refused_where_not_implemented(lite0_random) -> None:
    resnet = build_backbone("resnet18", "random", 64).module
    assert split_backbone(resnet, 0).tail_prefixes == ()
    with pytest.raises(ValueError, match="efficientnet_lite0 only"):
        split_backbone(resnet, 1)
    with pytest.raises(ValueError, match=r"0\.\.18"):
        split_backbone(lite0_random, 19)


def test_the_whole_backbone_is_the_tail_at_18(lite0_random) -> None:
    split = split_backbone(lite0_random, 18)
    assert isinstance(split.trunk, torch.nn.Identity)  # the cached "activations" are the preprocessed images
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(split.trunk(x), x)
        assert torch.allclose(split.tail.eval()(split.trunk(x)), lite0_random(x), atol=1e-5, rtol=1e-5)
    # Every backbone tensor but the ImageNet classifier is trained, so stored in the checkpoint.
    keys = list(lite0_random.state_dict())
    assert {k for k in keys if not k.startswith(split.tail_prefixes)} == {"_fc.weight", "_fc.bias"}
    assert split.tail_prefixes[:2] == ("_conv_stem.", "_bn0.") and split.tail_prefixes[-2:] == ("_conv_head.", "_bn1.")
    assert len(split.tail_prefixes) == 2 + len(lite0_random._blocks) + 2
    # ... and the tail's parameters are exactly those tensors (the backbone's own objects, not copies).
    tail_ids = {id(p) for p in split.tail.parameters()}
    named = {name for name, p in lite0_random.named_parameters() if id(p) in tail_ids}
    assert named == {name for name, _ in lite0_random.named_parameters() if not name.startswith("_fc.")}
    assert len(tail_ids) == len(named)
    # Gradients reach the stem (tail in train mode, as the unfrozen epochs run it; BatchNorm statistics restored).
    saved = {k: v.clone() for k, v in lite0_random.state_dict().items()}
    try:
        split.tail.train()
        split.tail(x).sum().backward()
        assert lite0_random._conv_stem.weight.grad is not None and lite0_random._conv_stem.weight.grad.abs().sum() > 0
    finally:
        lite0_random.zero_grad(set_to_none=True)
        lite0_random.load_state_dict(saved)
        lite0_random.eval()
