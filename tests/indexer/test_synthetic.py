"""Synthetic street photos: reproducible per (seed, product, view), varied, sized, made from real catalog images."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer.datasets.synthetic import (
    StreetPhotoSynthesizer,
    SyntheticConfig,
    difference,
    product_mask,
    synthesize_street_photo,
    view_rng,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fashion-product-images"


@pytest.fixture(scope="module")
def catalog_images() -> dict[str, Path]:
    if not (SHARED / "catalog.csv").is_file():
        pytest.fail(f"catalog not found at {SHARED}")
    with (SHARED / "catalog.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))[::2000][:12]
    return {r["id"]: SHARED / r["image"] for r in rows}


@pytest.fixture(scope="module")
def synth(catalog_images: dict[str, Path]) -> StreetPhotoSynthesizer:
    def load(pid: str) -> Image.Image:
        with Image.open(catalog_images[pid]) as img:
            return img.convert("RGB")

    return StreetPhotoSynthesizer(load, list(catalog_images), seed=7)


def test_a_view_is_the_same_pixels_every_time_in_any_order(synth: StreetPhotoSynthesizer,
                                                           catalog_images: dict[str, Path]) -> None:
    ids = list(catalog_images)
    first = [np.asarray(synth.view(pid, 1)) for pid in ids[:4]]
    again = [np.asarray(synth.view(pid, 1)) for pid in reversed(ids[:4])][::-1]
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a, b)


def test_views_seeds_and_products_differ(synth: StreetPhotoSynthesizer, catalog_images: dict[str, Path]) -> None:
    pid = next(iter(catalog_images))
    a, b = synth.view(pid, 1), synth.view(pid, 2)
    other_seed = StreetPhotoSynthesizer(synth.load_image, synth.distractor_ids, seed=8).view(pid, 1)
    for x in (b, other_seed):
        if x.size == a.size:
            assert difference(a, x) > 10


def test_output_size_and_mode(synth: StreetPhotoSynthesizer, catalog_images: dict[str, Path]) -> None:
    for i, pid in enumerate(catalog_images):
        img = synth.view(pid, i)
        assert img.mode == "RGB" and max(img.size) == 128 and min(img.size) >= 0.7 * 128
    big = StreetPhotoSynthesizer(synth.load_image, synth.distractor_ids, cfg=SyntheticConfig(size=200))
    assert max(big.view(pid, 0).size) == 200


def test_the_product_stays_the_main_subject() -> None:
    """A magenta product on white stays a large magenta region of every photo despite scenes, light and crops."""
    prod = Image.new("RGB", (60, 80), "white")
    prod.paste((230, 20, 220), (10, 10, 50, 70))
    synth = StreetPhotoSynthesizer(lambda pid: prod, seed=3)
    shares = []
    for v in range(12):
        photo = np.asarray(synth.view("magenta", v), np.int16)
        r, g, b = photo[..., 0], photo[..., 1], photo[..., 2]
        shares.append(((r > g + 50) & (b > g + 50)).mean())
    assert np.median(shares) > 0.15 and min(shares) > 0.03


def test_mask_of_a_product_on_white_keeps_white_parts_inside() -> None:
    img = Image.new("RGB", (40, 60), "white")
    arr = np.asarray(img).copy()
    arr[10:50, 10:30] = (200, 30, 30)  # a red garment ...
    arr[25:35, 15:25] = (255, 255, 255)  # ... with a white logo inside
    mask = np.asarray(product_mask(Image.fromarray(arr))) > 128
    assert mask[30, 20]  # the logo is part of the product
    assert not mask[2, 2] and not mask[55, 35]  # the white background is not
    assert np.asarray(product_mask(Image.new("RGB", (8, 8), "white"))).min() == 255  # all white: keep all


def test_any_input_mode_works_and_rng_is_per_view() -> None:
    prod = Image.new("RGBA", (30, 40), (0, 0, 0, 0))
    prod.paste((0, 120, 0, 255), (5, 5, 25, 35))
    out = synthesize_street_photo(prod.convert("P"), view_rng(0, "x", 0))
    assert out.mode == "RGB"
    assert view_rng(0, "x", 0).random() == view_rng(0, "x", 0).random() != view_rng(0, "x", 1).random()


def test_make_pairs_hard_preset_records_its_generator(tmp_path):
    """`make-pairs synthetic --preset hard`: the garment is small (20-55% of the frame) and the manifest says so."""
    import json

    from click.testing import CliRunner

    from indexer.datasets.cli import make_pairs
    from indexer.settings import DEMO_CATALOG_CSV

    config = tmp_path / "config.toml"
    config.write_text(f'[catalog]\ndefault_csv = "{DEMO_CATALOG_CSV}"\n')
    result = CliRunner().invoke(make_pairs, ["synthetic", "--out", str(tmp_path / "hard"), "--preset", "hard",
                                             "--size", "160", "--limit", "4", "--no-progress", "--config",
                                             str(config)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "hard" / "pairs.json").read_text())
    generator = manifest["generator"]
    assert manifest["synthetic"] is True and manifest["n_pairs"] == 4
    assert (generator["min_product_height"], generator["max_product_height"]) == (0.2, 0.55)
    assert generator["max_jpeg_quality"] == 70 and generator["size"] == 160
