"""Outfit datasets in the Polyvore Outfits format (Vasileva et al., ECCV 2018), read and written.

The real dataset's files, which the proxy outfits (indexer/outfits/proxy.py) are also written as:

* ``polyvore_item_metadata.json``: ``{item_id: {"semantic_category": "tops", "category_id": ..., ...}}``;
* outfits, e.g. ``disjoint/test.json``: ``[{"set_id": "210750761", "items": [{"item_id": "154249722",
  "index": 1}, ...]}, ...]``;
* compatibility questions, e.g. ``compatibility_test.txt``: one outfit per line, ``LABEL SETID_INDEX ...`` with
  label 1 (a real outfit) or 0 (items of other outfits, same categories);
* fill-in-the-blank questions, e.g. ``fill_in_blank_test.json``: ``[{"question": ["SETID_1", ...], "answers":
  ["SETID_4", "OTHER_2", ...], "blank_position": 4}]``; the correct answer is the one from the question's outfit.

Item tokens ``SETID_INDEX`` are resolved through the outfits file. A ``manifest.json`` beside a dataset written by
Lookalike records where it came from; ``"proxy": true`` marks outfits derived from catalog taxonomy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.files import write_atomically

ITEMS_FILE = "polyvore_item_metadata.json"
MANIFEST_FILE = "manifest.json"


class OutfitDataError(ValueError):
    """An outfit or question file that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class FitbQuestion:
    """One fill-in-the-blank question: the outfit's remaining items, the candidates, the correct candidate."""

    set_id: str
    items: tuple[str, ...]
    answers: tuple[str, ...]
    correct: int
    blank_position: int


@dataclass
class OutfitDataset:
    """Items, outfits and the two kinds of questions of one split."""

    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    outfits: dict[str, list[str]] = field(default_factory=dict)
    compatibility: list[tuple[int, list[str]]] = field(default_factory=list)
    fitb: list[FitbQuestion] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def proxy(self) -> bool:
        return bool(self.manifest.get("proxy"))


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise OutfitDataError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise OutfitDataError(f"{what} {str(path)!r} is not valid JSON: {exc}") from None


def read_items(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read ``polyvore_item_metadata.json``: {item_id: metadata}; every entry needs a ``semantic_category``.

    Raises:
        OutfitDataError: Unreadable file or an entry without a semantic category.
    """
    path = Path(path)
    data = _load_json(path, "item metadata")
    if not isinstance(data, dict):
        raise OutfitDataError(f"item metadata {str(path)!r} must be an object {{item_id: metadata}}")
    for item_id, meta in data.items():
        if not isinstance(meta, dict) or not isinstance(meta.get("semantic_category"), str):
            raise OutfitDataError(f"{str(path)!r}: item {item_id!r} has no semantic_category")
    return {str(k): v for k, v in data.items()}


def read_outfits(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read an outfits JSON: {set_id: item ids ordered by their ``index``}.

    Raises:
        OutfitDataError: Unreadable file, missing keys or duplicate set ids.
    """
    path = Path(path)
    data = _load_json(path, "outfits file")
    if not isinstance(data, list):
        raise OutfitDataError(f"outfits file {str(path)!r} must be a list of {{set_id, items}} objects")
    out: dict[str, list[str]] = {}
    for n, outfit in enumerate(data):
        try:
            set_id = str(outfit["set_id"])
            entries = sorted((int(e["index"]), str(e["item_id"])) for e in outfit["items"])
        except (KeyError, TypeError, ValueError):
            raise OutfitDataError(f"{str(path)!r} outfit #{n}: needs set_id and items [{{item_id, index}}]") from None
        if set_id in out:
            raise OutfitDataError(f"{str(path)!r}: duplicate set_id {set_id!r}")
        out[set_id] = [item for _, item in entries]
    return out


def _outfit_index(path: Path) -> dict[str, dict[int, str]]:
    data = _load_json(path, "outfits file")
    return {str(o["set_id"]): {int(e["index"]): str(e["item_id"]) for e in o["items"]} for o in data}


def _resolve(token: str, index: Mapping[str, Mapping[int, str]], where: str) -> tuple[str, str]:
    set_id, sep, pos = str(token).rpartition("_")
    try:
        return set_id, index[set_id][int(pos)]
    except (KeyError, ValueError):
        raise OutfitDataError(f"{where}: item {token!r} is not SETID_INDEX of an outfit in the outfits file") from None


def read_compatibility(path: str | os.PathLike, outfits_path: str | os.PathLike) -> list[tuple[int, list[str]]]:
    """Read compatibility questions (``LABEL SETID_INDEX ...`` lines) as (label, item ids).

    Raises:
        OutfitDataError: Unreadable file, a bad label, or a token not in the outfits file.
    """
    path = Path(path)
    index = _outfit_index(Path(outfits_path))
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise OutfitDataError(f"cannot read compatibility questions {str(path)!r}: {exc.strerror or exc}") from None
    out: list[tuple[int, list[str]]] = []
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        where = f"{path.name} line {n}"
        if parts[0] not in ("0", "1") or len(parts) < 3:
            raise OutfitDataError(f"{where}: expected 'LABEL ITEM ITEM ...' with label 0 or 1, got {line.strip()!r}")
        out.append((int(parts[0]), [_resolve(t, index, where)[1] for t in parts[1:]]))
    return out


def read_fitb(path: str | os.PathLike, outfits_path: str | os.PathLike) -> list[FitbQuestion]:
    """Read fill-in-the-blank questions; the correct answer is the one taken from the question's own outfit.

    Raises:
        OutfitDataError: Unreadable file, bad entries, or not exactly one answer from the question's outfit.
    """
    path = Path(path)
    index = _outfit_index(Path(outfits_path))
    data = _load_json(path, "fill-in-the-blank questions")
    if not isinstance(data, list):
        raise OutfitDataError(f"fill-in-the-blank file {str(path)!r} must be a list of questions")
    out: list[FitbQuestion] = []
    for n, q in enumerate(data):
        where = f"{path.name} question #{n}"
        try:
            question, answers, blank = q["question"], q["answers"], int(q.get("blank_position", 0))
        except (KeyError, TypeError, ValueError):
            raise OutfitDataError(f"{where}: needs 'question' and 'answers' lists") from None
        resolved_q = [_resolve(t, index, where) for t in question]
        resolved_a = [_resolve(t, index, where) for t in answers]
        set_ids = {s for s, _ in resolved_q}
        if len(set_ids) != 1 or len(resolved_a) < 2:
            raise OutfitDataError(f"{where}: question items must come from one outfit, with two or more answers")
        set_id = set_ids.pop()
        correct = [i for i, (s, _) in enumerate(resolved_a) if s == set_id]
        if len(correct) != 1:
            raise OutfitDataError(f"{where}: expected exactly one answer from outfit {set_id}, found {len(correct)}")
        out.append(FitbQuestion(set_id, tuple(i for _, i in resolved_q), tuple(i for _, i in resolved_a),
                                correct[0], blank))
    return out


def question_kind(path: str | os.PathLike) -> str:
    """"fitb" for a JSON fill-in-the-blank file, "compatibility" for a text file of labelled outfits."""
    p = Path(path)
    if p.suffix.lower() == ".json":
        return "fitb"
    if p.suffix.lower() == ".txt":
        return "compatibility"
    raise OutfitDataError(f"cannot tell what {p.name!r} holds: use .txt (compatibility) or .json (fill in the blank)")


def find_items_file(outfits_path: str | os.PathLike) -> Path:
    """``polyvore_item_metadata.json`` beside the outfits file or one folder up (the dataset's layout).

    Raises:
        OutfitDataError: Not found in either place.
    """
    p = Path(outfits_path).resolve()
    for folder in (p.parent, p.parent.parent):
        if (folder / ITEMS_FILE).is_file():
            return folder / ITEMS_FILE
    raise OutfitDataError(f"no {ITEMS_FILE} beside {str(p)!r} or one folder up; pass --items")


def read_manifest(outfits_path: str | os.PathLike) -> dict[str, Any]:
    """The ``manifest.json`` beside an outfits file ({} for datasets Lookalike did not write)."""
    path = Path(outfits_path).resolve().parent / MANIFEST_FILE
    if not path.is_file():
        return {}
    return _load_json(path, "dataset manifest")


def load_dataset(outfits_path: str | os.PathLike, question_paths: list[str | os.PathLike] | tuple = (),
                 items_path: str | os.PathLike | None = None) -> OutfitDataset:
    """Read items, outfits and any number of question files (kinds told apart by extension)."""
    ds = OutfitDataset(items=read_items(items_path or find_items_file(outfits_path)),
                       outfits=read_outfits(outfits_path), manifest=read_manifest(outfits_path))
    for q in question_paths:
        if question_kind(q) == "fitb":
            ds.fitb.extend(read_fitb(q, outfits_path))
        else:
            ds.compatibility.extend(read_compatibility(q, outfits_path))
    return ds


# ---- writing ------------------------------------------------------------------------------------------------

def _write_text(path: Path, text: str) -> None:
    write_atomically(path, lambda f: f.write(text.encode()))


def write_dataset(folder: str | os.PathLike, split: str, ds: OutfitDataset) -> dict[str, Path]:
    """Write a dataset in the Polyvore Outfits layout (each file crash-safely).

    Files: ``polyvore_item_metadata.json``, ``manifest.json``, ``{split}.json``, ``compatibility_{split}.txt``,
    ``fill_in_blank_{split}.json``. Question items are written as SETID_INDEX tokens of the outfits, so every
    item a question names must belong to some outfit.

    Returns:
        {"items", "manifest", "outfits", "compatibility", "fitb"} -> path.

    Raises:
        OutfitDataError: A question names an item that is in no outfit.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    token: dict[str, str] = {}
    for set_id, items in ds.outfits.items():
        for i, item in enumerate(items, 1):
            token.setdefault(item, f"{set_id}_{i}")

    def tok(item: str, set_id: str | None = None) -> str:
        if set_id is not None and item in ds.outfits.get(set_id, []):
            return f"{set_id}_{ds.outfits[set_id].index(item) + 1}"
        if item not in token:
            raise OutfitDataError(f"question item {item!r} is in no outfit")
        return token[item]

    paths = {"items": folder / ITEMS_FILE, "manifest": folder / MANIFEST_FILE, "outfits": folder / f"{split}.json",
             "compatibility": folder / f"compatibility_{split}.txt", "fitb": folder / f"fill_in_blank_{split}.json"}
    _write_text(paths["items"], json.dumps(ds.items, sort_keys=True) + "\n")
    _write_text(paths["manifest"], json.dumps(ds.manifest, indent=2, sort_keys=True) + "\n")
    outfits = [{"set_id": s, "items": [{"item_id": it, "index": i} for i, it in enumerate(items, 1)]}
               for s, items in ds.outfits.items()]
    _write_text(paths["outfits"], json.dumps(outfits) + "\n")
    owner_of = {tuple(members): s for s, members in ds.outfits.items()}
    lines = []
    for label, items in ds.compatibility:
        owner = owner_of.get(tuple(items)) if label else None
        lines.append(" ".join([str(label), *(tok(i, owner) for i in items)]))
    _write_text(paths["compatibility"], "\n".join(lines) + ("\n" if lines else ""))
    fitb = [{"question": [tok(i, q.set_id) for i in q.items],
             "answers": [tok(a, q.set_id) if k == q.correct else tok(a) for k, a in enumerate(q.answers)],
             "blank_position": q.blank_position} for q in ds.fitb]
    _write_text(paths["fitb"], json.dumps(fitb) + "\n")
    return paths
