"""A catalog indexed from a folder outside every configured image root, served and looked at in real Chromium
(issue 21): every result card, the item page and the analytics failure gallery show their pictures, with no
web.image_roots configured; a picture outside every indexed or configured root still answers 404."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import update

from tests.analytics_fixtures import seed_runs
from tests.conftest import index_in_process, write_config
from tests.e2e.conftest import screenshot, start_server, stop_server
from tests.web.test_indexed_roots import _shop_catalog

pytestmark = pytest.mark.browser

SHOP_SIZE = 30


@pytest.fixture(scope="module")
def shop_server(tmp_path_factory, small_embedder):
    """`manage.py serve` over a catalog in <tmp>/shop (CSV + photos/), indexed with no image root configured."""
    from indexer.settings import load_settings
    from indexer.store.tables import CatalogItem
    from indexer.wiring import open_store

    folder = tmp_path_factory.mktemp("outside")
    shop = _shop_catalog(folder / "shop", SHOP_SIZE)
    config = write_config(folder / "cfg", web={"thumb_cache_dir": str(folder / "thumbs")})
    index_in_process(config, shop, small_embedder)
    settings = load_settings(config, env={})
    assert not any((folder / "shop").resolve().is_relative_to(r) for r in settings.image_roots)
    store = open_store(settings)
    try:
        seed_runs(store)  # failure galleries naming the shop's items
        # One item whose picture is moved outside every root, as if its row had been edited by hand.
        outsider = store.get_item_by_external_id("shop-" + _first_id(shop, 1))
        elsewhere = folder / "elsewhere"
        elsewhere.mkdir()
        shutil.copyfile(store.image_path(outsider["id"]), elsewhere / "x.jpg")
        with store.sessions.begin() as s:
            s.execute(update(CatalogItem).where(CatalogItem.id == outsider["id"])
                      .values(image_path=str(elsewhere / "x.jpg")))
    finally:
        store.close()
    proc, url = start_server(config, folder / "server.log")
    try:
        yield url, shop, outsider["id"]
    finally:
        stop_server(proc)


def _first_id(csv_path: Path, index: int) -> str:
    import csv

    with csv_path.open(newline="") as fh:
        return list(csv.DictReader(fh))[index]["id"].removeprefix("shop-")


@pytest.fixture
def shop_page(browser, shop_server):
    url = shop_server[0]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(60_000)
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def _broken_images(page, selector: str) -> list[str]:
    """src of every image under selector that did not load (after forcing lazy images to load)."""
    page.evaluate("() => document.querySelectorAll('img[loading=lazy]').forEach(img => { img.loading = 'eager'; })")
    page.wait_for_function("s => [...document.querySelectorAll(s)].every(img => img.complete)", arg=selector)
    return page.evaluate("s => [...document.querySelectorAll(s)].filter(img => !img.naturalWidth).map(i => i.src)",
                         selector)


def test_outside_catalog_pictures_load_everywhere(shop_page, shop_server):
    page = shop_page
    url, shop, outsider_id = shop_server
    page.goto("/")
    query = sorted((shop.parent / "photos").glob("*.jpg"))[3]
    with page.expect_response(lambda r: r.url.endswith("/api/search")) as resp_info:
        page.set_input_files("#file-input", str(query))
    assert resp_info.value.status == 200
    page.wait_for_function("() => document.querySelectorAll('#results .card').length >= 20 "
                           "&& document.getElementById('spinner').hidden")
    cards = page.locator("#results .card img")
    assert cards.count() >= 20
    ids = page.evaluate("() => [...document.querySelectorAll('#results .card a[href*=\"/items/\"]')]"
                        ".map(a => a.getAttribute('href'))")
    broken = _broken_images(page, "#results .card img")
    # the one item whose picture was moved outside every root is the only card allowed without a picture
    assert all(f"/items/{outsider_id}/" in src for src in broken), broken
    screenshot(page, "outside-01-results")

    item_link = next(h for h in ids if not h.rstrip("/").endswith(f"/items/{outsider_id}"))
    page.goto(item_link)
    assert page.locator("main img").count() >= 2  # the item's picture and its similar items
    broken = _broken_images(page, "main img")
    assert all(f"/items/{outsider_id}/" in src for src in broken), broken
    screenshot(page, "outside-02-item")

    page.goto("/analytics")
    page.locator("#runs a.run-link").first.click()
    page.wait_for_selector("#failures li.failure")
    assert page.locator("#failures .fail-returned img").count() >= 5
    broken = _broken_images(page, "#failures img")
    assert all(f"/items/{outsider_id}/" in src for src in broken), broken
    screenshot(page, "outside-03-failures")

    for path in (f"/items/{outsider_id}/image", f"/items/{outsider_id}/thumb"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + path, timeout=30)
        err.value.close()
        assert err.value.code == 404
