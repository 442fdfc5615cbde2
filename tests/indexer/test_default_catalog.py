"""The catalog `index` imports when given none (configured > ../shared > fetched > the committed demo catalog), and
the demo catalog itself: complete, small, reproducible from its script."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

import indexer.settings as settings_module
from indexer.settings import DEMO_CATALOG_CSV, REPO_DIR, DefaultCatalog, load_settings
from tests.conftest import CATALOG_CSV


def _config(tmp_path: Path, default_csv: str | None = None) -> Path:
    path = tmp_path / "config.toml"
    path.write_text("" if default_csv is None else f'[catalog]\ndefault_csv = "{default_csv}"\n')
    return path


def test_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared, demo = tmp_path / "shared" / "catalog.csv", tmp_path / "demo" / "catalog.csv"
    fetched = tmp_path / "data" / "fashion-product-images"  # fetch-data's default, beside the config file
    monkeypatch.setattr(settings_module, "SHARED_CATALOG_CSV", shared)
    monkeypatch.setattr(settings_module, "DEMO_CATALOG_CSV", demo)
    mine = tmp_path / "mine" / "catalog.csv"
    settings = load_settings(_config(tmp_path, str(mine)), env={})
    assert settings.default_catalog == DefaultCatalog(mine, "missing")
    for path in (demo, fetched / "catalog.csv", shared, mine):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("id,image\n")
    for expected, kind in ((mine, "configured"), (shared, "shared"), (fetched / "catalog.csv", "fetched"),
                           (demo, "demo")):
        found = settings.default_catalog
        assert found == DefaultCatalog(expected, kind) and settings.default_csv == expected
        assert settings.image_roots == (expected.parent,)  # pictures of the default catalog are served
        expected.unlink()
    env = {"LOOKALIKE_WEB__IMAGE_ROOTS": str(tmp_path / "pics")}
    assert load_settings(_config(tmp_path), env=env).image_roots == (tmp_path / "pics",)


def test_index_says_which_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    from indexer.pipeline.cli import catalog_note

    catalog_note(DefaultCatalog(DEMO_CATALOG_CSV, "demo"))
    err = capsys.readouterr().err
    assert f"indexing the demo catalog committed in the repository: {DEMO_CATALOG_CSV}" in err
    assert "fetch-data fashion-product-images" in err


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def test_demo_catalog_is_complete_and_small() -> None:
    folder = DEMO_CATALOG_CSV.parent
    fields, rows = _rows(DEMO_CATALOG_CSV)
    assert fields == ["id", "title", "gender", "master_category", "sub_category", "article_type", "base_colour",
                      "usage", "image", "image_224"]
    assert 1000 <= len(rows) <= 1500 and len({r["id"] for r in rows}) == len(rows)
    assert all((folder / r["image"]).is_file() and not r["image_224"] for r in rows)
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < 5_000_000
    readme = (folder / "README.md").read_text()
    assert "MIT" in readme and "Fashion Product Images (Small)" in readme
    types = {r["article_type"] for r in rows}
    if CATALOG_CSV.is_file():
        assert types == {r["article_type"] for r in _rows(CATALOG_CSV)[1]}  # every article type at least once
    else:
        assert len(types) > 100


def test_demo_catalog_is_reproducible(tmp_path: Path) -> None:
    if not CATALOG_CSV.is_file():
        pytest.skip(f"the full catalog is not at {CATALOG_CSV}: nothing to regenerate the demo catalog from")
    spec = importlib.util.spec_from_file_location("make_demo_catalog", REPO_DIR / "scripts" / "make_demo_catalog.py")
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    fields, rows = _rows(DEMO_CATALOG_CSV)
    n = script.write_demo_catalog(CATALOG_CSV.parent, tmp_path / "demo", len(rows), 21)
    assert n == len(rows)
    assert (tmp_path / "demo" / "catalog.csv").read_bytes() == DEMO_CATALOG_CSV.read_bytes()
    assert (tmp_path / "demo" / "README.md").read_text() == (DEMO_CATALOG_CSV.parent / "README.md").read_text()
