"""Item pictures and grid thumbnails, served from the catalog roots only, with caching headers.

A client names an item by its integer id, never a path. The path comes from SQL and is served only when,
with every symlink resolved, it lies inside one of the image roots: the configured ones (web.image_roots, else the
default catalog's folder) and the image folder of every catalog indexed into the store (catalog_sources): a row
pointing at /etc/passwd, a `..` path or a symlink out of the root is answered 404 like a missing file.
Thumbnails are made once per (file version, size) and cached on disk, written crash-safely.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

from flask import Response, send_file

from indexer.catalog.images import ImageDecodeError, decode_image

log = logging.getLogger(__name__)

MIMETYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
             ".gif": "image/gif"}


def resolve_in_roots(path: str | None, roots: tuple[Path, ...]) -> Path | None:
    """The real path of an image file if it lies inside one of roots (symlinks resolved), else None."""
    if not path:
        return None
    try:
        real = Path(path).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if real.suffix.lower() not in MIMETYPES or not real.is_file():
        return None
    for root in roots:
        try:
            if real.is_relative_to(root.resolve()):
                return real
        except (OSError, RuntimeError):
            continue
    log.warning("refusing to serve %s: outside the image roots %s (index its catalog, or add its folder to "
                "web.image_roots)", real, ", ".join(map(str, roots)))
    return None


def _version_tag(path: Path, extra: str = "") -> str:
    st = path.stat()
    return hashlib.sha256(f"{path}|{st.st_mtime_ns}|{st.st_size}|{extra}".encode()).hexdigest()[:32]


def send_image(path: Path, max_age: int) -> Response:
    """The original picture, with ETag/Last-Modified, conditional GET (304) and Cache-Control."""
    resp = send_file(path, mimetype=MIMETYPES[path.suffix.lower()], conditional=True, etag=_version_tag(path),
                     max_age=max_age, last_modified=path.stat().st_mtime)
    resp.headers["Cache-Control"] = f"public, max-age={max_age}"
    return resp


def thumbnail_file(path: Path, size: int, cache_dir: Path, max_pixels: int) -> tuple[Path, str]:
    """(cached JPEG thumbnail whose longer side is at most size, its version tag), made on first use.

    Raises:
        ImageDecodeError: the catalog file is not a decodable image.
    """
    tag = _version_tag(path, f"thumb{size}")
    out = cache_dir / tag[:2] / f"{tag}.jpg"
    if out.is_file():
        return out, tag
    img = decode_image(path.read_bytes(), max_pixels)
    img.thumbnail((size, size), resample=3)  # bicubic
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".tmp-", suffix=".jpg")
    try:
        with os.fdopen(fd, "wb") as fh:
            img.save(fh, "JPEG", quality=85, optimize=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out, tag


def send_thumbnail(path: Path, size: int, cache_dir: Path, max_pixels: int, max_age: int) -> Response | None:
    """The grid thumbnail with caching headers; None if the catalog file cannot be decoded."""
    try:
        thumb, tag = thumbnail_file(path, size, cache_dir, max_pixels)
    except ImageDecodeError:
        return None
    resp = send_file(thumb, mimetype="image/jpeg", conditional=True, etag=tag, max_age=max_age)
    resp.headers["Cache-Control"] = f"public, max-age={max_age}"
    return resp

