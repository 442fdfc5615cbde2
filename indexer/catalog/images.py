"""Safe image decoding shared by bulk indexing and uploads: format allow-list, pixel limit, EXIF rotation, and
reduced decoding of large photos (a 12-megapixel upload is decoded at the size the query needs)."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from engine.models.preprocess import to_rgb

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
DEFAULT_MAX_PIXELS = 40_000_000


class ImageDecodeError(ValueError):
    """The bytes are not an image we accept; the message is fit to show to a person."""


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = 0) -> Image.Image:
    """Decode bytes into an RGB PIL image.

    Only JPEG, PNG, WebP and GIF (first frame) are accepted; images over max_pixels are refused
    before their pixels are decoded (decompression bombs). EXIF orientation is applied; any mode
    (greyscale, CMYK, 16-bit, palette, alpha) becomes RGB with alpha composited on white.

    ``min_side`` > 0: a photo whose shorter side is at least twice that is decoded reduced, by the largest
    power of two that keeps its shorter side >= min_side (JPEG: the decoder's DCT scaling, "draft mode", so the
    full-size pixels are never produced; other formats: ``Image.reduce`` after decoding). The photo's size
    before reduction is kept in ``img.info["original_size"]``; relative boxes mean the same on both.

    Raises:
        ImageDecodeError: empty, unknown, disallowed, oversized, truncated or corrupt data.
    """
    if not data:
        raise ImageDecodeError("the file is empty")
    with warnings.catch_warnings():
        # Pillow's UserWarnings (corrupt EXIF, odd palettes) are notes about data we can still use, not errors.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return _decode(data, max_pixels, min_side)


def _reduction(width: int, height: int, min_side: int) -> int:
    """Largest power-of-two factor (1, 2, 4 or 8) that keeps the shorter side >= min_side."""
    factor = 1
    while min_side > 0 and factor < 8 and min(width, height) // (factor * 2) >= min_side:
        factor *= 2
    return factor


def _decode(data: bytes, max_pixels: int, min_side: int = 0) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        fmt = img.format
        w, h = img.size
        if w < 1 or h < 1:
            raise ImageDecodeError("the image has no pixels")
        if w * h > max_pixels:
            raise ImageDecodeError(f"the image is too large ({w}x{h} pixels; the limit is {max_pixels:,} pixels)")
        if fmt == "GIF":
            img.seek(0)
        factor = _reduction(w, h, min_side)
        if factor > 1 and fmt == "JPEG":
            img.draft(img.mode, (-(-w // factor), -(-h // factor)))
        img.load()
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError(f"not a supported image (allowed: {', '.join(ALLOWED_FORMATS)})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageDecodeError(f"the image is too large (limit {max_pixels:,} pixels)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError) as exc:
        raise ImageDecodeError(f"the image is corrupt or truncated ({type(exc).__name__})") from None
    scaled = img.size != (w, h)
    try:
        transposed = ImageOps.exif_transpose(img)
    except (OSError, ValueError, TypeError, KeyError, SyntaxError):
        transposed = None  # a broken EXIF block is no reason to refuse the pixels
    if transposed is not None and transposed is not img:
        if transposed.size != img.size and transposed.size[::-1] == img.size:
            w, h = h, w  # turned by 90 degrees: the original size in the photo's upright frame
        img = transposed
    img = to_rgb(img)
    if factor > 1 and not scaled:  # not a JPEG (or its decoder could not scale): reduce the decoded pixels
        img = img.reduce(factor)
    img.info["original_size"] = (w, h)
    return img


def crop_box(img: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """Crop with a box in relative coordinates (x0, y0, x1, y1 in 0..1).

    Raises:
        ImageDecodeError: the box is outside 0..1, empty, or smaller than one pixel.
    """
    x0, y0, x1, y1 = box
    if not all(0.0 <= v <= 1.0 for v in box) or x1 <= x0 or y1 <= y0:
        raise ImageDecodeError("crop must be x0,y0,x1,y1 with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1")
    w, h = img.size
    px = (int(x0 * w), int(y0 * h), max(int(round(x1 * w)), int(x0 * w) + 1), max(int(round(y1 * h)), int(y0 * h) + 1))
    return img.crop(px)
