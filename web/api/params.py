"""Parsing and validating what clients send: search parameters, filters, crop boxes and image bytes.

Everything a client can get wrong is an ApiError(400) whose message says what to send instead. The server
never fetches a URL a client gives: images arrive as bytes (multipart) or base64 (JSON), nothing else.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Request

from engine.models.text_tower import MAX_QUERY_CHARS
from indexer.curation.collapse import COLLAPSE_MODES
from indexer.search.query import LOCALIZE_MODES, QueryOptions
from indexer.settings import WebSettings
from web.errors import ApiError

SEARCH_FIELDS = ("image", "k", "offset", "threshold", "crop", "filters", "filter", "localize", "text", "negative_text",
                 "positive_ids", "negative_ids", "collapse")
# Longest text or negative_text accepted, in characters; most example items per thumbs list.
MAX_TEXT_CHARS = MAX_QUERY_CHARS
MAX_EXAMPLE_IDS = 50
SIMILAR_FIELDS = ("k", "offset", "threshold", "filters", "filter", "collapse")
MAX_FILTER_COLUMNS = 20
MAX_FILTER_VALUES = 100
MAX_FILTER_VALUE_CHARS = 200
_URL_RE = re.compile(r"^\s*([a-z][a-z0-9+.-]*:)?//", re.I)
_DATA_URL_RE = re.compile(r"^data:([a-z0-9.+/-]*)?(;[a-z0-9=.+-]*)*;base64,", re.I)
# Largest id SQL integer columns hold; anything beyond is simply not an item.
MAX_ITEM_ID = 2**63 - 1


@dataclass(frozen=True)
class SearchRequest:
    """A parsed POST /api/search: the image bytes (None for words / thumbs only) and the query options."""

    image: bytes | None
    options: QueryOptions


def parse_int(name: str, value: Any, lo: int, hi: int) -> int:
    """An integer parameter within [lo, hi] (strings of digits accepted; floats and booleans not)."""
    if isinstance(value, bool):
        raise ApiError(400, f"{name} must be a whole number, got {json.dumps(value)}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,30}\s*", value):
        number = int(value)
    else:
        raise ApiError(400, f"{name} must be a whole number, got {_show(value)}")
    if not lo <= number <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}, got {number}")
    return number


def parse_threshold(value: Any) -> float | None:
    """A minimum cosine similarity in [-1, 1]; empty means none."""
    if value is None or value == "":
        return None
    number = _parse_float("threshold", value)
    if not -1.0 <= number <= 1.0:
        raise ApiError(400, f"threshold is a cosine similarity between -1 and 1, got {_show(value)}")
    return number


def parse_crop(value: Any) -> tuple[float, float, float, float] | None:
    """A crop box "x0,y0,x1,y1" (or a list of four numbers) relative to the photo, 0..1; empty means none."""
    if value is None or value == "":
        return None
    parts: list[Any]
    if isinstance(value, str):
        parts = [p for p in re.split(r"[,\s]+", value.strip()) if p]
    elif isinstance(value, list):
        parts = value
    else:
        raise ApiError(400, f"crop must be four numbers x0,y0,x1,y1 between 0 and 1, got {_show(value)}")
    if len(parts) != 4:
        raise ApiError(400, f"crop must be four numbers x0,y0,x1,y1 between 0 and 1, got {len(parts)} value(s)")
    box = tuple(_parse_float("crop", p) for p in parts)
    x0, y0, x1, y1 = box
    if not all(0.0 <= v <= 1.0 for v in box):
        raise ApiError(400, "crop values are fractions of the photo's width and height: each must be between 0 and 1")
    if x1 <= x0 or y1 <= y0:
        raise ApiError(400, "crop must have x0 < x1 and y0 < y1 (left, top, right, bottom)")
    if (x1 - x0) < 0.01 or (y1 - y0) < 0.01:
        raise ApiError(400, "the crop box is too small: make it at least 1% of the photo on each side")
    return box  # type: ignore[return-value]


def parse_localize(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if value not in LOCALIZE_MODES:
        raise ApiError(400, f"localize must be one of {', '.join(LOCALIZE_MODES)}, got {_show(value)}")
    return str(value)


def parse_collapse(value: Any) -> str:
    """collapse=none|duplicates|variants (absent: none)."""
    if value is None or value == "":
        return "none"
    if value not in COLLAPSE_MODES:
        raise ApiError(400, f"collapse must be one of {', '.join(COLLAPSE_MODES)}, got {_show(value)}")
    return str(value)


def parse_filters(filters_json: Any = None, pairs: list[str] | None = None) -> dict[str, list[str]] | None:
    """Filters from a JSON object {"column": "value" | ["v1", "v2"]} and/or "column:value" pairs.

    Values of one column are OR-ed, columns AND-ed. Unknown columns are reported by the search itself.
    """
    out: dict[str, list[str]] = {}
    if filters_json not in (None, ""):
        obj = filters_json
        if isinstance(obj, str):
            try:
                obj = json.loads(obj)
            except ValueError:
                raise ApiError(400, 'filters must be a JSON object such as {"gender": ["Men"]}') from None
        if not isinstance(obj, dict):
            raise ApiError(400, 'filters must be a JSON object such as {"gender": ["Men"]}')
        for column, values in obj.items():
            values = values if isinstance(values, list) else [values]
            for v in values:
                _add_filter(out, column, v)
    for pair in pairs or []:
        column, sep, value = str(pair).partition(":")
        if not sep:
            raise ApiError(400, f"filter must look like column:value (e.g. gender:Men), got {_show(pair)}")
        _add_filter(out, column.strip(), value.strip())
    if len(out) > MAX_FILTER_COLUMNS:
        raise ApiError(400, f"too many filter columns (at most {MAX_FILTER_COLUMNS})")
    return out or None


def _add_filter(out: dict[str, list[str]], column: Any, value: Any) -> None:
    if not isinstance(column, str) or not column.strip():
        raise ApiError(400, "filter column names must be non-empty strings")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ApiError(400, f"filter {column!r}: values must be strings, got {_show(value)}")
    value = str(value).strip()
    if not value:
        raise ApiError(400, f"filter {column!r} has an empty value")
    if len(value) > MAX_FILTER_VALUE_CHARS:
        raise ApiError(400, f"filter {column!r}: a value is longer than {MAX_FILTER_VALUE_CHARS} characters")
    values = out.setdefault(column, [])
    if len(values) >= MAX_FILTER_VALUES:
        raise ApiError(400, f"filter {column!r} has too many values (at most {MAX_FILTER_VALUES})")
    values.append(value)


def decode_base64_image(value: Any) -> bytes:
    """Bytes from a base64 string or a data: URL; URLs of any other kind are refused, never fetched."""
    if not isinstance(value, str):
        raise ApiError(400, "image must be a base64 string (or a data: URL) of the photo's bytes")
    text = value.strip()
    if _URL_RE.match(text) or text.lower().startswith(("http:", "https:", "file:", "ftp:")):
        raise ApiError(400, "image must be the photo itself (base64); the server never fetches URLs")
    match = _DATA_URL_RE.match(text)
    if match:
        text = text[match.end():]
    elif text.lower().startswith("data:"):
        raise ApiError(400, "only base64 data: URLs are accepted (data:image/jpeg;base64,...)")
    text = re.sub(r"\s+", "", text)
    if not text:
        raise ApiError(400, "image is empty: send the photo's bytes as base64")
    try:
        text = text.translate(str.maketrans("-_", "+/"))  # accept the URL-safe alphabet too
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "image is not valid base64") from None


def parse_search_request(request: Request, web: WebSettings) -> SearchRequest:
    """POST /api/search: multipart/form-data with an `image` file, or JSON with a base64 `image`."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        fields = _multipart_fields(request)
        upload = request.files.get("image")
        if upload is None:
            if "image" in request.form:
                raise ApiError(400, "image must be sent as a file part (curl -F image=@photo.jpg), not as text")
            if not _has_words_or_examples(fields):
                raise ApiError(400, "no photo and no words, so nothing to search for: send a photo as a multipart "
                                    "file field named image, and/or words in text")
        if len(request.files) > 1 or len(request.files.getlist("image")) > 1:
            raise ApiError(400, "send exactly one file, named image")
        data = upload.read() if upload is not None else None
        params: Mapping[str, Any] = fields
    elif mimetype == "application/json" or mimetype.endswith("+json"):
        raw = request.get_data(cache=True)  # over the limit -> 413 here, not a misleading "invalid JSON"
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise ApiError(400, "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, 'the JSON body must be an object such as {"image": "<base64>", "k": 10}')
        _reject_unknown(body, SEARCH_FIELDS)
        if "image" not in body and not _has_words_or_examples(body):
            raise ApiError(400, "no photo and no words, so nothing to search for: put a photo's bytes, "
                                "base64-encoded, in the image field, and/or words in text")
        data = decode_base64_image(body["image"]) if "image" in body else None
        params = body
    elif not mimetype:
        raise ApiError(400, "no content type: send multipart/form-data with an image file, or application/json")
    else:
        raise ApiError(400, f"unsupported content type {mimetype}: send multipart/form-data with an image file, "
                            "or application/json with a base64 image")
    if data is not None and not data:
        raise ApiError(400, "the photo is empty (0 bytes)")
    pairs = params.get("filter")
    if pairs is not None and not isinstance(pairs, list):
        pairs = [pairs]
    return SearchRequest(data, _options(params, web, pairs))


def parse_similar_args(request: Request, web: WebSettings) -> QueryOptions:
    """GET /api/items/<id>/similar query string: k, offset, threshold, filter=column:value (repeat), filters."""
    _reject_unknown(request.args, SIMILAR_FIELDS)
    params = {key: request.args.get(key) for key in ("k", "offset", "threshold", "filters", "collapse")
              if key in request.args}
    return _options(params, web, request.args.getlist("filter"))


def _options(params: Mapping[str, Any], web: WebSettings, pairs: list[str] | None) -> QueryOptions:
    k = parse_int("k", params["k"], 1, web.max_k) if params.get("k") not in (None, "") else web.default_k
    offset = parse_int("offset", params["offset"], 0, web.max_results) if params.get("offset") not in (None, "") else 0
    if offset + k > web.max_results:
        raise ApiError(400, f"offset + k may be at most {web.max_results}")
    return QueryOptions(k=k, offset=offset, filters=parse_filters(params.get("filters"), pairs),
                        threshold=parse_threshold(params.get("threshold")), crop=parse_crop(params.get("crop")),
                        localize=parse_localize(params.get("localize")) or "",
                        text=parse_text("text", params.get("text")),
                        negative_text=parse_text("negative_text", params.get("negative_text")),
                        positive_ids=parse_ids("positive_ids", params.get("positive_ids")),
                        negative_ids=parse_ids("negative_ids", params.get("negative_ids")),
                        collapse=parse_collapse(params.get("collapse")))


def _has_words_or_examples(params: Mapping[str, Any] | Any) -> bool:
    return any(key in params for key in ("text", "negative_text", "positive_ids", "negative_ids"))


def parse_text(name: str, value: Any) -> str:
    """Words of a query: a non-empty string of at most MAX_TEXT_CHARS characters; absent means none."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ApiError(400, f"{name} must be a string of words, got {_show(value)}")
    text = " ".join(value.split())
    if not text:
        raise ApiError(400, f"{name} is empty: type a few words (e.g. navy linen shirt), or leave it out")
    if len(text) > MAX_TEXT_CHARS:
        raise ApiError(400, f"{name} is too long ({len(text)} characters): at most {MAX_TEXT_CHARS}")
    return text


def parse_ids(name: str, value: Any) -> tuple[int, ...]:
    """Item ids (thumbs up / down): a JSON list of integers, or "12,34" in a form; absent or empty means none."""
    if value is None or value == "" or value == []:
        return ()
    parts = value if isinstance(value, list) else [p for p in re.split(r"[,\s]+", value.strip()) if p] \
        if isinstance(value, str) else None
    if parts is None:
        raise ApiError(400, f"{name} must be a list of item ids, got {_show(value)}")
    if len(parts) > MAX_EXAMPLE_IDS:
        raise ApiError(400, f"{name} has too many ids (at most {MAX_EXAMPLE_IDS})")
    ids = tuple(dict.fromkeys(parse_int(name, p, 1, MAX_ITEM_ID) for p in parts))
    return ids


def _multipart_fields(request: Request) -> dict[str, Any]:
    """Form fields, with query-string parameters as fallbacks (curl -F image=@x.jpg '...?k=5')."""
    names = set(request.form) | set(request.args) | set(request.files)
    _reject_unknown(names, SEARCH_FIELDS)
    fields: dict[str, Any] = {}
    for source in (request.args, request.form):  # form wins
        for key in source:
            if key == "filter":
                fields["filter"] = fields.get("filter", []) + source.getlist(key)
            else:
                fields[key] = source.get(key)
    return fields


def _reject_unknown(keys: Any, known: tuple[str, ...]) -> None:
    unknown = sorted(str(k) for k in keys if k not in known)
    if unknown:
        fetch = any("url" in u.lower() for u in unknown)
        hint = " (the server never fetches URLs: send the photo's bytes)" if fetch else ""
        raise ApiError(400, f"unknown parameter(s) {', '.join(map(_show, unknown))}; known: {', '.join(known)}{hint}")


def parse_item_id(item_id: int) -> int:
    """Ids past SQL's integer range are simply not items."""
    if item_id > MAX_ITEM_ID:
        raise ApiError(404, f"no item {item_id}")
    return item_id


def _parse_float(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ApiError(400, f"{name} must be a number, got {json.dumps(value)}")
    try:
        number = float(value) if isinstance(value, int | float | str) else math.nan
    except (TypeError, ValueError, OverflowError):
        raise ApiError(400, f"{name} must be a number, got {_show(value)}") from None
    if not math.isfinite(number):
        raise ApiError(400, f"{name} must be a finite number, got {_show(value)}")
    return number


def _show(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = repr(text) if isinstance(value, str) else text
    return text if len(text) <= limit else text[:limit] + "..."
