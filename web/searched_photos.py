"""The pictures photo searches embedded, kept a short while under a search id, so that "Why?"
(`GET /api/explain?query=<search id>&item=<id>`) explains a result against exactly what was searched, without the
photo being sent again.

A search keeps, for each searched region that answered a returned result (the whole photo, the client's crop box,
a detected garment grown by its padding, a grid or activation crop), that region's picture as the query embedder's
input: letterboxed to its square input size, so the explanation's forward pass sees the pixels the search's did.
And which region answered each returned item. Per process and in memory only: at most SEARCHES_KEPT searches, each
for SEARCH_TTL_S seconds, and at most MAX_BYTES of pixels in all (the oldest searches go first). A server with
several processes answers "unknown or expired" for a search id another process handed out.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from PIL import Image

from indexer.search.query import QueryResult, region_crop, searched_box

SEARCHES_KEPT = 256
SEARCH_TTL_S = 15 * 60.0
MAX_BYTES = 64 * 1024 * 1024
SEARCH_ID_PREFIX = "s-"
_SEARCH_ID = re.compile(r"^s-[0-9a-f]{16}$")


def looks_like_search_id(value: str) -> bool:
    """True for a string shaped like a search id ("s-" and 16 hex digits; never a catalog item id)."""
    return bool(_SEARCH_ID.match(value))


@dataclass(frozen=True)
class SearchedRegion:
    """One searched region: its box in the photo (relative x0, y0, x1, y1) and the picture its embedding saw."""

    box: tuple[float, float, float, float]
    picture: Image.Image


@dataclass(frozen=True)
class SearchedPhoto:
    """What a photo search kept: its regions by index (the response's `regions` / `region` numbers), the region
    that answered each returned item, and whether the photo was a product shot (embedded by the served model rather
    than the query embedder)."""

    regions: Mapping[int, SearchedRegion]
    region_of_item: Mapping[int, int]
    nbytes: int
    product_shot: bool = False


class SearchedPhotos:
    """A bounded, thread-safe, in-memory map of search id -> SearchedPhoto (oldest first out, entries expire)."""

    def __init__(self, max_searches: int = SEARCHES_KEPT, ttl_s: float = SEARCH_TTL_S, max_bytes: int = MAX_BYTES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_searches = max_searches
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, SearchedPhoto]] = OrderedDict()
        self._bytes = 0

    def remember(self, regions: Mapping[int, SearchedRegion], region_of_item: Mapping[int, int],
                 product_shot: bool = False) -> str:
        """Keep a search's pictures; returns its new search id."""
        nbytes = sum(len(r.picture.getbands()) * r.picture.width * r.picture.height for r in regions.values())
        photo = SearchedPhoto(dict(regions), dict(region_of_item), nbytes, product_shot)
        search_id = SEARCH_ID_PREFIX + secrets.token_hex(8)
        with self._lock:
            self._entries[search_id] = (self._clock(), photo)
            self._bytes += nbytes
            self._evict()
        return search_id

    def recall(self, search_id: str) -> SearchedPhoto | None:
        """The search's pictures, or None when the id is unknown, evicted or expired."""
        with self._lock:
            self._evict()
            entry = self._entries.get(search_id)
            return entry[1] if entry else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _evict(self) -> None:
        """Drop expired searches, then the oldest while over the count or byte bound (caller holds the lock)."""
        oldest_kept = self._clock() - self.ttl_s
        while self._entries:
            _, (created, photo) = next(iter(self._entries.items()))
            if created >= oldest_kept and len(self._entries) <= self.max_searches and self._bytes <= self.max_bytes:
                break
            self._entries.popitem(last=False)
            self._bytes -= photo.nbytes


def remember_search(memory: SearchedPhotos, image: Image.Image, result: QueryResult, query_embedder) -> str:  # noqa: ANN001
    """Keep what a photo search embedded for its returned results (the default answer's and each garment's): each
    answering region's picture, letterboxed by ``query_embedder`` (the embedder the search used:
    ``QueryEngine.embedder_for(result)``). Returns the
    search id. Regions that answered nothing are not kept; the first region (the whole photo, or the client's crop)
    always is."""
    region_of_item: dict[int, int] = {}
    for hit, region in zip(result.hits, result.region_of_hit, strict=True):
        region_of_item.setdefault(int(hit.id), region)
    for garment in result.garments:
        for hit in garment.hits:
            region_of_item.setdefault(int(hit.id), garment.region)
    answering = {0, *result.region_of_hit, *(g.region for g in result.garments)}
    regions = {}
    for index in sorted(answering):
        if index >= len(result.regions):
            continue
        region = result.regions[index].region
        pixels = query_embedder.preprocessor.pixels(region_crop(image, region))
        regions[index] = SearchedRegion(tuple(float(v) for v in searched_box(region)), Image.fromarray(pixels))
    return memory.remember(regions, region_of_item, result.product_shot)
