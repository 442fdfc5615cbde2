"""Abuse limits for a public deployment: a per-client rate limit on the search endpoints and a bound on concurrent
embeddings, hooked into the app by install_limits() (web/__init__.py). Request timeouts are waitress's
(web/server.py: channel_timeout = web.request_timeout_s).

- Rate limit: a token bucket per client address (REMOTE_ADDR; put the proxy's X-Forwarded-For handling in front)
  over the search endpoints (photo search, similar items, outfits, the search page): web.rate_limit_per_minute
  requests a minute with bursts of as many; over it, 429 with Retry-After. Loopback clients are exempt unless
  web.rate_limit_loopback. 0 turns it off.
- Embedding bound: requests that embed an uploaded photo (POST /api/search, POST /api/outfit, POST /search) take one
  of web.max_concurrent_embeddings slots for their whole handling (decode + embed), waiting up to
  web.embedding_queue_s for one; otherwise 503 `busy` with Retry-After. A burst of uploads thus queues briefly or is
  turned away instead of decoding and embedding all at once (memory grows with concurrent decodes, not with the
  burst).
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time

from flask import Flask, Response, g, request

from indexer.settings import WebSettings
from web.errors import error_envelope

SEARCH_PREFIXES = ("/api/search", "/api/outfit", "/search")
EMBEDDING_PATHS = ("/api/search", "/api/outfit", "/search")
RETRY_AFTER_BUSY_S = 1


def is_search_request(path: str) -> bool:
    return path.startswith(SEARCH_PREFIXES) or path.endswith(("/similar", "/outfit"))


def is_loopback(addr: str | None) -> bool:
    try:
        return ipaddress.ip_address((addr or "").split("%")[0]).is_loopback
    except ValueError:
        return False


class RateLimiter:
    """Token buckets per client: `per_minute` tokens a minute, holding at most `per_minute`."""

    MAX_CLIENTS = 100_000  # buckets kept; the oldest half is dropped past this (bounded memory under a spoofed flood)

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str, now: float | None = None) -> float:
        """0 if the request may go on, else the seconds until a token is free."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            if len(self._buckets) > self.MAX_CLIENTS:
                for key in sorted(self._buckets, key=lambda k: self._buckets[k][1])[: self.MAX_CLIENTS // 2]:
                    del self._buckets[key]
            return (1.0 - tokens) / self.rate


def _limited(status: int, message: str, code: str, retry_after: float) -> Response:
    resp = error_envelope(status, message, code)
    resp.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return resp


def install_limits(app: Flask, web: WebSettings) -> None:
    """Register the rate limit and the embedding bound on the app."""
    limiter = RateLimiter(web.rate_limit_per_minute) if web.rate_limit_per_minute > 0 else None
    slots = threading.BoundedSemaphore(max(1, web.max_concurrent_embeddings))
    app.extensions["lookalike_limits"] = {"limiter": limiter, "slots": slots}

    @app.before_request
    def apply_limits():
        if limiter is not None and is_search_request(request.path) and (
                web.rate_limit_loopback or not is_loopback(request.remote_addr)):
            wait = limiter.take(request.remote_addr or "?")
            if wait > 0:
                return _limited(429, f"too many searches from this client; retry in {math.ceil(wait)} s "
                                     f"(limit {web.rate_limit_per_minute} a minute)", "rate_limited", wait)
        if request.method == "POST" and request.path in EMBEDDING_PATHS:
            if not slots.acquire(timeout=web.embedding_queue_s):
                return _limited(503, "the server is busy embedding other photos; retry in a moment", "busy",
                                RETRY_AFTER_BUSY_S)
            g.lookalike_embedding_slot = True
        return None

    @app.teardown_request
    def release_slot(_exc):  # noqa: ANN001
        if g.pop("lookalike_embedding_slot", False):
            slots.release()
