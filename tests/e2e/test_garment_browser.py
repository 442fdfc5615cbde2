"""Detected garments on the search page, in real headless Chromium against a live server whose web.detector is a
scripted detector (tests/e2e/garment_stub.py): upload a two-garment photo, see a box and a chip per garment, pick
the second garment: its results show without a new upload and "complete the look" follows it."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image, ImageDraw

from tests.e2e.conftest import screenshot, start_server, stop_server
from tests.e2e.garment_stub import SHOE_BOX, TOP_BOX

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def garment_server(live_server, tmp_path_factory):
    """A second server over the live server's catalog (read only), with the scripted detector."""
    folder = tmp_path_factory.mktemp("garments")
    config = folder / "config.toml"
    shutil.copy(live_server.settings.source, config)
    text = config.read_text()
    line = 'detector = "tests.e2e.garment_stub:ScriptedGarments"\n'
    config.write_text(text.replace("[web]\n", "[web]\n" + line, 1) if "[web]\n" in text else text + "\n[web]\n" + line)
    proc, url = start_server(config, folder / "server.log")
    try:
        yield url
    finally:
        stop_server(proc)


def _scene(rows, csv_dir, path) -> tuple[dict, dict]:
    top = next(r for r in rows if r["sub_category"] == "Topwear")
    shoe = next(r for r in rows if r["master_category"] == "Footwear")
    photo = Image.new("RGB", (480, 360), (96, 112, 84))
    draw = ImageDraw.Draw(photo)
    for i in range(0, 480, 21):
        draw.line((i, 0, 480 - i, 360), fill=(50 + i % 90, 70, 130), width=3)
    for row, box in ((top, TOP_BOX), (shoe, SHOE_BOX)):
        x0, y0, x1, y1 = round(box[0] * 480), round(box[1] * 360), round(box[2] * 480), round(box[3] * 360)
        with Image.open(csv_dir / row["image"]) as img:
            photo.paste(img.convert("RGB").resize((x1 - x0, y1 - y0)), (x0, y0))
    photo.save(path, "JPEG", quality=92)
    return top, shoe


def test_pick_the_second_garment_without_reuploading(browser, garment_server, live_server, live_rows, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=garment_server)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(60_000)
    searches: list[str] = []
    page.on("request", lambda r: searches.append(r.url) if r.url.endswith("/api/search") else None)
    top, shoe = _scene(live_rows, live_server.csv.parent, tmp_path / "scene.jpg")
    try:
        page.goto("/")
        with page.expect_response(lambda r: r.url.endswith("/api/search")) as resp:
            page.set_input_files("#file-input", str(tmp_path / "scene.jpg"))
        body = resp.value.json()
        assert [g["slot"] for g in body["garments"]] == ["topwear", "footwear"] and body["default_garment"] == 0
        page.wait_for_function("() => document.querySelectorAll('#garment-chips .garment-chip').length === 2")
        assert page.locator("#garment-chips .garment-chip").all_inner_texts() == ["Top", "Shoes"]
        assert page.locator("#garment-boxes .garment-box").count() == 2
        # The default answer is the large central top: its chip is active, its results are shown.
        assert page.locator(".garment-chip.active").inner_text() == "Top"
        first = page.locator("#results .card .card-title").first.inner_text()
        assert first == body["garments"][0]["results"][0]["title"] == top["title"]
        screenshot(page, "garments-01-default")

        # Pick the second garment (its chip): its results, from the same answer, no new /api/search request;
        # "complete the look" asks again for the shoe's part of the photo.
        n_searches = len(searches)
        page.evaluate("() => { window.lookQueries = []; document.addEventListener('lookalike:query', "
                      "(e) => window.lookQueries.push(e.detail.crop)); }")
        with page.expect_request(lambda r: r.url.endswith("/api/outfit")):
            page.locator("#garment-chips .garment-chip").nth(1).click()
        crops = page.evaluate("() => window.lookQueries")
        pad = [(SHOE_BOX[2] - SHOE_BOX[0]) * 0.08, (SHOE_BOX[3] - SHOE_BOX[1]) * 0.08]
        want = [max(0, SHOE_BOX[0] - pad[0]), SHOE_BOX[1] - pad[1], SHOE_BOX[2] + pad[0], min(1, SHOE_BOX[3] + pad[1])]
        assert len(crops) == 1 and crops[0] == pytest.approx(want)  # the look follows the shoe's part of the photo
        page.wait_for_function("t => document.querySelector('#results .card .card-title').textContent === t",
                               arg=body["garments"][1]["results"][0]["title"])
        titles = page.locator("#results .card .card-title").all_inner_texts()
        assert titles == [h["title"] or h["external_id"] for h in body["garments"][1]["results"]]
        assert titles[0] == shoe["title"]
        assert page.locator(".garment-chip.active").inner_text() == "Shoes"
        assert page.locator(".garment-box.active").get_attribute("data-index") == "1"
        assert "for the shoes" in page.locator("#status").inner_text()
        assert len(searches) == n_searches
        screenshot(page, "garments-02-second")

        # Clicking the top's box on the photo brings its results back, again without a search.
        page.locator("#garment-boxes .garment-box").nth(0).click()
        page.wait_for_function("t => document.querySelector('#results .card .card-title').textContent === t",
                               arg=top["title"])
        assert len(searches) == n_searches
    finally:
        context.close()
    assert not errors, f"JavaScript errors: {errors}"
