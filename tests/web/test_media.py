"""Item pictures: served from the catalog roots only (no traversal, no symlink escape), cached, thumbnailed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import update

from indexer.store.tables import CatalogItem
from web.pages.media import resolve_in_roots


def test_image_and_thumbnail_have_caching_headers(client, web_settings):
    resp = client.get("/items/1/image")
    assert resp.status_code == 200 and resp.mimetype == "image/jpeg"
    assert resp.headers["Cache-Control"] == f"public, max-age={web_settings.web.cache_max_age_s}"
    etag = resp.headers["ETag"]
    assert resp.headers["Last-Modified"] and resp.headers["X-Content-Type-Options"] == "nosniff"
    again = client.get("/items/1/image", headers={"If-None-Match": etag})
    assert again.status_code == 304 and not again.data

    thumb = client.get("/items/1/thumb")
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    assert thumb.headers["Cache-Control"].startswith("public, max-age=")
    assert client.get("/items/1/thumb", headers={"If-None-Match": thumb.headers["ETag"]}).status_code == 304
    cached = list(Path(web_settings.resolve_path(web_settings.web.thumb_cache_dir)).rglob("*.jpg"))
    assert cached, "thumbnail was not cached on disk"


def test_thumbnail_is_sized_for_the_grid(tmp_path, client, app, web_settings):
    """A large catalog picture gives a thumbnail no larger than web.thumb_size, made once and reused."""
    from web.runtime import runtime

    store = runtime(app).store
    root = web_settings.image_roots[0]
    big = root / "images" / "big-test.png"
    Image.new("RGB", (1200, 1600), (200, 30, 30)).save(big)
    item_id = 2
    original = store.image_path(item_id)
    try:
        with store.sessions.begin() as s:
            s.execute(update(CatalogItem).where(CatalogItem.id == item_id).values(image_path=str(big)))
        resp = client.get(f"/items/{item_id}/thumb")
        assert resp.status_code == 200
        import io

        img = Image.open(io.BytesIO(resp.data))
        assert max(img.size) == web_settings.web.thumb_size and img.size == (192, 256)
        etag = resp.headers["ETag"]
        assert client.get(f"/items/{item_id}/thumb").headers["ETag"] == etag
        # A changed file is a new version: new ETag, new thumbnail.
        Image.new("RGB", (800, 400), (0, 0, 200)).save(big)
        os.utime(big, ns=(1, 2_000_000_000_000_000_000))
        changed = client.get(f"/items/{item_id}/thumb")
        assert changed.headers["ETag"] != etag and Image.open(io.BytesIO(changed.data)).size == (256, 128)
    finally:
        with store.sessions.begin() as s:
            s.execute(update(CatalogItem).where(CatalogItem.id == item_id).values(image_path=original))
        big.unlink()


@pytest.mark.parametrize("url", [
    "/items/../../etc/passwd/image",
    "/items/..%2F..%2Fetc%2Fpasswd/image",
    "/items/1/../../../../etc/passwd",
    "/items/%2e%2e/image",
    "/static/../../../../etc/passwd",
    "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/%2e%2e/%2e%2e/config.toml",
    "/items/1/image/../../../../etc/passwd",
    "/items/1e3/image",
    "/items/-1/image",
    "/items/999999999999999999999999/image",
    "/items/999999/thumb",
])
def test_traversal_urls_get_404(client, url):
    resp = client.get(url)
    assert resp.status_code == 404, (url, resp.status_code)
    assert b"root:" not in resp.data and b"[database]" not in resp.data


@pytest.mark.parametrize("bad_path", ["/etc/passwd", "{root}/../../../../etc/hostname", "{outside}",
                                      "{link}", "{root}/images", "{root}/notes.txt", ""])
def test_paths_from_sql_outside_the_roots_are_never_served(client, app, web_settings, tmp_path, bad_path):
    """Even if a catalog row points outside the image roots (or a symlink does), nothing is served."""
    from web.runtime import runtime

    store = runtime(app).store
    root = web_settings.image_roots[0]
    outside = tmp_path / "secret.jpg"
    outside.write_bytes((root / "images").iterdir().__next__().read_bytes())
    link = root / "images" / "escape.jpg"
    link.unlink(missing_ok=True)
    link.symlink_to(outside)
    (root / "notes.txt").write_text("not an image")
    path = bad_path.format(root=root, outside=outside, link=link)
    item_id = 3
    original = store.image_path(item_id)
    try:
        with store.sessions.begin() as s:
            s.execute(update(CatalogItem).where(CatalogItem.id == item_id).values(image_path=path))
        for kind in ("image", "thumb"):
            resp = client.get(f"/items/{item_id}/{kind}")
            assert resp.status_code == 404, (path, kind)
        assert resolve_in_roots(path, web_settings.image_roots) is None
    finally:
        with store.sessions.begin() as s:
            s.execute(update(CatalogItem).where(CatalogItem.id == item_id).values(image_path=original))
        link.unlink()
        (root / "notes.txt").unlink()
