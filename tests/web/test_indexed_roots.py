"""Pictures of a catalog indexed from anywhere are served without configuring web.image_roots (its root is recorded
in SQL when indexing); a path outside every indexed or configured root still gets 404; `manage.py check` warns."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import update

from indexer.settings import DEMO_CATALOG_CSV
from tests.conftest import index_in_process, write_config
from tests.web.conftest import make_test_app


def _shop_catalog(folder: Path, n: int = 6) -> Path:
    """A catalog outside every configured root: n demo products, images in folder/photos, CSV in folder."""
    (folder / "photos").mkdir(parents=True)
    with DEMO_CATALOG_CSV.open(newline="") as fh:
        rows = list(csv.DictReader(fh))[:n]
    out = folder / "catalog.csv"
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "image", "title", "article_type"])
        writer.writeheader()
        for r in rows:
            shutil.copyfile(DEMO_CATALOG_CSV.parent / r["image"], folder / "photos" / f"{r['id']}.jpg")
            writer.writerow({"id": f"shop-{r['id']}", "image": f"photos/{r['id']}.jpg", "title": r["title"],
                             "article_type": r["article_type"]})
    return out


def test_indexed_catalog_is_served_and_outside_paths_are_not(tmp_path: Path, small_embedder) -> None:
    from indexer.pipeline.cli import check_cmd
    from indexer.settings import load_settings
    from indexer.store.tables import CatalogItem
    from indexer.wiring import open_store

    shop = _shop_catalog(tmp_path / "shop")
    config = write_config(tmp_path / "cfg", web={"thumb_cache_dir": str(tmp_path / "thumbs")})
    index_in_process(config, shop, small_embedder)
    settings = load_settings(config, env={})
    assert not any((tmp_path / "shop").resolve().is_relative_to(r) for r in settings.image_roots)
    store = open_store(settings)
    try:
        assert [s["images_root"] for s in store.catalog_sources()] == [str((tmp_path / "shop").resolve())]
        with shop.open(newline="") as fh:
            ids = [r["id"] for r in csv.DictReader(fh)]
        first, other = store.get_item_by_external_id(ids[0]), store.get_item_by_external_id(ids[1])
        assert first is not None and other is not None
        item_id, first_path = first["id"], store.image_path(first["id"])
        # another item's row pointing at a real picture outside every root (as if a row was edited by hand)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        shutil.copyfile(first_path, elsewhere / "x.jpg")
        with store.sessions.begin() as s:
            s.execute(update(CatalogItem).where(CatalogItem.id == other["id"])
                      .values(image_path=str(elsewhere / "x.jpg")))
    finally:
        store.close()

    app = make_test_app(settings, small_embedder)
    client = app.test_client()
    resp = client.get(f"/items/{item_id}/image")
    assert resp.status_code == 200 and resp.data == Path(first_path).read_bytes()
    resp.close()
    resp = client.get(f"/items/{item_id}/thumb")
    assert resp.status_code == 200 and resp.mimetype == "image/jpeg"
    resp.close()
    for kind in ("image", "thumb"):
        resp = client.get(f"/items/{other['id']}/{kind}")
        assert resp.status_code == 404
        resp.close()
    page = client.get("/")
    assert page.status_code == 200 and f"6 items from {shop.resolve()}" in page.get_data(as_text=True)

    result = CliRunner().invoke(check_cmd, ["--config", str(config), "--json"])
    data = json.loads(result.output)
    assert data["unservable_images"]["count"] == 1
    assert data["unservable_images"]["examples"] == [{"id": other["external_id"], "image": str(elsewhere / "x.jpg")}]
    result = CliRunner().invoke(check_cmd, ["--config", str(config)])
    assert "warning: 1 item(s) have a picture outside every servable image root" in result.output
