"""Complete the look in real headless Chromium against a live waitress server (issue 5 acceptance 2):
open an item page, see a complete outfit with one item per complementary slot, click an outfit item to navigate.
Screenshots land in test-artifacts/outfit-*.png."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.outfits.catalog import item_taxonomy
from indexer.outfits.wiring import outfit_rules
from indexer.wiring import open_store
from tests.e2e.conftest import screenshot, start_server, stop_server
from tests.outfit_fixtures import outfit_catalog

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def outfit_server(tmp_path_factory, shared_data, small_embedder):
    fixture = outfit_catalog(tmp_path_factory, small_embedder)
    log = fixture.checkpoint.parent / "outfit-server.log"
    proc, url = start_server(Path(fixture.settings.source), log)
    try:
        yield fixture, url
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def slots_of_items(outfit_server):
    fixture, _ = outfit_server
    rules = outfit_rules(fixture.settings)
    store = open_store(fixture.settings)
    try:
        return {i: rules.slot_of(t) for i, t in item_taxonomy(store).items()}, store.image_path
    finally:
        store.close()


@pytest.fixture
def opage(browser, outfit_server):
    _, url = outfit_server
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(60_000)
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def look_slots(page) -> list[str]:
    return page.locator("#outfit > .outfit-look > .outfit-piece").evaluate_all("els => els.map(e => e.dataset.slot)")


def test_item_page_complete_outfit_then_navigate(opage, slots_of_items):
    slots, _ = slots_of_items
    top = min(i for i, s in slots.items() if s == "topwear")
    opage.goto(f"/items/{top}")
    panel = opage.locator("#outfit")
    panel.wait_for(state="visible")
    assert "Complete the look" in panel.locator("h2").inner_text()
    assert "proxy outfits" in panel.inner_text()
    assert look_slots(opage) == ["bottomwear", "footwear", "bag", "accessory"]  # one per complementary slot
    pieces = opage.locator("#outfit > .outfit-look > .outfit-piece")
    for k in range(pieces.count()):
        piece = pieces.nth(k)
        assert piece.is_visible()
        item_id = int(piece.get_attribute("data-item-id"))
        assert slots[item_id] == piece.get_attribute("data-slot") and item_id != top
    screenshot(opage, "outfit-01-item-page")  # loads the lazy thumbnails first
    assert opage.locator("#outfit > .outfit-look img").evaluate_all("imgs => imgs.every(i => i.naturalWidth > 0)")

    shoe = pieces.nth(1)
    shoe_id = shoe.get_attribute("data-item-id")
    shoe_title = shoe.locator(".outfit-name").inner_text()
    with opage.expect_navigation():
        shoe.locator(".outfit-name").click()
    assert opage.url.endswith(f"/items/{shoe_id}")
    assert opage.locator("h1.item-title").inner_text() == shoe_title
    assert look_slots(opage) == ["topwear", "bottomwear", "bag", "accessory"]
    screenshot(opage, "outfit-02-after-click")

    # The alternatives are there too, behind "More options".
    opage.locator("#outfit summary").click()
    assert opage.locator("#outfit .outfit-alternatives .outfit-piece").count() >= 4


def test_search_page_completes_the_look_for_an_uploaded_photo(opage, slots_of_items, outfit_server):
    slots, _ = slots_of_items
    fixture, _ = outfit_server
    store = open_store(fixture.settings)
    try:
        shoe = min(i for i, s in slots.items() if s == "footwear")
        path = store.image_path(shoe)
    finally:
        store.close()
    opage.goto("/")
    with opage.expect_response(lambda r: r.url.endswith("/api/outfit")) as resp:
        opage.set_input_files("#file-input", path)
    assert resp.value.status == 200
    opage.locator("#outfit").wait_for(state="visible")
    opage.wait_for_function("() => document.querySelectorAll('#outfit-look .outfit-piece').length >= 3")
    pieces = opage.locator("#outfit-look .outfit-piece")
    assert len(set(pieces.evaluate_all("els => els.map(e => e.dataset.slot)"))) == pieces.count()
    screenshot(opage, "outfit-03-search-page")


def test_outfit_panel_fits_a_phone(browser, outfit_server, slots_of_items):
    _, url = outfit_server
    slots, _ = slots_of_items
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True, base_url=url)
    page = context.new_page()
    try:
        top = min(i for i, s in slots.items() if s == "topwear")
        page.goto(f"/items/{top}")
        assert look_slots(page) == ["bottomwear", "footwear", "bag", "accessory"]
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        columns = page.evaluate(
            "getComputedStyle(document.querySelector('#outfit > .outfit-look')).gridTemplateColumns")
        assert len(columns.split()) == 2
        screenshot(page, "outfit-04-phone")
    finally:
        context.close()
