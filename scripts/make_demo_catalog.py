#!/usr/bin/env python3
"""Write the demo catalog committed in data/demo-catalog/ from the full Fashion Product Images catalog.

A seeded, reproducible selection: every article type at least once (its first product by a seeded shuffle), then
a seeded random fill up to --size products. Same CSV columns as the full catalog; only the small 60x80 photos are
copied (image_224 is left empty), so the whole folder stays a couple of MB.

    python scripts/make_demo_catalog.py [--source ../shared/data/fashion-product-images] [--size 1200] [--seed 21]

The folder is written beside the destination under a temp name and renamed into place only when complete.
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "fashion-product-images"
DEFAULT_DEST = REPO / "data" / "demo-catalog"

README = """# Demo catalog ({n} products)

What `make run` indexes on a machine without the full dataset (see the repository README, "What `make run`
indexes"). {n} products of the public "Fashion Product Images (Small)" catalog (Myntra products), covering
{types} of its {all_types} article types (each at least once), with their 60x80 px photos in `images/`.

- `catalog.csv`: the full catalog's columns (`id,title,gender,master_category,sub_category,article_type,
  base_colour,usage,image,image_224`); `image` is relative to this folder; `image_224` is empty (the larger
  photos are not shipped).
- Source: "Fashion Product Images (Small)", https://www.kaggle.com/datasets/paramaggarwal/fashion-product-images-small
  (Myntra product photos and catalog taxonomy). Licence: MIT, as given on that source page. Titles and taxonomy are
  as published there; there are no prices.
- Made by `python scripts/make_demo_catalog.py --size {n} --seed {seed}` from the full catalog (seeded selection:
  reproducible). `python manage.py fetch-data fashion-product-images` downloads the full one (README, "Use the full
  dataset").

It has no street photos and no outfit sets: street-to-shop queries made from it are synthetic.
"""


def select_rows(rows: list[dict[str, str]], size: int, seed: int) -> list[dict[str, str]]:
    """Every article type at least once, then a seeded random fill to size; sorted by id like the full catalog."""
    rng = random.Random(seed)
    order = list(range(len(rows)))
    rng.shuffle(order)
    chosen: dict[int, None] = {}
    seen_types: set[str] = set()
    for i in order:
        kind = rows[i]["article_type"]
        if kind not in seen_types:
            seen_types.add(kind)
            chosen[i] = None
    for i in order:
        if len(chosen) >= size:
            break
        chosen.setdefault(i, None)
    return sorted((rows[i] for i in chosen), key=lambda r: int(r["id"]))


def write_demo_catalog(source: Path, dest: Path, size: int, seed: int) -> int:
    """Write dest (catalog.csv, images/, README.md) crash-safely; returns the number of products."""
    with (source / "catalog.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = [r for r in reader if (source / r["image"]).is_file()]
    picked = select_rows(rows, size, seed)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        (tmp / "images").mkdir()
        with (tmp / "catalog.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            for row in picked:
                shutil.copyfile(source / row["image"], tmp / row["image"])
                writer.writerow({**row, "image_224": ""} if "image_224" in row else row)
        all_types = len({r["article_type"] for r in rows})
        types = len({r["article_type"] for r in picked})
        (tmp / "README.md").write_text(README.format(n=len(picked), types=types, all_types=all_types, seed=seed))
        old = dest.with_name(f".{dest.name}.old")
        if dest.exists():
            shutil.rmtree(old, ignore_errors=True)
            dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(picked)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="full catalog folder (catalog.csv)")
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    parser.add_argument("--size", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=21)
    args = parser.parse_args(argv)
    if not (args.source / "catalog.csv").is_file():
        print(f"error: no catalog.csv in {args.source}", file=sys.stderr)
        return 2
    n = write_demo_catalog(args.source, args.dest, args.size, args.seed)
    print(f"wrote {n} products to {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
