"""Pack a catalog (CSV + JPEG files) into one compact file and unpack it bit for bit, to carry it to a machine
that cannot read ../shared (the lent GPU machine, whose uploads are capped at 64 MiB; docs/training.md).

The catalog's 60x80 JPEGs are ~1.4 KB each and nearly all start with the same ~600 bytes (JFIF header,
quantisation and Huffman tables). The pack stores each distinct header once and, per file, only the rest (the
entropy-coded scan), so the files come back byte-identical at about 60% of the size. Only the rows whose split is
listed are packed (default: train and val), so held-out test photos never reach the training machine; the CSV is
carried whole (its sha256 is part of every training manifest) and its other rows are skipped there as rows with a
missing image.

    python scripts/jpeg_pack.py pack --catalog ../shared/data/fashion-product-images/catalog.csv \\
        --splits models/lite0-street2shop/splits.csv --out var/gpu/catalog.pack
    python scripts/jpeg_pack.py unpack var/gpu/catalog.pack var/gpu/data
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import struct
import sys
import zlib
from pathlib import Path

MAGIC = b"LKJPACK1"
SOS = b"\xff\xda"  # start of scan: everything before it is header and tables


def _blob(data: bytes) -> bytes:
    return struct.pack("<Q", len(data)) + data


def pack(catalog: Path, splits_file: Path | None, keep: set[str], out: Path) -> dict:
    """Write the pack; returns its summary (files, bytes, distinct headers)."""
    root = catalog.parent
    splits = {}
    if splits_file is not None:
        with splits_file.open(newline="") as fh:
            splits = {r["id"]: r["split"] for r in csv.DictReader(fh)}
    csv_bytes = catalog.read_bytes()
    rows = list(csv.DictReader(io.StringIO(csv_bytes.decode("utf-8"), newline="")))
    headers: dict[bytes, int] = {}
    files, scans = [], []
    original = 0
    digest = hashlib.sha256()
    for row in rows:
        if splits_file is not None and splits.get(row["id"]) not in keep:
            continue
        rel = row["image"]
        data = (root / rel).read_bytes()
        cut = data.find(SOS)
        if cut < 0:
            cut = 0  # not a baseline JPEG: store it whole
        head = data[:cut]
        files.append([rel, headers.setdefault(head, len(headers)), len(data) - cut])
        scans.append(data[cut:])
        original += len(data)
        digest.update(data)
    index = {"catalog": catalog.name, "catalog_sha256": hashlib.sha256(csv_bytes).hexdigest(),
             "files": files, "content_sha256": digest.hexdigest(), "splits": sorted(keep) if splits_file else None}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(MAGIC)
        fh.write(_blob(gzip.compress(json.dumps(index).encode(), mtime=0)))
        fh.write(_blob(gzip.compress(csv_bytes, mtime=0)))
        fh.write(struct.pack("<Q", len(headers)))
        for head in headers:
            fh.write(_blob(head))
        for scan in scans:
            fh.write(scan)
    tmp.replace(out)
    return {"files": len(files), "bytes": out.stat().st_size, "headers": len(headers), "image_bytes": original}


def unpack(pack_file: Path, dest: Path) -> dict:
    """Recreate the catalog CSV and the packed image files under ``dest``; verifies both checksums."""
    buf = memoryview(pack_file.read_bytes())
    if bytes(buf[:len(MAGIC)]) != MAGIC:
        raise ValueError(f"{pack_file} is not a pack made by scripts/jpeg_pack.py")
    pos = len(MAGIC)

    def blob() -> bytes:
        nonlocal pos
        (n,) = struct.unpack_from("<Q", buf, pos)
        pos += 8
        data = bytes(buf[pos:pos + n])
        pos += n
        return data

    try:  # a damaged index, CSV or header table: gzip/zlib/struct errors, reported as a bad pack
        index = json.loads(gzip.decompress(blob()))
        csv_bytes = gzip.decompress(blob())
        (n_headers,) = struct.unpack_from("<Q", buf, pos)
        pos += 8
        heads = [blob() for _ in range(n_headers)]
    except (OSError, EOFError, zlib.error, struct.error) as exc:
        raise ValueError(f"{pack_file} is damaged: {exc}") from exc
    if hashlib.sha256(csv_bytes).hexdigest() != index["catalog_sha256"]:
        raise ValueError("catalog CSV checksum mismatch")
    root = dest.resolve()
    for rel in [index["catalog"]] + [f[0] for f in index["files"]]:
        if not (root / rel).resolve().is_relative_to(root):
            raise ValueError(f"pack names a path outside the destination: {rel!r}")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / index["catalog"]).write_bytes(csv_bytes)
    digest = hashlib.sha256()
    made_dirs: set[Path] = set()
    for rel, h, n in index["files"]:
        data = heads[h] + bytes(buf[pos:pos + n])
        pos += n
        path = dest / rel
        if path.parent not in made_dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            made_dirs.add(path.parent)
        path.write_bytes(data)
        digest.update(data)
    if digest.hexdigest() != index["content_sha256"]:
        raise ValueError("image content checksum mismatch")
    return {"files": len(index["files"]), "catalog": str(dest / index["catalog"])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="catalog CSV + images -> one pack file")
    p.add_argument("--catalog", required=True, type=Path)
    p.add_argument("--splits", type=Path, help="id,split file; only rows of --keep splits are packed")
    p.add_argument("--keep", default="train,val", help="splits to pack (default: train,val)")
    p.add_argument("--out", required=True, type=Path)
    u = sub.add_parser("unpack", help="pack file -> catalog CSV + images under DEST")
    u.add_argument("pack", type=Path)
    u.add_argument("dest", type=Path)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "pack":
            info = pack(args.catalog, args.splits, set(args.keep.split(",")), args.out)
        else:
            info = unpack(args.pack, args.dest)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
