"""Preprocessing: every PIL mode, extreme shapes, letterbox geometry, normalization values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine.models.preprocess import Preprocessor, letterbox, to_rgb

MEAN = (0.5, 0.25, 0.125)
STD = (0.5, 0.25, 0.2)


@pytest.fixture
def prep() -> Preprocessor:
    return Preprocessor(32, MEAN, STD)


def white_value() -> torch.Tensor:
    return (1.0 - torch.tensor(MEAN)) / torch.tensor(STD)


def image(mode: str, size: tuple[int, int] = (6, 8)) -> Image.Image:
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    if mode in ("I;16", "I", "F"):
        return Image.fromarray(np.full((size[1], size[0]), 40000, dtype=np.uint16)).convert(mode)
    if mode == "P":
        return rgb.convert("P", palette=Image.Palette.ADAPTIVE)
    return rgb.convert(mode)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "HSV", "LAB",
                                  "I", "I;16", "F"])
def test_any_mode_gives_normalized_chw_float32(prep: Preprocessor, mode: str) -> None:
    out = prep(image(mode))
    assert out.shape == (3, 32, 32)
    assert out.dtype == torch.float32
    assert out.is_contiguous()
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("size", [(1, 1), (20000, 1), (1, 20000), (60, 80), (5000, 3)])
def test_extreme_shapes(prep: Preprocessor, size: tuple[int, int]) -> None:
    out = prep(Image.new("RGB", size, (10, 20, 30)))
    assert out.shape == (3, 32, 32)
    assert torch.isfinite(out).all()


def test_transparent_pixels_become_white() -> None:
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert to_rgb(rgba).getpixel((1, 1)) == (255, 255, 255)
    half = Image.new("LA", (4, 4), (0, 128))
    assert to_rgb(half).getpixel((1, 1)) == (127, 127, 127)
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0] * 256)
    palette.info["transparency"] = 0
    assert to_rgb(palette).getpixel((0, 0)) == (255, 255, 255)
    premultiplied = Image.frombytes("La", (1, 1), bytes([0, 0]))
    assert to_rgb(premultiplied).getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    grey16 = Image.fromarray(np.full((2, 2), 257 * 100, dtype=np.uint16))
    assert grey16.mode == "I;16"
    assert to_rgb(grey16).getpixel((0, 0)) == (100, 100, 100)
    assert to_rgb(Image.new("F", (2, 2), 0.5)).getpixel((0, 0)) == (128, 128, 128)


def test_letterbox_keeps_aspect_and_pads_white() -> None:
    tall = Image.new("RGB", (60, 80), (0, 0, 0))  # the catalog's 60x80 photos
    square = letterbox(tall, 224)
    assert square.size == (224, 224)
    arr = np.asarray(square)
    # 60x80 -> 168x224 centered: 28 white columns each side, content black.
    assert (arr[:, :27] == 255).all() and (arr[:, -27:] == 255).all()
    assert (arr[:, 29:195] == 0).all()


def test_normalization_values(prep: Preprocessor) -> None:
    white = prep(Image.new("RGB", (8, 8), (255, 255, 255)))
    assert torch.allclose(white, white_value().view(3, 1, 1).expand(3, 32, 32), atol=1e-5)
    black = prep(Image.new("RGB", (8, 8), (0, 0, 0)))
    assert torch.allclose(black[:, 5, 5], -torch.tensor(MEAN) / torch.tensor(STD), atol=1e-5)
    # the padding of a wide strip is white too
    strip = prep(Image.new("RGB", (64, 2), (0, 0, 0)))
    assert torch.allclose(strip[:, 0, 0], white_value(), atol=1e-5)


def test_batch_and_empty_batch(prep: Preprocessor) -> None:
    batch = prep.batch([image("RGB"), image("L", (3, 9))])
    assert batch.shape == (2, 3, 32, 32)
    assert prep.batch([]).shape == (0, 3, 32, 32)


def test_params_are_json_data(prep: Preprocessor) -> None:
    params = prep.params()
    assert params["size"] == 32 and params["fill"] == [255, 255, 255]
    assert params["mean"] == list(MEAN) and params["std"] == list(STD)


def test_normalised_bit_for_bit_as_the_reference_formula() -> None:
    """Stored vectors depend on these exact floats (PREPROCESS_VERSION is part of the fingerprint): normalising each
    channel plane straight from uint8 must equal normalising the HWC float array and transposing it, bit for bit."""
    prep = Preprocessor(40, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    rng = np.random.default_rng(7)
    imgs = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
            for w, h in ((60, 80), (40, 40), (7, 93), (120, 33))]
    offset = np.array([m * 255.0 for m in prep.mean], dtype=np.float32)
    scale = np.array([1.0 / (s * 255.0) for s in prep.std], dtype=np.float32)
    reference = np.stack([((np.asarray(letterbox(img, 40), dtype=np.uint8).astype(np.float32) - offset) * scale)
                          .transpose(2, 0, 1) for img in imgs])
    assert np.array_equal(prep.batch(imgs).numpy(), reference)
    assert np.array_equal(prep.batch_from_pixels([prep.pixels(img) for img in imgs]).numpy(), reference)
    assert np.array_equal(prep.array(imgs[2]), reference[2])
