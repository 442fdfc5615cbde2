"""Reduced decoding of large uploads (decode_image's min_side): size, orientation, and what the model sees."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from indexer.catalog.images import crop_box, decode_image


def _photo(width: int, height: int, fmt: str = "JPEG", orientation: int | None = None) -> bytes:
    """A smooth photo-like picture (gradients and a block), so a reduced decode can be compared to a resized one."""
    y, x = np.mgrid[0:height, 0:width]
    arr = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], axis=-1).astype(np.uint8)
    arr[height // 4:height // 2, width // 4:width // 2] = (200, 30, 30)
    img = Image.fromarray(arr)
    buf = io.BytesIO()
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        img.save(buf, fmt, quality=90, exif=exif)
    else:
        img.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def test_large_jpeg_is_decoded_reduced_and_keeps_its_original_size():
    img = decode_image(_photo(3000, 4000), min_side=512)
    assert img.size == (750, 1000)  # 1/4: the largest power of two keeping the shorter side >= 512
    assert img.mode == "RGB"
    assert img.info["original_size"] == (3000, 4000)


def test_no_reduction_without_min_side_or_for_small_photos():
    assert decode_image(_photo(3000, 4000)).size == (3000, 4000)
    small = decode_image(_photo(900, 1200), min_side=512)
    assert small.size == (900, 1200)  # 900 // 2 < 512: full size
    assert small.info["original_size"] == (900, 1200)


def test_exif_orientation_is_applied_after_reduction():
    img = decode_image(_photo(4000, 3000, orientation=6), min_side=512)  # stored landscape, shown portrait
    assert img.size == (750, 1000)
    assert img.info["original_size"] == (3000, 4000)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_other_formats_are_reduced_after_decoding(fmt):
    img = decode_image(_photo(2400, 1800, fmt), min_side=400)
    assert img.size == (600, 450)  # 1800 // 4 = 450 >= 400, 1800 // 8 < 400: reduced by 4
    assert img.info["original_size"] == (2400, 1800)


def test_crops_of_the_reduced_photo_match_crops_of_the_full_one():
    data = _photo(3000, 4000)
    full = decode_image(data)
    reduced = decode_image(data, min_side=512)
    box = (0.2, 0.2, 0.8, 0.8)
    a = np.asarray(crop_box(full, box).resize((128, 128), Image.BILINEAR), dtype=np.float32)
    b = np.asarray(crop_box(reduced, box).resize((128, 128), Image.BILINEAR), dtype=np.float32)
    assert np.abs(a - b).mean() < 4.0  # same picture, up to resampling
