"""Analyst pages and their JSON (issue 9): seeded runs and sweeps, responses checked against the OpenAPI document,
and the access rule (open on loopback, off elsewhere unless the token is given)."""

from __future__ import annotations

import dataclasses
import re

import pytest

from indexer.evaluation.sweep import SweepPoint, pareto_front, record_sweep
from tests.analytics_fixtures import seed_runs
from tests.web.conftest import make_test_app
from tests.web.openapi_check import assert_error, assert_matches

LOCAL = {"REMOTE_ADDR": "127.0.0.1"}


def _points() -> list[SweepPoint]:
    raw = [("Flat", None, None, 1.0, 900.0, 4_000_000), ("IVF64,Flat", 4, None, 0.91, 9000.0, 4_100_000),
           ("IVF64,Flat", 16, None, 0.99, 4000.0, 4_100_000), ("IVF64,Flat", 64, None, 1.0, 800.0, 4_100_000),
           ("HNSW32", None, 32, 0.995, 2500.0, 6_000_000)]
    points = [SweepPoint(s, p, e, 10, r, q, m, 0.5, 20_000, 500) for s, p, e, r, q, m in raw]
    for i in pareto_front([(p.recall, p.queries_per_s) for p in points]):
        points[i].pareto = True
    return points


@pytest.fixture
def analytics(settings):
    """(app, client, run ids, sweep id) over a fresh migrated database (no index needed)."""
    from indexer.wiring import open_store

    store = open_store(settings)
    runs = seed_runs(store)
    sweep = record_sweep(store, _points(), "fp", "gen-000001")
    store.close()
    app = make_test_app(settings, None)
    return app, app.test_client(), runs, sweep


@pytest.fixture
def doc(analytics):
    return analytics[1].get("/api/openapi.json").get_json()


def test_runs_table_sorts_and_links(analytics):
    _, client, (a, b), _ = analytics
    html = client.get("/analytics", environ_base=LOCAL).get_data(as_text=True)
    assert f'href="/analytics/runs/{a}"' in html and f'href="/analytics/runs/{b}"' in html
    assert html.index(f'data-run-id="{b}"') < html.index(f'data-run-id="{a}"')  # newest first
    html = client.get("/analytics?sort=recall@1&order=asc", environ_base=LOCAL).get_data(as_text=True)
    assert html.index(f'data-run-id="{a}"') < html.index(f'data-run-id="{b}"')  # worst recall@1 first
    assert 'aria-sort="ascending"' in html
    resp = client.get("/analytics?sort=nonsense", environ_base=LOCAL)
    assert resp.status_code == 400 and "annot sort by" in resp.get_data(as_text=True)


def test_run_page_curve_labels_worst_first_and_failures(analytics):
    _, client, (a, _b), _ = analytics
    resp = client.get(f"/analytics/runs/{a}", environ_base=LOCAL)
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert '<svg class="chart recall-chart"' in html and "<polyline" in html
    table = html[html.index('id="per-label"'):]
    assert table.index("Casual Shoes") < table.index("Watches") < table.index("Tshirts")
    assert html.count('class="failure"') == 3
    assert "data:image/jpeg;base64," in html and "true item not found" in html
    assert re.search(r'href="/items/\d+/thumb"|class="fail-item missing', html)
    assert client.get("/analytics/runs/999", environ_base=LOCAL).status_code == 404


def test_compare_page_and_json(analytics, doc):
    _, client, (a, b), _ = analytics
    html = client.get(f"/analytics/compare?run={b}&run={a}", environ_base=LOCAL).get_data(as_text=True)
    assert html.count('class="series"') == 2 and "+0.1900" in html  # recall@1 0.62 -> 0.81
    body = assert_matches(doc, "/api/analytics/compare", "get",
                          client.get(f"/api/analytics/compare?a={a}&b={b}", environ_base=LOCAL))
    assert body["metrics"]["recall@1"]["delta"] == pytest.approx(0.19)
    assert body["per_label"][0]["label"] == "Casual Shoes"  # largest drop first
    msg = assert_error(doc, client.get("/api/analytics/compare?a=1", environ_base=LOCAL), 400)
    assert "b must be" in msg
    assert_error(doc, client.get(f"/api/analytics/compare?a={a}&b=9999", environ_base=LOCAL), 404)


def test_json_endpoints_match_openapi(analytics, doc):
    _, client, (a, _b), sweep = analytics
    runs = assert_matches(doc, "/api/analytics/runs", "get", client.get("/api/analytics/runs", environ_base=LOCAL))
    assert len(runs["runs"]) == 2
    run = assert_matches(doc, "/api/analytics/runs/{run_id}", "get",
                         client.get(f"/api/analytics/runs/{a}", environ_base=LOCAL))
    assert run["curve"][0] == [1, 0.62] and len(run["failures"]["queries"]) == 3
    sweeps = assert_matches(doc, "/api/analytics/sweeps", "get",
                            client.get("/api/analytics/sweeps", environ_base=LOCAL))
    assert sweeps["sweeps"][0]["sweep_id"] == sweep
    one = assert_matches(doc, "/api/analytics/sweeps/{sweep_id}", "get",
                         client.get(f"/api/analytics/sweeps/{sweep}", environ_base=LOCAL))
    front = {p["label"] for p in one["points"] if p["pareto"]}
    assert front == {"Flat", "IVF64,Flat nprobe=4", "IVF64,Flat nprobe=16", "HNSW32 efSearch=32"}
    assert one["recommended"]["label"] == "IVF64,Flat nprobe=16"
    assert_error(doc, client.get("/api/analytics/runs/12345", environ_base=LOCAL), 404)
    assert_error(doc, client.get("/api/analytics/sweeps/nope", environ_base=LOCAL), 404)


def test_sweep_page_draws_pareto_front(analytics):
    _, client, _, sweep = analytics
    html = client.get("/analytics/sweeps", environ_base=LOCAL).get_data(as_text=True)
    assert '<svg class="chart pareto-chart"' in html and 'class="pareto-front"' in html
    assert html.count('class="point pareto"') == 4 and html.count('class="point"') == 1
    assert "IVF64,Flat nprobe=16" in html and sweep in html


def test_access_off_elsewhere_unless_token(settings):
    from indexer.wiring import open_store

    store = open_store(settings)
    seed_runs(store)
    store.close()
    remote = {"REMOTE_ADDR": "10.1.2.3"}
    local_app = make_test_app(settings, None)
    # Bound to loopback but the client is not on this machine (e.g. a proxy forwards it): off without a token.
    assert local_app.test_client().get("/api/analytics/runs", environ_base=remote).status_code == 404
    public = dataclasses.replace(settings, web=dataclasses.replace(settings.web, host="0.0.0.0"))
    client = make_test_app(public, None).test_client()
    resp = client.get("/api/analytics/runs", environ_base=LOCAL)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "analytics_off"
    assert client.get("/analytics", environ_base=remote).status_code == 404
    assert client.get("/", environ_base=remote).status_code == 200  # the shopper pages are unaffected

    guarded = dataclasses.replace(settings, web=dataclasses.replace(settings.web, host="0.0.0.0",
                                                                       analytics_token="s3cret"))
    client = make_test_app(guarded, None).test_client()
    assert client.get("/api/analytics/runs", environ_base=remote).status_code == 401
    assert client.get("/api/analytics/runs", environ_base=remote,
                      headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/analytics/runs", environ_base=remote,
                      headers={"Authorization": "Bearer s3cret"}).status_code == 200
    resp = client.get("/analytics?token=s3cret&sort=kind", environ_base=remote)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/analytics?sort=kind")
    assert "HttpOnly" in resp.headers["Set-Cookie"]
    assert client.get("/analytics?sort=kind", environ_base=remote).status_code == 200  # the cookie
    for method in ("post", "put", "delete"):
        assert getattr(client, method)("/api/analytics/runs", environ_base=remote,
                                       headers={"Authorization": "Bearer s3cret"}).status_code == 405


def test_run_ids_past_sqls_integer_range_are_404(analytics):
    """Found by the hypothesis fuzzer: /api/analytics/runs/9223372036854775808 answered 500 (the driver overflowed)."""
    _, client, _runs, _ = analytics
    for path in ("/api/analytics/runs/9223372036854775808", "/analytics/runs/99999999999999999999"):
        resp = client.get(path, environ_base=LOCAL)
        assert resp.status_code == 404, (path, resp.status_code)
    body = client.get("/api/analytics/runs/9223372036854775808", environ_base=LOCAL).get_json()
    assert body["error"]["message"].startswith("there is no evaluation run")
