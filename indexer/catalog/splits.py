"""Train / val / test splits by product id: seeded, stable as the catalog grows, written to disk.

A product's split depends only on (seed, product id): sha256 of both is read as a number in [0, 1) and compared
with the test and val fractions. Adding products to a catalog therefore never moves an existing product to
another split, and every image or synthetic view of one product lands in the same split, so a model trained on
"train" has never seen any picture of a "test" product.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from engine.files import write_atomically

SPLITS = ("train", "val", "test")
DEFAULT_VAL_FRACTION = 0.05
DEFAULT_TEST_FRACTION = 0.15
DEFAULT_SEED = 0


class SplitError(ValueError):
    """A splits file that cannot be used (unreadable, bad header, unknown split name, duplicate id)."""


def split_unit(product_id: str, seed: int = DEFAULT_SEED) -> float:
    """The product's position in [0, 1): the first 8 bytes of sha256("<seed>:<id>") as a fraction."""
    digest = hashlib.sha256(f"{seed}:{product_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_splits(product_ids: Iterable[str], val_fraction: float = DEFAULT_VAL_FRACTION,
                  test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = DEFAULT_SEED) -> dict[str, str]:
    """Assign each product id to "train", "val" or "test".

    Args:
        product_ids: Catalog ids (strings; duplicates are ignored).
        val_fraction: Expected share of products in "val".
        test_fraction: Expected share of products in "test".
        seed: Changes the assignment as a whole.

    Returns:
        {product id: split name}, in the order the ids came.

    Raises:
        SplitError: Fractions outside [0, 1] or summing to more than 1.
    """
    if not (0.0 <= val_fraction <= 1.0 and 0.0 <= test_fraction <= 1.0 and val_fraction + test_fraction <= 1.0):
        raise SplitError(f"bad split fractions val={val_fraction} test={test_fraction}: each in [0, 1], sum <= 1")
    out: dict[str, str] = {}
    for pid in product_ids:
        u = split_unit(str(pid), seed)
        out[str(pid)] = "test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"
    return out


def write_splits(path: str | os.PathLike, splits: Mapping[str, str]) -> Path:
    """Write ``id,split`` rows (sorted by id as text) crash-safely (temp file, fsync, rename).

    Returns:
        The path written.
    """
    path = Path(path)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "split"])
    for pid in sorted(splits):
        writer.writerow([pid, splits[pid]])
    data = buf.getvalue().encode()
    write_atomically(path, lambda f: f.write(data))
    return path


def read_splits(path: str | os.PathLike) -> dict[str, str]:
    """Read a splits file written by ``write_splits``.

    Raises:
        SplitError: Missing file, wrong header, unknown split name or duplicate id.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SplitError(f"cannot read splits file {path}: {exc.strerror or exc}") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or [h.strip() for h in header[:2]] != ["id", "split"]:
        raise SplitError(f"splits file {path} must start with the header 'id,split'")
    out: dict[str, str] = {}
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) < 2 or row[1].strip() not in SPLITS:
            raise SplitError(f"{path} line {line}: expected '<id>,<train|val|test>', got {row!r}")
        pid = row[0].strip()
        if pid in out:
            raise SplitError(f"{path} line {line}: duplicate id {pid!r}")
        out[pid] = row[1].strip()
    return out


def split_counts(splits: Mapping[str, str]) -> dict[str, int]:
    """Number of products per split, every split name present (0 when empty)."""
    counts = Counter(splits.values())
    return {name: counts.get(name, 0) for name in SPLITS}
