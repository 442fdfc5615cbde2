"""Colour descriptors: the background is ignored, colours land in their bins, the output is a unit vector."""

from __future__ import annotations

import numpy as np
from PIL import Image

from engine.colour import COLOUR_DIM, colour_descriptor, with_colour


def product_shot(colour: tuple[int, int, int], size=(60, 80)) -> Image.Image:
    img = Image.new("RGB", size, (255, 255, 255))
    img.paste(Image.new("RGB", (30, 40), colour), (15, 20))
    return img


def bin_of(rgb: tuple[int, int, int], bins: int = 4) -> int:
    r, g, b = (c * bins // 256 for c in rgb)
    return (r * bins + g) * bins + b


def test_white_background_is_ignored_and_the_item_colour_dominates():
    d = colour_descriptor(product_shot((200, 20, 20)))
    assert d.shape == (COLOUR_DIM,) and d.dtype == np.float32
    assert np.isclose(np.linalg.norm(d), 1.0)
    assert int(np.argmax(d)) == bin_of((200, 20, 20)) and d[bin_of((255, 255, 255))] == 0


def test_a_white_item_still_describes_itself_and_colours_differ():
    white = colour_descriptor(Image.new("RGB", (60, 80), (250, 250, 250)))
    assert int(np.argmax(white)) == bin_of((250, 250, 250))
    red, blue = colour_descriptor(product_shot((200, 20, 20))), colour_descriptor(product_shot((20, 20, 200)))
    navy = colour_descriptor(product_shot((40, 30, 230)))  # another blue, same bins
    assert red @ blue < 0.1 and navy @ blue > 0.9
    assert colour_descriptor(product_shot((20, 20, 200)).convert("RGBA")) @ blue > 0.99


def test_finer_bins_and_concatenation():
    assert colour_descriptor(product_shot((1, 2, 3)), bins=8).shape == (512,)
    v = np.ones((2, 3), np.float32)
    assert with_colour(v, None) is not None and with_colour(v, np.zeros((2, 4))).shape == (2, 7)
