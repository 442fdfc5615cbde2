"""Search by words and thumbs down in real headless Chromium against the live server (issue 17, acceptance 5)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.e2e.conftest import screenshot
from tests.web.test_text_api import train_tiny_tower

pytestmark = pytest.mark.browser


def grid_ids(page) -> list[int]:
    return [int(x) for x in page.eval_on_selector_all("#results .card", "cards => cards.map(c => c.dataset.itemId)")]


def wait_for_results(page) -> None:
    page.wait_for_function("() => document.querySelectorAll('#results .card').length > 0 && "
                           "document.getElementById('spinner').hidden")


def test_type_words_get_results_then_thumbs_down_two_and_they_leave(page, live_server, small_embedder):
    titles = train_tiny_tower(live_server.settings, small_embedder)
    item_id, title = list(titles.items())[5]
    page.goto("/")
    page.fill("#text-query", title)
    with page.expect_response(lambda r: r.url.endswith("/api/search")) as info:
        page.press("#text-query", "Enter")
    assert info.value.status == 200
    wait_for_results(page)
    first = grid_ids(page)
    assert len(first) == 24 and item_id in first[:5]
    screenshot(page, "text-01-words")

    down = []
    for _ in range(2):
        target = grid_ids(page)[0]
        down.append(target)
        with page.expect_response(lambda r: r.url.endswith("/api/search")) as info:
            page.click(f'#results .card[data-item-id="{target}"] .thumb-down')
        assert info.value.status == 200
        assert info.value.json()["query"]["negative_ids"] == down
        page.wait_for_function("id => !document.querySelector(`#results .card[data-item-id=\"${id}\"]`) && "
                               "document.getElementById('spinner').hidden", arg=target)
    after = grid_ids(page)
    assert after and not set(down) & set(after)
    assert page.locator("#text-query").input_value() == title  # the same query, re-ranked in place
    screenshot(page, "text-02-thumbs-down")

    # Their look-alikes left too: nothing in the grid is as close to a thumbs-down item as the look-alike radius.
    from indexer.wiring import open_store

    store = open_store(live_server.settings)
    try:
        vec = {i: store.get_vector(i, small_embedder.fingerprint) for i in [*down, *after]}
    finally:
        store.close()
    closest = max(float(np.dot(vec[a], vec[d])) for a in after for d in down)
    assert closest < live_server.settings.text.look_alike
