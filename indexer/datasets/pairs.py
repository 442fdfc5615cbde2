"""Street-to-shop pair sources: small adapters that turn each dataset's annotation files into one shape.

Every adapter returns a ``PairSet``: query photos (a street / consumer photo, the catalog item it shows, an
optional box around the item) and a gallery (shop images, each belonging to one item). ``write_pair_set`` stores
it as two CSV files that ``manage.py evaluate street2shop`` reads:

- ``pairs.csv``: ``query_image,item_id,x0,y0,x1,y1[,label]`` - the box in pixels of the query image (empty = the
  whole image);
- ``gallery.csv``: ``id,image,item_id[,label]`` - a catalog-style CSV; a query's relevant gallery rows are those
  with its ``item_id``.

Image paths in both files are relative to the file's own folder (or absolute).

Sources: DeepFashion Consumer-to-shop and In-shop retrieval benchmarks (their ``Eval/list_eval_partition.txt`` and
``Anno/list_bbox_*.txt`` files), Street2Shop ("Where to buy it") ``*_pairs_<category>.json`` +
``retrieval_<category>.json``, and the generic pairs CSV. Synthetic pairs made from a catalog live in
``indexer/datasets/synthetic.py`` and are written by ``write_synthetic_pairs`` below.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from engine.files import write_atomically

Box = tuple[float, float, float, float]
PAIRS_HEADER = ("query_image", "item_id", "x0", "y0", "x1", "y1")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")

# The manifest make-pairs writes beside its CSVs (what was sampled, seeds, sizes; SYNTHETIC flag).
PAIRS_MANIFEST = "pairs.json"


class PairSourceError(ValueError):
    """Annotation files that cannot be read as the named format; the message names the file and line."""


@dataclass(frozen=True)
class QueryPair:
    """A query photo and the item it shows.

    Attributes:
        query_image: Path of the photo.
        item_id: The item's id (matches ``GalleryImage.item_id``).
        bbox: (x0, y0, x1, y1) in pixels of the photo around the item, or None for the whole photo.
        label: Optional category, for per-label breakdowns.
    """

    query_image: Path
    item_id: str
    bbox: Box | None = None
    label: str = ""


@dataclass(frozen=True)
class GalleryImage:
    """A shop image of one item. ``image_id`` is unique within a gallery; several images may share an item."""

    image_id: str
    image: Path
    item_id: str
    label: str = ""


@dataclass
class PairSet:
    """Queries and gallery of one street-to-shop benchmark, plus the rows that could not be used."""

    source: str
    pairs: list[QueryPair] = field(default_factory=list)
    gallery: list[GalleryImage] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def without_orphans(self) -> PairSet:
        """Drop queries whose item has no gallery image (noted in ``problems``)."""
        items = {g.item_id for g in self.gallery}
        kept = [p for p in self.pairs if p.item_id in items]
        dropped = len(self.pairs) - len(kept)
        problems = list(self.problems)
        if dropped:
            problems.append(f"{dropped} queries dropped: their item has no gallery image")
        return PairSet(self.source, kept, list(self.gallery), problems)


# ---- shared helpers ---------------------------------------------------------------------------------------------

def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise PairSourceError(f"cannot read {path}: {exc.strerror or exc}") from None


def _deepfashion_table(path: Path, min_fields: int) -> list[tuple[int, list[str]]]:
    """Rows of a DeepFashion list file: line 1 = count, line 2 = column names, then whitespace-separated fields.

    Returns:
        (line number, fields) for each data row.
    """
    lines = _read_lines(path)
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise PairSourceError(f"{path}: expected a DeepFashion list file (a count on line 1, names on line 2)")
    rows = []
    for n, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < min_fields:
            raise PairSourceError(f"{path} line {n}: expected at least {min_fields} fields, got {len(fields)}")
        rows.append((n, fields))
    declared = int(lines[0].strip())
    if declared != len(rows):
        raise PairSourceError(f"{path}: line 1 declares {declared} rows but the file has {len(rows)}")
    return rows


def _images_root(root: Path) -> Path:
    """DeepFashion's annotation paths start with ``img/``; the zip unpacks to ``Img/img``."""
    for cand in (root / "Img", root / "img_root"):
        if (cand / "img").is_dir():
            return cand
    return root


def _read_bboxes(path: Path, type_field: int = 1) -> dict[str, tuple[Box, str]]:
    """{image name: (box, clothes type)} from a DeepFashion bbox list; the box is the last four fields."""
    if not path.is_file():
        return {}
    out = {}
    for n, fields in _deepfashion_table(path, 5):
        try:
            box = tuple(float(v) for v in fields[-4:])
        except ValueError:
            raise PairSourceError(f"{path} line {n}: bbox fields are not numbers: {fields[-4:]}") from None
        out[fields[0]] = (box, fields[type_field] if len(fields) > 5 else "")
    return out


CLOTHES_TYPES = {"1": "upper-body", "2": "lower-body", "3": "full-body"}


# ---- DeepFashion ------------------------------------------------------------------------------------------------

def read_deepfashion_consumer2shop(root: str | os.PathLike, partitions: Sequence[str] = ("test",)) -> PairSet:
    """DeepFashion Consumer-to-shop Clothes Retrieval.

    Reads ``Eval/list_eval_partition.txt`` (``<consumer image> <shop image> <item id> <status>``) and, when
    present, ``Anno/list_bbox_consumer2shop.txt`` (``<image> <clothes type> <source type> x_1 y_1 x_2 y_2``) for
    the consumer photos' boxes and the clothes type used as label.

    Args:
        root: The benchmark folder (holding Eval/, Anno/ and Img/img/ or img/).
        partitions: Evaluation statuses to take ("train", "val", "test").

    Returns:
        One query per distinct consumer photo, and every shop image of the same partitions as the gallery
        (the benchmark's protocol uses the shop images of val + test as gallery: pass both partitions for that).
    """
    root = Path(root)
    part_file = root / "Eval" / "list_eval_partition.txt"
    boxes = _read_bboxes(root / "Anno" / "list_bbox_consumer2shop.txt")
    images = _images_root(root)
    wanted = set(partitions)
    out = PairSet(f"deepfashion-consumer2shop:{','.join(partitions)}")
    seen_q: set[str] = set()
    seen_g: set[str] = set()
    for _, fields in _deepfashion_table(part_file, 4):
        consumer, shop, item, status = fields[:4]
        if status not in wanted:
            continue
        box, ctype = boxes.get(consumer, (None, ""))
        label = CLOTHES_TYPES.get(ctype, ctype)
        if consumer not in seen_q:
            seen_q.add(consumer)
            out.pairs.append(QueryPair(images / consumer, item, box, label))
        if shop not in seen_g:
            seen_g.add(shop)
            shop_label = CLOTHES_TYPES.get(boxes.get(shop, (None, ""))[1], label)
            out.gallery.append(GalleryImage(shop, images / shop, item, shop_label))
    return out.without_orphans()


def read_deepfashion_inshop(root: str | os.PathLike, partition: str = "test") -> PairSet:
    """DeepFashion In-shop Clothes Retrieval.

    Reads ``Eval/list_eval_partition.txt`` (``<image> <item id> <status>``, status train / query / gallery) and,
    when present, ``Anno/list_bbox_inshop.txt`` (``<image> <clothes type> <pose type> x_1 y_1 x_2 y_2``).

    Args:
        root: The benchmark folder.
        partition: "test" = the benchmark protocol (status "query" images against status "gallery" images);
            "train" = within the training items, each item's first image (by name) is the gallery image and its
            other images are queries.
    """
    root = Path(root)
    rows = _deepfashion_table(root / "Eval" / "list_eval_partition.txt", 3)
    boxes = _read_bboxes(root / "Anno" / "list_bbox_inshop.txt")
    images = _images_root(root)
    out = PairSet(f"deepfashion-inshop:{partition}")

    def label_of(name: str) -> str:
        ctype = boxes.get(name, (None, ""))[1]
        return CLOTHES_TYPES.get(ctype, ctype)

    if partition == "test":
        for _, (name, item, status, *_) in rows:
            if status == "query":
                out.pairs.append(QueryPair(images / name, item, boxes.get(name, (None, ""))[0], label_of(name)))
            elif status == "gallery":
                out.gallery.append(GalleryImage(name, images / name, item, label_of(name)))
    elif partition == "train":
        by_item: dict[str, list[str]] = {}
        for _, (name, item, status, *_) in rows:
            if status == "train":
                by_item.setdefault(item, []).append(name)
        for item, names in by_item.items():
            first, *rest = sorted(names)
            out.gallery.append(GalleryImage(first, images / first, item, label_of(first)))
            out.pairs += [QueryPair(images / n, item, boxes.get(n, (None, ""))[0], label_of(n)) for n in rest]
    else:
        raise PairSourceError(f"in-shop partition must be 'test' or 'train', not {partition!r}")
    return out.without_orphans()


# ---- Street2Shop ------------------------------------------------------------------------------------------------

def _load_json_list(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PairSourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise PairSourceError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise PairSourceError(f"{path}: expected a JSON list of objects")
    return data


def _photo_finder(images_dir: Path) -> Callable[[int], Path | None]:
    """Street2Shop photos are stored by id, zero-padded to 9 digits by the usual downloaders, any extension."""
    by_stem: dict[str, Path] = {}
    if images_dir.is_dir():
        for entry in os.scandir(images_dir):
            stem, ext = os.path.splitext(entry.name)
            if ext.lower() in IMAGE_SUFFIXES:
                by_stem.setdefault(stem, Path(entry.path))

    def find(photo_id: int) -> Path | None:
        return by_stem.get(f"{photo_id:09d}") or by_stem.get(str(photo_id))

    return find


def read_street2shop(meta_dir: str | os.PathLike, images_dir: str | os.PathLike,
                     categories: Iterable[str] | None = None, split: str = "test") -> PairSet:
    """Street2Shop ("Where to buy it", Kiapour et al. 2015) retrieval annotations.

    Reads, for each category, ``<split>_pairs_<category>.json`` (``[{"photo": id, "product": id, "bbox":
    {"left", "top", "width", "height"}}]``: street photos with the product's box) and ``retrieval_<category>.json``
    (``[{"photo": id, "product": id}]``: shop photos of each product). Photos are looked up in ``images_dir`` by
    id (``000012345.jpg`` or ``12345.jpg``, any common extension); missing photos are listed in ``problems``.

    Args:
        meta_dir: Folder of the JSON files.
        images_dir: Folder of the downloaded photos.
        categories: e.g. ["dresses", "skirts"]; None = every category with a ``<split>_pairs_*.json`` file.
        split: "train" or "test".
    """
    meta = Path(meta_dir)
    find = _photo_finder(Path(images_dir))
    if categories is None:
        prefix = f"{split}_pairs_"
        categories = sorted(p.stem[len(prefix):] for p in meta.glob(f"{prefix}*.json"))
    categories = list(categories)
    if not categories:
        raise PairSourceError(f"no {split}_pairs_<category>.json files in {meta}")
    out = PairSet(f"street2shop:{split}:{','.join(categories)}")
    missing = 0
    for cat in categories:
        seen_shop: set[int] = set()
        for rec in _load_json_list(meta / f"retrieval_{cat}.json"):
            photo, product = int(rec["photo"]), str(rec["product"])
            if photo in seen_shop:
                continue
            seen_shop.add(photo)
            path = find(photo)
            if path is None:
                missing += 1
                continue
            out.gallery.append(GalleryImage(f"{cat}/{photo}", path, f"{cat}/{product}", cat))
        for n, rec in enumerate(_load_json_list(meta / f"{split}_pairs_{cat}.json")):
            try:
                photo, product = int(rec["photo"]), str(rec["product"])
                b = rec.get("bbox")
                box = None if not b else (float(b["left"]), float(b["top"]), float(b["left"]) + float(b["width"]),
                                          float(b["top"]) + float(b["height"]))
            except (KeyError, TypeError, ValueError) as exc:
                out.problems.append(f"{split}_pairs_{cat}.json entry {n}: {exc!r}")
                continue
            path = find(photo)
            if path is None:
                missing += 1
                continue
            out.pairs.append(QueryPair(path, f"{cat}/{product}", box, cat))
    if missing:
        out.problems.append(f"{missing} photos not found in {images_dir}")
    return out.without_orphans()


# ---- generic CSV ------------------------------------------------------------------------------------------------

def _resolve(value: str, root: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else root / p


def _csv_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise PairSourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    rows = [(n, {k: (v or "").strip() for k, v in row.items() if k is not None})
            for n, row in enumerate(reader, start=2)]
    return header, rows


def read_pairs_csv(path: str | os.PathLike, images_root: str | os.PathLike | None = None,
                   label_column: str = "label") -> tuple[list[QueryPair], list[str]]:
    """The generic pairs CSV: ``query_image,item_id[,x0,y0,x1,y1][,<label column>]``, box in pixels.

    Args:
        path: The CSV file.
        images_root: Folder relative image paths are resolved against (default: the CSV's folder).
        label_column: Optional column used as the per-label breakdown key.

    Returns:
        (pairs, problems): rows with an empty field, a bad box or a missing file are reported by row number.

    Raises:
        PairSourceError: Unreadable file or no query_image / item_id column.
    """
    path = Path(path)
    root = Path(images_root) if images_root else path.parent
    header, rows = _csv_rows(path)
    if not {"query_image", "item_id"} <= set(header):
        raise PairSourceError(f"{path}: needs columns query_image,item_id (optionally x0,y0,x1,y1); got {header}")
    has_box = {"x0", "y0", "x1", "y1"} <= set(header)
    pairs, problems = [], []
    for n, row in rows:
        if not row.get("query_image") or not row.get("item_id"):
            problems.append(f"row {n}: empty query_image or item_id")
            continue
        box = None
        if has_box and any(row.get(c) for c in ("x0", "y0", "x1", "y1")):
            try:
                box = tuple(float(row[c]) for c in ("x0", "y0", "x1", "y1"))
            except ValueError:
                problems.append(f"row {n}: box values are not numbers")
                continue
            if not (box[2] > box[0] and box[3] > box[1]):
                problems.append(f"row {n}: box must have x1 > x0 and y1 > y0, got {box}")
                continue
        image = _resolve(row["query_image"], root)
        if not image.is_file():
            problems.append(f"row {n}: query image not found: {row['query_image']}")
            continue
        pairs.append(QueryPair(image, row["item_id"], box, row.get(label_column, "")))
    return pairs, problems


def read_gallery_csv(path: str | os.PathLike, images_root: str | os.PathLike | None = None,
                     label_column: str = "label") -> tuple[list[GalleryImage], list[str]]:
    """A gallery CSV: catalog-style ``id,image`` plus optional ``item_id`` (default: the id) and a label column.

    Returns:
        (gallery, problems); rows with an empty or duplicate id or a missing image are reported by row number.

    Raises:
        PairSourceError: Unreadable file or no id / image column.
    """
    path = Path(path)
    root = Path(images_root) if images_root else path.parent
    header, rows = _csv_rows(path)
    if not {"id", "image"} <= set(header):
        raise PairSourceError(f"{path}: a gallery CSV needs columns id,image (optionally item_id); got {header}")
    out, problems, seen = [], [], set()
    for n, row in rows:
        gid = row.get("id", "")
        if not gid or not row.get("image"):
            problems.append(f"row {n}: empty id or image")
            continue
        if gid in seen:
            problems.append(f"row {n}: duplicate id {gid} (first kept)")
            continue
        image = _resolve(row["image"], root)
        if not image.is_file():
            problems.append(f"row {n}: image not found: {row['image']}")
            continue
        seen.add(gid)
        out.append(GalleryImage(gid, image, row.get("item_id") or gid, row.get(label_column, "")))
    return out, problems


def read_pair_set(pairs_csv: str | os.PathLike, gallery_csv: str | os.PathLike,
                  images_root: str | os.PathLike | None = None, label_column: str = "label") -> PairSet:
    """Read a pairs CSV and a gallery CSV (as written by ``write_pair_set``) into a PairSet."""
    pairs, p1 = read_pairs_csv(pairs_csv, images_root, label_column)
    gallery, p2 = read_gallery_csv(gallery_csv, images_root, label_column)
    return PairSet(f"csv:{pairs_csv}", pairs, gallery, [f"pairs: {p}" for p in p1] + [f"gallery: {p}" for p in p2])


def _relative(path: Path, folder: Path) -> str:
    try:
        return os.path.relpath(path, folder)
    except ValueError:  # another drive on Windows
        return str(path)


def _fmt(v: float) -> str:
    return f"{v:g}"


def write_pair_set(pair_set: PairSet, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``pairs.csv`` and ``gallery.csv`` into ``out_dir`` (crash-safely), image paths relative to it.

    Returns:
        (pairs.csv path, gallery.csv path).
    """
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*PAIRS_HEADER, "label"])
    for p in pair_set.pairs:
        box = [_fmt(v) for v in p.bbox] if p.bbox else ["", "", "", ""]
        w.writerow([_relative(Path(p.query_image).resolve(), out), p.item_id, *box, p.label])
    pairs_path = out / "pairs.csv"
    pairs_bytes = buf.getvalue().encode()
    write_atomically(pairs_path, lambda f: f.write(pairs_bytes))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "image", "item_id", "label"])
    for g in pair_set.gallery:
        w.writerow([g.image_id, _relative(Path(g.image).resolve(), out), g.item_id, g.label])
    gallery_path = out / "gallery.csv"
    gallery_bytes = buf.getvalue().encode()
    write_atomically(gallery_path, lambda f: f.write(gallery_bytes))
    return pairs_path, gallery_path


def crop_query(img: Image.Image, bbox: Box | None) -> Image.Image:
    """Crop a query photo to its box (pixels, clipped to the image); the whole photo when there is no box or the
    clipped box is empty."""
    if bbox is None:
        return img
    w, h = img.size
    x0, y0 = max(0, int(bbox[0])), max(0, int(bbox[1]))
    x1, y1 = min(w, int(round(bbox[2]))), min(h, int(round(bbox[3])))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return img
    return img.crop((x0, y0, x1, y1))


def read_pairs_manifest(pairs_csv: str | os.PathLike) -> dict[str, Any]:
    """The ``pairs.json`` that ``make-pairs`` writes beside its CSVs ({} when absent or unreadable)."""
    path = Path(pairs_csv).parent / PAIRS_MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
