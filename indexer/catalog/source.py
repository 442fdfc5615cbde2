"""Catalog readers: a CSV with at least `id,image`, or a plain folder of images.

Readers only parse and validate rows; they never touch images' pixels or the database. Problems
are reported as RowProblem with the CSV row number (the header is row 1) and the run goes on.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from indexer.store.tables import TAXONOMY_COLUMNS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")
# Columns with a meaning of their own; any other column is kept in attributes.
RESERVED_COLUMNS = ("id", "image", "title", "price")


class CatalogError(ValueError):
    """The catalog as a whole cannot be read (missing file, no header, no id/image column)."""


@dataclass(frozen=True)
class RowProblem:
    row: int
    external_id: str
    reason: str

    def __str__(self) -> str:
        ident = f" (id {self.external_id})" if self.external_id else ""
        return f"row {self.row}{ident}: {self.reason}"


@dataclass
class CatalogRow:
    row: int
    external_id: str
    image_path: Path
    title: str = ""
    taxonomy: dict[str, str | None] = field(default_factory=dict)
    price: Decimal | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class CatalogSource:
    """A catalog to import: where it is and how to resolve its image paths."""

    path: Path
    images_root: Path
    is_folder: bool

    @property
    def label(self) -> str:
        return str(self.path)


def open_catalog(path: str | os.PathLike[str], images_root: str | os.PathLike[str] | None = None) -> CatalogSource:
    """Resolve a catalog argument (CSV file or image folder) into a CatalogSource.

    Raises:
        CatalogError: the path does not exist or is neither a CSV nor a folder.
    """
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise CatalogError(f"catalog not found: {p}")
    if p.is_dir():
        return CatalogSource(p, Path(images_root).resolve() if images_root else p, True)
    root = Path(images_root).expanduser().resolve() if images_root else p.parent
    if not root.is_dir():
        raise CatalogError(f"--images-root is not a folder: {root}")
    return CatalogSource(p, root, False)


def count_rows(source: CatalogSource) -> int:
    """Number of data rows (or image files), for progress bars. Cheap: counts lines."""
    if source.is_folder:
        return sum(1 for _ in _walk_images(source.path))
    with source.path.open("rb") as fh:
        lines = sum(1 for _ in fh)
    return max(lines - 1, 0)


def catalog_digest(source: CatalogSource) -> str:
    """sha256 of the CSV bytes (or the sorted relative file list of a folder)."""
    h = hashlib.sha256()
    if source.is_folder:
        for p in sorted(_walk_images(source.path)):
            h.update(str(p.relative_to(source.path)).encode())
    else:
        with source.path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _walk_images(folder: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith("."):
                yield Path(dirpath) / name


def iter_catalog(source: CatalogSource) -> Iterator[CatalogRow | RowProblem]:
    """Yield each valid row as CatalogRow and each bad one as RowProblem, in file order.

    Checks made here: empty or duplicate id, empty image path, image path escaping the images
    root, missing image file, unparsable price, malformed CSV line. Whether the image decodes is
    checked by the pipeline's decoder.
    """
    if source.is_folder:
        yield from _iter_folder(source)
    else:
        yield from _iter_csv(source)


def _iter_folder(source: CatalogSource) -> Iterator[CatalogRow | RowProblem]:
    for n, path in enumerate(_walk_images(source.path), start=1):
        rel = path.relative_to(source.path)
        yield CatalogRow(row=n, external_id=str(rel.with_suffix("")), image_path=path, title=path.stem)


def _iter_csv(source: CatalogSource) -> Iterator[CatalogRow | RowProblem]:
    try:
        raw = source.path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {source.path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise CatalogError(f"catalog {source.path} is empty") from None
    except csv.Error as exc:
        raise CatalogError(f"catalog {source.path}: unreadable header: {exc}") from None
    header = [h.strip() for h in header]
    missing = [c for c in ("id", "image") if c not in header]
    if missing:
        raise CatalogError(f"catalog {source.path} lacks column(s) {', '.join(missing)}; header is {header}")
    index = {name: i for i, name in enumerate(header)}
    seen: set[str] = set()
    root = source.images_root
    row_no = 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            row_no = reader.line_num
            yield RowProblem(row_no, "", f"unreadable CSV line: {exc}")
            continue
        row_no += 1
        if not values or all(not v.strip() for v in values):
            continue
        if len(values) != len(header):
            yield RowProblem(row_no, values[index["id"]].strip() if len(values) > index["id"] else "",
                             f"has {len(values)} fields, header has {len(header)}")
            continue
        rec = {name: values[i].strip() for name, i in index.items()}
        ext = rec["id"]
        if not ext:
            yield RowProblem(row_no, "", "empty id")
            continue
        if ext in seen:
            yield RowProblem(row_no, ext, "duplicate id (first occurrence kept)")
            continue
        seen.add(ext)
        if not rec["image"]:
            yield RowProblem(row_no, ext, "empty image path")
            continue
        image = (root / rec["image"]).resolve()
        if not image.is_relative_to(root):
            yield RowProblem(row_no, ext, f"image path {rec['image']!r} leaves the images root")
            continue
        if not image.is_file():
            yield RowProblem(row_no, ext, f"image file not found: {rec['image']}")
            continue
        price: Decimal | None = None
        if rec.get("price"):
            try:
                price = Decimal(rec["price"])
            except InvalidOperation:
                yield RowProblem(row_no, ext, f"price {rec['price']!r} is not a number")
                continue
        taxonomy = {c: (rec.get(c) or None) for c in TAXONOMY_COLUMNS if c in rec}
        attributes = {k: v for k, v in rec.items() if k not in RESERVED_COLUMNS and k not in TAXONOMY_COLUMNS and v}
        yield CatalogRow(row=row_no, external_id=ext, image_path=image, title=rec.get("title", ""),
                         taxonomy=taxonomy, price=price, attributes=attributes)
