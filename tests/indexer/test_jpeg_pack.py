"""scripts/jpeg_pack.py: a catalog (CSV + JPEGs) packed with each distinct JPEG header stored once, and unpacked
byte for byte; only the kept splits travel, and a damaged pack is refused."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO

SPLITS = {"1": "train", "2": "train", "3": "val", "4": "test", "5": "train", "6": "test", "7": "val"}


@pytest.fixture(scope="module")
def jpeg_pack() -> Iterator[ModuleType]:
    """The script, imported from its file (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("jpeg_pack", REPO / "scripts" / "jpeg_pack.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # what importing it by name would do (dataclasses and pickling need it)
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    """7 products, small real JPEGs of three encodings (two baseline qualities and a progressive one)."""
    root = tmp_path / "src"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    encodings = [{"quality": 50}, {"quality": 90}, {"quality": 75, "progressive": True}]
    rows = []
    for i, pid in enumerate(SPLITS):
        pixels = rng.integers(0, 256, (80, 60, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"{pid}.jpg", "JPEG", **encodings[i % 3])
        rows.append({"id": pid, "name": f"product, \"{pid}\"", "image": f"images/{pid}.jpg"})
    out = root / "catalog.csv"
    with out.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "name", "image"])
        w.writeheader()
        w.writerows(rows)
    with (root / "splits.csv").open("w", newline="") as fh:
        fh.write("id,split\n" + "".join(f"{pid},{split}\n" for pid, split in SPLITS.items()))
    return out


def test_pack_then_unpack_gives_back_the_kept_files_byte_for_byte(jpeg_pack: ModuleType, catalog: Path,
                                                                  tmp_path: Path) -> None:
    pack_file = tmp_path / "catalog.pack"
    info = jpeg_pack.pack(catalog, catalog.parent / "splits.csv", {"train", "val"}, pack_file)
    kept = [pid for pid, split in SPLITS.items() if split in ("train", "val")]
    assert info["files"] == len(kept) and info["headers"] == 3  # one header per encoding, each stored once
    assert info["bytes"] == pack_file.stat().st_size and not pack_file.with_suffix(".pack.tmp").exists()

    dest = tmp_path / "dest"
    result = jpeg_pack.unpack(pack_file, dest)
    assert result == {"files": len(kept), "catalog": str(dest / "catalog.csv")}
    assert (dest / "catalog.csv").read_bytes() == catalog.read_bytes()  # the CSV travels whole, test rows too
    for pid in kept:
        assert (dest / "images" / f"{pid}.jpg").read_bytes() == (catalog.parent / "images" / f"{pid}.jpg").read_bytes()
    assert sorted(p.name for p in (dest / "images").iterdir()) == sorted(f"{pid}.jpg" for pid in kept)
    assert not any((dest / "images" / f"{pid}.jpg").exists() for pid, s in SPLITS.items() if s == "test")


def test_without_splits_every_row_is_packed(jpeg_pack: ModuleType, catalog: Path, tmp_path: Path) -> None:
    info = jpeg_pack.pack(catalog, None, {"train"}, tmp_path / "all.pack")
    assert info["files"] == len(SPLITS)
    jpeg_pack.unpack(tmp_path / "all.pack", tmp_path / "dest")
    for pid in SPLITS:
        assert (tmp_path / "dest" / "images" / f"{pid}.jpg").read_bytes() == \
            (catalog.parent / "images" / f"{pid}.jpg").read_bytes()


def test_a_damaged_pack_is_refused(jpeg_pack: ModuleType, catalog: Path, tmp_path: Path) -> None:
    pack_file = tmp_path / "catalog.pack"
    jpeg_pack.pack(catalog, catalog.parent / "splits.csv", {"train", "val"}, pack_file)
    data = bytearray(pack_file.read_bytes())
    data[-100] ^= 0x01  # inside the last file's entropy-coded scan data
    pack_file.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        jpeg_pack.unpack(pack_file, tmp_path / "dest")
    pack_file.write_bytes(bytes(data[:-1]))  # cut short
    with pytest.raises(ValueError, match="checksum"):
        jpeg_pack.unpack(pack_file, tmp_path / "dest2")
    # Damage before the images (the gzipped index, a pack cut inside its header) is a ValueError too.
    data[-100] ^= 0x01
    data[8 + 8 + 30] ^= 0xFF  # inside the compressed index's deflate stream
    pack_file.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="damaged"):
        jpeg_pack.unpack(pack_file, tmp_path / "dest3")
    pack_file.write_bytes(jpeg_pack.MAGIC + b"\x00\x01")
    with pytest.raises(ValueError, match="damaged"):
        jpeg_pack.unpack(pack_file, tmp_path / "dest4")


def test_main_round_trip_and_one_line_errors(jpeg_pack: ModuleType, catalog: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    pack_file = tmp_path / "c.pack"
    assert jpeg_pack.main(["pack", "--catalog", str(catalog), "--splits", str(catalog.parent / "splits.csv"),
                           "--keep", "train", "--out", str(pack_file)]) == 0
    assert json.loads(capsys.readouterr().out)["files"] == 3
    assert jpeg_pack.main(["unpack", str(pack_file), str(tmp_path / "dest")]) == 0
    assert sorted(p.stem for p in (tmp_path / "dest" / "images").iterdir()) == ["1", "2", "5"]
    capsys.readouterr()

    not_a_pack = tmp_path / "notes.txt"
    not_a_pack.write_text("hello, not a pack\n")
    assert jpeg_pack.main(["unpack", str(not_a_pack), str(tmp_path / "dest3")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a pack" in err and len(err.splitlines()) == 1
    assert jpeg_pack.main(["unpack", str(tmp_path / "missing.pack"), str(tmp_path / "dest4")]) == 1
    assert capsys.readouterr().err.startswith("error: ")
