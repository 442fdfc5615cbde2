"""Curation in real headless Chromium (issue 18): the duplicate groups page (sorted by size), the label suspects
page, and on the search page the "Group look-alikes" toggle ("+N more") and "Why?" (heatmaps). Screenshots are
saved into test-artifacts/ (curation-*.png); set LOOKALIKE_UPDATE_DOC_IMAGES=1 to refresh docs/img/ from them
(the suite never changes tracked files otherwise)."""

from __future__ import annotations

import json
import os
import shutil
import urllib.request

import pytest

from tests.conftest import REPO
from tests.e2e.conftest import screenshot

pytestmark = pytest.mark.browser

DOCS_IMG = REPO / "docs" / "img"


def _shot(page, name: str) -> None:
    path = screenshot(page, name)
    if os.environ.get("LOOKALIKE_UPDATE_DOC_IMAGES") == "1":
        shutil.copyfile(path, DOCS_IMG / f"{name}.png")


@pytest.fixture(scope="module")
def seeded(live_server):
    """A real `duplicates` run over the live catalog, then a stored group of the top three results of "more like
    this" for one item (so collapsing has something to do), and an audit run flagging one label."""
    from click.testing import CliRunner

    from indexer.curation.cli import duplicates_cmd
    from indexer.curation.records import AUDIT, DUPLICATES, record_run
    from indexer.wiring import open_store

    result = CliRunner().invoke(duplicates_cmd, ["--config", live_server.settings.source, "--json"])
    assert result.exit_code == 0, result.output
    store = open_store(live_server.settings)
    try:
        item = min(store.get_items(list(range(1, 200))))
        with urllib.request.urlopen(f"{live_server.url}/api/items/{item}/similar?k=6", timeout=60) as resp:
            top = [h["id"] for h in json.load(resp)["results"][:3]]
        groups = json.loads(result.output)["groups"] + [{"kind": "near", "size": 3, "score": 0.97, "ids": top}]
        record_run(store, DUPLICATES, {**json.loads(result.output)["summary"], "groups": len(groups)},
                   {"groups": groups}, {"threshold": 0.95, "min_cosine": 0.5})
        flagged = store.get_items([top[0]])[top[0]]
        record_run(store, AUDIT, {"items": 80, "suspects": 1, "by_column": {"sub_category": 1}, "high_confidence": 1},
                   {"suspects": [{"id": top[0], "column": "sub_category", "current": "Belts",
                                  "suggested": flagged["sub_category"] or "Topwear", "confidence": 0.96,
                                  "current_probability": 0.001}]})
    finally:
        store.close()
    return item, top


def test_duplicates_page_sorted_by_size(page, seeded) -> None:
    page.goto("/curation/duplicates")
    groups = page.locator("#groups li.group")
    assert groups.count() >= 1
    sizes = [int(v) for v in groups.evaluate_all("els => els.map(e => e.dataset.size)")]
    assert sizes == sorted(sizes, reverse=True)
    assert groups.first.locator("img").count() >= 2
    page.select_option("select[name=sort]", "score")
    page.click("#group-controls button")
    page.wait_for_url("**sort=score**")
    assert page.locator("#groups li.group").count() == groups.count()
    page.goto("/curation/duplicates?kind=near")
    assert page.locator("#groups li.group[data-kind=near]").count() >= 1
    _shot(page, "curation-duplicates")


def test_label_suspects_page(page, seeded) -> None:
    _, top = seeded
    page.goto("/curation/labels")
    row = page.locator(f'#suspects tr[data-item-id="{top[0]}"]')
    assert row.is_visible()
    assert row.locator("td.current").inner_text().startswith("Belts")
    assert row.locator("img").is_visible()
    _shot(page, "curation-labels")


def test_collapse_toggle_and_why(page, seeded) -> None:
    item, top = seeded
    page.goto(f"/?item={item}")
    page.wait_for_selector("#results .card")
    assert page.locator("#results .card-more").count() == 0
    page.select_option("#collapse", "duplicates")
    page.wait_for_selector("#results .card-more")
    badge = page.locator(f'#results .card[data-item-id="{top[0]}"] .card-more')
    assert badge.inner_text() == "+2 more"
    assert page.locator(f'#results .card[data-item-id="{top[1]}"]').count() == 0
    page.locator(f'#results .card[data-item-id="{top[0]}"] .why-button').click()
    page.wait_for_selector("#why-dialog .why-summary[data-ready=true]")
    assert "Similarity" in page.locator("#why-dialog .why-summary").inner_text()
    assert page.locator("#why-dialog canvas.why-item").is_visible()
    _shot(page, "curation-why")


def test_why_on_a_photo_search_uses_its_search_id(page, live_server, live_rows) -> None:
    """"Why?" on a photo search's result asks GET /api/explain with the search id the results came with; the photo
    is not uploaded again."""
    explain_calls = []
    page.on("request", lambda r: explain_calls.append((r.method, r.url)) if "/api/explain" in r.url else None)
    page.goto("/")
    with page.expect_response(lambda r: r.url.endswith("/api/search")) as info:
        page.set_input_files("#file-input", str(live_server.csv.parent / live_rows[7]["image"]))
    search_id = info.value.json()["search_id"]
    page.wait_for_selector("#results .card")
    card = page.locator("#results .card").nth(1)
    assert card.get_attribute("data-search-id") == search_id
    card.locator(".why-button").click()
    page.wait_for_selector("#why-dialog .why-summary[data-ready=true]")
    assert [m for m, _ in explain_calls] == ["GET"] and f"query={search_id}" in explain_calls[0][1]
    assert "Similarity" in page.locator("#why-dialog .why-summary").inner_text()


def test_collapse_toggle_for_word_queries(page, seeded, live_server, small_embedder) -> None:
    """Runs last: it stores a newer duplicates run (the word query's own top three as one group)."""
    from indexer.curation.records import DUPLICATES, latest_run, record_run
    from indexer.wiring import open_store
    from tests.web.test_text_api import train_tiny_tower

    titles = train_tiny_tower(live_server.settings, small_embedder, epochs=20)
    title = titles[seeded[1][0]]
    request = urllib.request.Request(f"{live_server.url}/api/search", json.dumps({"text": title, "k": 6}).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        words_top = [h["id"] for h in json.load(resp)["results"][:3]]
    store = open_store(live_server.settings)
    try:
        previous = latest_run(store, DUPLICATES)["details"]["groups"]
        groups = [g for g in previous if not set(g["ids"]) & set(words_top)]
        groups.append({"kind": "near", "size": 3, "score": 0.97, "ids": words_top})
        record_run(store, DUPLICATES, {"groups": len(groups)}, {"groups": groups},
                   {"threshold": 0.95, "min_cosine": 0.5})
    finally:
        store.close()
    page.goto("/")
    page.select_option("#collapse", "duplicates")
    page.fill("#text-query", title)
    with page.expect_response(lambda r: r.url.endswith("/api/search")) as info:
        page.press("#text-query", "Enter")
    assert info.value.status == 200
    assert json.loads(info.value.request.post_data)["collapse"] == "duplicates"
    page.wait_for_selector("#results .card-more")
    assert page.locator(f'#results .card[data-item-id="{words_top[0]}"] .card-more').inner_text() == "+2 more"
    for other in words_top[1:]:
        assert page.locator(f'#results .card[data-item-id="{other}"]').count() == 0
