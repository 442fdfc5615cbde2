"""The shopper's flows in real headless Chromium against the live waitress server.

Screenshots land in test-artifacts/ (look at them: layout regressions do not fail assertions).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from tests.e2e.conftest import screenshot

pytestmark = pytest.mark.browser


def wait_for_results(page, min_cards: int = 1) -> None:
    page.wait_for_function(
        "n => document.querySelectorAll('#results .card').length >= n && document.getElementById('spinner').hidden",
        arg=min_cards)


def card_titles(page) -> list[str]:
    return page.locator("#results .card .card-title").all_inner_texts()


def test_upload_filter_more_like_this_load_more_and_item_page(page, live_server, live_rows):
    page.goto("/")
    expect_title = page.title()
    assert "Search by photo" in expect_title
    screenshot(page, "01-search-empty")

    row = live_rows[4]
    with page.expect_response(lambda r: r.url.endswith("/api/search")) as resp_info:
        page.set_input_files("#file-input", str(live_server.csv.parent / row["image"]))
    assert resp_info.value.status == 200
    wait_for_results(page, 24)
    assert card_titles(page)[0] == row["title"]
    assert page.locator("#query-image").is_visible()
    assert re.match(r"24 results", page.locator("#status").inner_text())
    assert page.locator("#load-more").is_visible()
    screenshot(page, "02-search-results")

    # A filter narrows the search itself: every result has the chosen article type.
    article = next(r["article_type"] for r in live_rows[10:] if r["article_type"] != row["article_type"])
    with page.expect_response(lambda r: r.url.endswith("/api/search")):
        page.select_option('select[data-column="article_type"]', f"article_type:{article}")
    wait_for_results(page)
    categories = page.locator("#results .card .card-category").all_inner_texts()
    expected = sum(1 for r in live_rows if r["article_type"] == article)
    assert len(categories) == min(24, expected) and all(article in c for c in categories)
    screenshot(page, "03-filtered")
    with page.expect_response(lambda r: r.url.endswith("/api/search")):
        page.click("#reset-filters")
    wait_for_results(page, 24)

    # "More like this" on the second result: the page now shows that item's neighbours.
    second = page.locator("#results .card").nth(1)
    second_id = second.get_attribute("data-item-id")
    second_title = second.locator(".card-title").inner_text()
    with page.expect_response(lambda r: f"/api/items/{second_id}/similar" in r.url):
        second.locator(".more-like").click()
    wait_for_results(page, 24)
    assert page.url.endswith(f"/?item={second_id}")
    assert f"/items/{second_id}/image" in page.locator("#query-image").get_attribute("src")
    page.wait_for_function("t => document.getElementById('status').textContent.includes(t)", arg=second_title)
    ids = page.locator("#results .card").evaluate_all("cards => cards.map(c => c.dataset.itemId)")
    assert second_id not in ids
    screenshot(page, "04-more-like-this")

    # Load more appends the next page.
    with page.expect_response(lambda r: "offset=24" in r.url):
        page.click("#load-more")
    wait_for_results(page, 48)
    more_ids = page.locator("#results .card").evaluate_all("cards => cards.map(c => c.dataset.itemId)")
    assert more_ids[:24] == ids and len(set(more_ids)) == 48

    # The item page: details and similar items.
    first = page.locator("#results .card").first
    title = first.locator(".card-title").inner_text()
    first.locator(".card-title").click()
    page.wait_for_url(re.compile(r"/items/\d+$"))
    assert page.locator("h1.item-title").inner_text() == title
    assert page.locator("#similar .card").count() == 24
    assert page.locator(".item-image").evaluate("img => img.complete && img.naturalWidth > 0")
    screenshot(page, "05-item-page")


def _street_photo(product_path: Path, out: Path) -> tuple[float, float, float, float]:
    """A cluttered scene with the product photo (on its white card) pasted at a known box; returns the box."""
    scene = Image.new("RGB", (480, 360))
    draw = ImageDraw.Draw(scene)
    for y in range(360):
        draw.line((0, y, 480, y), fill=(40 + y // 3, 90, 140 - y // 4))
    for i in range(14):
        x, y = (i * 97) % 420, (i * 53) % 300
        draw.rectangle((x, y, x + 60, y + 40), fill=((i * 71) % 255, (i * 37) % 255, (i * 113) % 255))
    product = Image.open(product_path).convert("RGB").resize((120, 160))
    scene.paste(product, (300, 120))
    scene.save(out, "JPEG", quality=92)
    return (300 / 480, 120 / 360, 420 / 480, 280 / 360)


def test_street_photo_and_crop_box(page, live_server, live_rows, tmp_path):
    row = live_rows[9]
    photo = tmp_path / "street.jpg"
    box = _street_photo(live_server.csv.parent / row["image"], photo)
    page.goto("/")
    with page.expect_response(lambda r: r.url.endswith("/api/search")) as first:
        page.set_input_files("#file-input", str(photo))
    assert first.value.json()["query"]["localized"] is True
    wait_for_results(page, 24)
    assert "regions of your photo" in page.locator("#status").inner_text()
    screenshot(page, "06-street-photo")

    # Drag a box around the product on the photo: the search is redone on that region only.
    img = page.locator("#query-image").bounding_box()
    x0, y0 = img["x"] + box[0] * img["width"], img["y"] + box[1] * img["height"]
    x1, y1 = img["x"] + box[2] * img["width"], img["y"] + box[3] * img["height"]
    with page.expect_request(lambda r: r.url.endswith("/api/search")) as req_info:
        page.mouse.move(x0 + 1, y0 + 1)
        page.mouse.down()
        page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=4)
        page.mouse.move(x1 - 1, y1 - 1, steps=4)
        page.mouse.up()
    response = req_info.value.response()
    sent = response.json()["query"]["crop"]
    assert sent == pytest.approx(list(box), abs=0.03)
    wait_for_results(page)
    page.wait_for_function("() => document.getElementById('status').textContent.includes('for your selection')")
    assert card_titles(page)[0] == row["title"]
    assert page.locator("#crop-box").is_visible() and page.locator("#clear-crop").is_visible()
    screenshot(page, "07-crop-box")


def _drop_file_script(kind: str) -> str:
    # Builds a File from base64 in the page and delivers it by drop event or paste event.
    return """([b64, name, kind]) => {
      const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
      const file = new File([bytes], name, { type: 'image/jpeg' });
      const dt = new DataTransfer();
      dt.items.add(file);
      if (kind === 'drop') {
        const zone = document.getElementById('dropzone');
        zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
        zone.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
      } else {
        document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
      }
    }"""


@pytest.mark.parametrize("kind", ["drop", "paste"])
def test_drag_and_drop_and_paste(page, live_server, live_rows, kind):
    row = live_rows[20 if kind == "drop" else 30]
    data = base64.b64encode((live_server.csv.parent / row["image"]).read_bytes()).decode()
    page.goto("/")
    with page.expect_response(lambda r: r.url.endswith("/api/search")):
        page.evaluate(_drop_file_script(kind), [data, f"{row['id']}.jpg", kind])
    wait_for_results(page, 24)
    assert card_titles(page)[0] == row["title"]


def test_bad_upload_shows_a_human_message(page, tmp_path):
    bad = tmp_path / "holiday.jpg"
    bad.write_text("this is not really a photo")
    page.goto("/")
    with page.expect_response(lambda r: r.url.endswith("/api/search")) as resp:
        page.set_input_files("#file-input", str(bad))
    assert resp.value.status == 400
    alert = page.locator("#error")
    alert.wait_for(state="visible")
    assert "Could not read the photo: not a supported image" in alert.inner_text()
    assert page.locator("#results .card").count() == 0
    screenshot(page, "08-bad-upload")


def test_phone_layout(browser, live_server, live_rows):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True, base_url=live_server.url)
    page = context.new_page()
    try:
        page.goto("/")
        with page.expect_response(lambda r: r.url.endswith("/api/search")):
            page.set_input_files("#file-input", str(live_server.csv.parent / live_rows[12]["image"]))
        wait_for_results(page, 24)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        columns = page.evaluate("getComputedStyle(document.getElementById('results')).gridTemplateColumns")
        assert len(columns.split()) == 2
        screenshot(page, "09-phone")
        page.goto(f"/items/{page.locator('#results .card').first.get_attribute('data-item-id')}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(page, "10-phone-item")
    finally:
        context.close()


def test_crop_box_on_a_catalog_item(page, live_server, live_rows):
    """After "more like this", dragging a box on the item's picture searches that region as an upload."""
    page.goto("/?item=5")
    wait_for_results(page, 24)
    page.wait_for_function("() => document.getElementById('query-image').naturalWidth > 0")
    img = page.locator("#query-image").bounding_box()
    with page.expect_response(lambda r: r.url.endswith("/api/search")) as resp_info:
        page.mouse.move(img["x"] + 0.1 * img["width"], img["y"] + 0.1 * img["height"])
        page.mouse.down()
        page.mouse.move(img["x"] + 0.9 * img["width"], img["y"] + 0.9 * img["height"], steps=5)
        page.mouse.up()
    body = resp_info.value.json()
    assert body["query"]["crop"] == pytest.approx([0.1, 0.1, 0.9, 0.9], abs=0.03)
    wait_for_results(page)
    assert page.url.endswith("/") and body["results"][0]["id"] == 5
