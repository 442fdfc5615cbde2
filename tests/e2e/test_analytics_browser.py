"""Analyst workbench in real headless Chromium (issue 9): runs table -> run page (curve, failure gallery) ->
compare two runs -> sweep page with the Pareto plot. Screenshots in test-artifacts/analytics-*.png."""

from __future__ import annotations

import pytest

from tests.analytics_fixtures import seed_runs
from tests.e2e.conftest import screenshot

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def seeded(live_server):
    """Two evaluation runs and one real sweep of the live server's index generation, in its database."""
    from indexer.evaluation.sweep import record_sweep, sweep_catalog
    from indexer.wiring import open_store

    store = open_store(live_server.settings)
    try:
        runs = seed_runs(store)
        points, manifest = sweep_catalog(live_server.settings, ["Flat", "IVF4,Flat", "HNSW8"], [1, 2, 4], [8, 16, 32],
                                         k=5, n_queries=8, budget_s=0.05)
        sweep = record_sweep(store, points, manifest.fingerprint, manifest.name)
    finally:
        store.close()
    return runs, sweep


def test_runs_run_page_compare_and_sweep(page, seeded):
    (a, b), sweep = seeded
    page.goto("/analytics")
    assert page.locator(f'#runs tr[data-run-id="{a}"]').is_visible()
    screenshot(page, "analytics-01-runs")

    page.click(f'#runs tr[data-run-id="{a}"] a.run-link')
    page.wait_for_url(f"**/analytics/runs/{a}")
    curve = page.locator("#curve svg.recall-chart")
    assert curve.is_visible() and curve.bounding_box()["width"] > 300
    assert page.locator("#curve svg polyline").count() == 1
    failures = page.locator("#failures li.failure")
    assert failures.count() == 3
    assert failures.first.locator("img.query-thumb").is_visible()
    assert failures.first.locator(".fail-returned .fail-item").count() == 5
    assert page.locator("#per-label tbody th").first.inner_text() == "Casual Shoes"  # worst first
    screenshot(page, "analytics-02-run")

    page.goto("/analytics")
    page.check(f'input[name=run][value="{a}"]')
    page.check(f'input[name=run][value="{b}"]')
    page.click("#compare-button")
    page.wait_for_url("**/analytics/compare?*")
    assert page.locator("#curves svg .series").count() == 2
    assert "+0.1900" in page.locator("#metric-deltas").inner_text()
    assert page.locator("#label-deltas tbody th").first.inner_text() == "Casual Shoes"  # largest drop first
    screenshot(page, "analytics-03-compare")

    page.click("nav.analytics-nav >> text=Index sweeps")
    page.wait_for_url("**/analytics/sweeps")
    chart = page.locator("#pareto svg.pareto-chart")
    assert chart.is_visible()
    assert page.locator("#pareto circle.point").count() == 7
    assert page.locator("#pareto circle.pareto").count() >= 1
    assert sweep in page.content() and "Recommended" in page.locator("#verdict").inner_text()
    screenshot(page, "analytics-04-sweep")
