"""A corpus of hostile and odd uploads, made in memory: each a (name, bytes, expected outcome).

Expected outcomes: "ok" (decoded and searched: 200), "reject" (400 with a message), "either" (200 or 400 are both
right, e.g. polyglots that are also a valid image). Nothing may ever give a 5xx or a traceback.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib

from PIL import Image, ImageDraw


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _picture(size: tuple[int, int] = (64, 80), mode: str = "RGB") -> Image.Image:
    img = Image.new("RGB", size, (250, 250, 250))
    d = ImageDraw.Draw(img)
    w, h = size
    d.rectangle((w // 5, h // 6, 4 * w // 5, 5 * h // 6), fill=(30, 60, 160))
    d.ellipse((w // 3, h // 3, 2 * w // 3, h // 2), fill=(200, 40, 40))
    return img.convert(mode) if mode != "RGB" else img


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG that declares width x height pixels (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def real_png_bomb() -> bytes:
    """A real, fully valid 7000 x 7000 PNG (49 Mpx, over the 40 Mpx limit) of ~150 kB."""
    return _save(Image.new("L", (7000, 7000), 255), "PNG", optimize=False)


def gif_bomb() -> bytes:
    """A GIF whose logical screen and frame declare 65535 x 65535 pixels."""
    header = b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0, 0, 0)
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 65535, 65535, 0) + b"\x02\x02\x44\x01\x00"
    return header + frame + b"\x3b"


def jpeg_declaring(width: int, height: int) -> bytes:
    """A real JPEG whose SOF header is rewritten to declare width x height."""
    data = bytearray(_save(_picture((16, 16)), "JPEG"))
    i = data.index(b"\xff\xc0")
    data[i + 5:i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def exif_rotated_jpeg() -> bytes:
    """A 40 x 90 JPEG whose EXIF says rotate 90 degrees (the upright photo is 90 x 40)."""
    img = _picture((40, 90))
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(img, "JPEG", exif=exif.tobytes())


def broken_exif_jpeg() -> bytes:
    data = bytearray(exif_rotated_jpeg())
    i = data.index(b"Exif")
    data[i + 10:i + 30] = b"\xff" * 20
    return bytes(data)


def sixteen_bit_png() -> bytes:
    img = Image.new("I;16", (48, 48))
    img.putdata([i * 37 % 65535 for i in range(48 * 48)])
    return _save(img, "PNG")


def animated_gif() -> bytes:
    frames = [_picture((40, 40)), Image.new("RGB", (40, 40), (0, 200, 0))]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def palette_png_with_transparency() -> bytes:
    img = _picture((40, 40)).convert("P")
    return _save(img, "PNG", transparency=0)


def svg() -> bytes:
    return (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
            b'<script>alert(1)</script><image href="http://127.0.0.1:9/x.png"/></svg>')


def gif_html_polyglot() -> bytes:
    """A valid GIF whose comment extension holds HTML/JS (GIFAR-style)."""
    gif = _save(_picture((20, 20)).convert("P"), "GIF")
    payload = b"<script>alert(document.cookie)</script>"
    comment = b"\x21\xfe" + bytes([len(payload)]) + payload + b"\x00"
    return gif[:-1] + comment + b"\x3b"


def jpeg_zip_polyglot() -> bytes:
    """A valid JPEG with a ZIP archive appended (opens as both)."""
    zbuf = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("evil.sh", "rm -rf /\n")
    return _save(_picture(), "JPEG") + zbuf.getvalue()


def html_then_png() -> bytes:
    """HTML first, then a PNG: not an image by its magic bytes."""
    return b"<html><body onload=alert(1)></body></html>\n" + _save(_picture(), "PNG")


def pdf() -> bytes:
    return b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def corpus() -> list[tuple[str, bytes, str]]:
    """(name, bytes, expectation) for every upload case."""
    jpeg = _save(_picture(), "JPEG")
    return [
        ("zero-bytes.jpg", b"", "reject"),
        ("text-renamed.jpg", b"this is a text file, not a photo\n" * 20, "reject"),
        ("truncated.jpg", jpeg[: len(jpeg) // 2], "reject"),
        ("jpeg-header-only.jpg", jpeg[:20], "reject"),
        ("random-bytes.jpg", bytes((i * 131 + 7) % 256 for i in range(4096)), "reject"),
        ("bomb-png-100000x100000.png", png_bomb(100_000, 100_000), "reject"),
        ("bomb-png-real-7000x7000.png", real_png_bomb(), "reject"),
        ("bomb-gif-65535x65535.gif", gif_bomb(), "reject"),
        ("bomb-jpeg-65000x65000.jpg", jpeg_declaring(65000, 65000), "reject"),
        ("png-zero-width.png", png_bomb(0, 10), "reject"),
        ("polyglot-gif-html.gif", gif_html_polyglot(), "either"),
        ("polyglot-jpeg-zip.jpg", jpeg_zip_polyglot(), "either"),
        ("polyglot-html-then-png.png", html_then_png(), "reject"),
        ("bmp.bmp", _save(_picture(), "BMP"), "reject"),
        ("tiff.tif", _save(_picture(), "TIFF"), "reject"),
        ("svg.svg", svg(), "reject"),
        ("ico.ico", _save(_picture((32, 32)), "ICO"), "reject"),
        ("pdf-renamed.jpg", pdf(), "reject"),
        ("gzip.jpg.gz", gzip.compress(jpeg), "reject"),
        ("ppm.ppm", _save(_picture(), "PPM"), "reject"),
        ("exif-rotated.jpg", exif_rotated_jpeg(), "ok"),
        ("exif-broken.jpg", broken_exif_jpeg(), "ok"),
        ("cmyk.jpg", _save(_picture(mode="CMYK"), "JPEG"), "ok"),
        ("greyscale.jpg", _save(_picture(mode="L"), "JPEG"), "ok"),
        ("sixteen-bit.png", sixteen_bit_png(), "ok"),
        ("rgba-alpha.png", _save(_picture(mode="RGBA"), "PNG"), "ok"),
        ("la-alpha.png", _save(_picture(mode="LA"), "PNG"), "ok"),
        ("palette-transparent.png", palette_png_with_transparency(), "ok"),
        ("one-bit.png", _save(_picture(mode="1"), "PNG"), "ok"),
        ("1x1.png", _save(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"), "ok"),
        ("20000x1.png", _save(Image.new("RGB", (20000, 1), (90, 60, 30)), "PNG"), "ok"),
        ("1x20000.png", _save(Image.new("RGB", (1, 20000), (90, 60, 30)), "PNG"), "ok"),
        ("animated.gif", animated_gif(), "ok"),
        ("webp.webp", _save(_picture(), "WEBP"), "ok"),
        ("progressive.jpg", _save(_picture((200, 260)), "JPEG", progressive=True), "ok"),
    ]
