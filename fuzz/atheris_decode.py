#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris, libFuzzer) of the upload decoder and the crop box.

Every input is handed to ``decode_image`` as an uploaded photo; when it decodes, its first 16 bytes also make a
crop box for ``crop_box``. Only ``ImageDecodeError`` (the project's own error, shown to the person as a 400) may
come out; anything else is a finding, and libFuzzer writes the input to ``var/fuzz/crash-<sha1>``.

    pip install atheris          # optional, not in the dev extras (tested with atheris 3.0.0)
    python fuzz/atheris_decode.py -atheris_runs=100000 [corpus_dir] [libFuzzer flags]

The corpus defaults to var/fuzz/decode/ (seeded, and kept between runs); findings go to var/fuzz/.

Without atheris it says so and exits 0. ``test_one_input`` needs no atheris (tests/web/test_fuzz_harness.py runs it
on its seeds so the harness cannot rot).
"""

from __future__ import annotations

import io
import math
import struct
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MAX_PIXELS = 1_000_000


def seeds() -> list[bytes]:
    """Starting inputs: magic numbers and tiny valid images of each accepted format and some odd modes."""
    from PIL import Image

    out = [b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBP"]
    for fmt, mode, size in (("JPEG", "RGB", (8, 8)), ("PNG", "RGBA", (5, 3)), ("GIF", "P", (4, 4)),
                            ("WEBP", "RGB", (6, 6)), ("PNG", "I;16", (3, 3))):
        buf = io.BytesIO()
        Image.new(mode, size).save(buf, fmt)
        out.append(buf.getvalue())
    return out


def test_one_input(data: bytes) -> None:
    """The fuzz target: decode the bytes as an upload; only ImageDecodeError may be raised."""
    from indexer.catalog.images import ImageDecodeError, crop_box, decode_image

    try:
        img = decode_image(data, MAX_PIXELS)
    except ImageDecodeError as exc:
        if not str(exc):
            raise AssertionError("an ImageDecodeError without a message") from exc
        return
    if img.mode != "RGB" or img.width < 1 or img.height < 1 or img.width * img.height > MAX_PIXELS:
        raise AssertionError(f"decoded to {img.mode} {img.size}")
    box = struct.unpack("<4f", (data + bytes(16))[:16])
    try:
        out = crop_box(img, box)
    except ImageDecodeError:
        return
    if not all(math.isfinite(v) and 0 <= v <= 1 for v in box) or out.width < 1 or out.height < 1:
        raise AssertionError(f"crop_box accepted {box} and gave {out.size}")


def main() -> int:
    try:
        import atheris
    except ImportError:
        print("atheris is not installed (optional): `pip install atheris`, then run this again. Skipped.")
        return 0
    with atheris.instrument_imports(include=["indexer.catalog.images", "PIL"]):
        import PIL.Image


        PIL.Image.init()  # the format plugins load lazily: import them here so that they are instrumented too
    atheris.Setup(with_seed_corpus(sys.argv, seeds(), "decode"), test_one_input)
    atheris.Fuzz()
    return 0


def with_seed_corpus(argv: list[str], seeds: list[bytes], name: str) -> list[str]:
    """argv plus, unless given, the corpus folder var/fuzz/<name>/ (seeded; libFuzzer adds what it finds there,
    so later runs start from it) and -artifact_prefix=var/fuzz/ (where findings are written)."""
    out = list(argv)
    if not any(not a.startswith("-") for a in argv[1:]):
        folder = REPO / "var" / "fuzz" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(seeds):
            (folder / f"seed-{i:03d}").write_bytes(seed)
        out.append(str(folder))
    if not any(a.startswith("-artifact_prefix=") for a in argv[1:]):
        (REPO / "var" / "fuzz").mkdir(parents=True, exist_ok=True)
        out.append(f"-artifact_prefix={REPO / 'var' / 'fuzz'}/")
    return out


if __name__ == "__main__":
    sys.exit(main())
