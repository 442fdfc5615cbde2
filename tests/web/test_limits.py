"""Abuse limits (web/limits.py): per-client rate limit on the search endpoints (loopback exempt by default), the
bound on concurrent embeddings (503 `busy` with Retry-After), both answered with the JSON error envelope."""

from __future__ import annotations

import dataclasses
import io

import pytest

from tests.web.conftest import make_test_app
from web.limits import RateLimiter, is_loopback, is_search_request

pytestmark = pytest.mark.reliability("hostile")
PUBLIC = {"REMOTE_ADDR": "203.0.113.7"}  # TEST-NET-3: a client that is not this machine


def app_with(settings, embedder, **web):
    return make_test_app(dataclasses.replace(settings, web=dataclasses.replace(settings.web, **web)), embedder)


def test_rate_limit_per_public_client_with_retry_after(web_settings, small_embedder, scoreboard):
    client = app_with(web_settings, small_embedder, rate_limit_per_minute=3).test_client()
    answers = [client.get("/api/items/1/similar?k=3", environ_base=PUBLIC) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    limited = answers[-1]
    assert limited.get_json()["error"]["code"] == "rate_limited" and int(limited.headers["Retry-After"]) >= 1
    other = client.get("/api/items/1/similar?k=3", environ_base={"REMOTE_ADDR": "198.51.100.9"})
    assert other.status_code == 200  # per client
    assert client.get("/api/items/1", environ_base=PUBLIC).status_code == 200  # not a search endpoint
    assert all(client.get("/api/items/1/similar?k=3").status_code == 200 for _ in range(6))  # loopback: exempt
    scoreboard.cases(4 + 1 + 1 + 6)


def test_loopback_is_limited_when_configured(web_settings, small_embedder):
    client = app_with(web_settings, small_embedder, rate_limit_per_minute=2, rate_limit_loopback=True).test_client()
    assert [client.get("/api/items/1/similar?k=3").status_code for _ in range(3)] == [200, 200, 429]


def test_busy_embedding_slots_give_503_with_retry_after(web_settings, web_catalog, small_embedder, catalog_rows,
                                                       scoreboard):
    app = app_with(web_settings, small_embedder, max_concurrent_embeddings=1, embedding_queue_s=0.05)
    client = app.test_client()
    photo = (web_catalog[1].parent / catalog_rows[0]["image"]).read_bytes()
    slots = app.extensions["lookalike_limits"]["slots"]
    assert slots.acquire(timeout=1)  # another upload is being embedded
    try:
        busy = client.post("/api/search", data={"image": (io.BytesIO(photo), "q.jpg")})
    finally:
        slots.release()
    assert busy.status_code == 503 and busy.get_json()["error"]["code"] == "busy"
    assert int(busy.headers["Retry-After"]) >= 1
    ok = client.post("/api/search", data={"image": (io.BytesIO(photo), "q.jpg"), "k": "3"})
    assert ok.status_code == 200 and ok.get_json()["results"]
    assert slots.acquire(timeout=0)  # the slot was given back after the request
    slots.release()
    scoreboard.cases(2)


def test_rate_limiter_refills_and_classifies():
    lim = RateLimiter(60)  # one a second, bursts of 60
    assert all(lim.take("a", now=0.0) == 0 for _ in range(60))
    assert lim.take("a", now=0.0) == pytest.approx(1.0)
    assert lim.take("a", now=1.0) == 0
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("203.0.113.7")
    assert not is_loopback(None) and not is_loopback("not an address")
    assert is_search_request("/api/search") and is_search_request("/api/items/3/similar")
    assert is_search_request("/api/items/3/outfit") and not is_search_request("/api/items/3")
