"""Safe image decoding shared by bulk indexing and uploads: format allow-list, pixel limit, EXIF rotation."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
DEFAULT_MAX_PIXELS = 40_000_000


class ImageDecodeError(ValueError):
    """The bytes are not an image we accept; the message is fit to show to a person."""


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode bytes into an RGB PIL image.

    Only JPEG, PNG, WebP and GIF (first frame) are accepted; images over max_pixels are refused
    before their pixels are decoded (decompression bombs). EXIF orientation is applied; any mode
    (greyscale, CMYK, 16-bit, palette, alpha) becomes RGB with alpha composited on white.

    Raises:
        ImageDecodeError: empty, unknown, disallowed, oversized, truncated or corrupt data.
    """
    if not data:
        raise ImageDecodeError("the file is empty")
    with warnings.catch_warnings():
        # Pillow's UserWarnings (corrupt EXIF, odd palettes) are notes about data we can still use, not errors.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return _decode(data, max_pixels)


def _decode(data: bytes, max_pixels: int) -> Image.Image:
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
        img.load()
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError(f"not a supported image (allowed: {', '.join(ALLOWED_FORMATS)})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageDecodeError(f"the image is too large (limit {max_pixels:,} pixels)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError) as exc:
        raise ImageDecodeError(f"the image is corrupt or truncated ({type(exc).__name__})") from None
    try:
        img = ImageOps.exif_transpose(img) or img
    except (OSError, ValueError, TypeError, KeyError, SyntaxError):
        pass  # a broken EXIF block is no reason to refuse the pixels
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; transparency is composited on white (catalog photos are on white)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        img = img.point(lambda v: v / 256).convert("L")
    if img.mode == "F":
        img = img.convert("L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        canvas = Image.new("RGBA", img.size, (255, 255, 255, 255))
        canvas.alpha_composite(img)
        return canvas.convert("RGB")
    return img.convert("RGB")


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
