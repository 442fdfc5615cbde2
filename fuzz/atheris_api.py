#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris, libFuzzer) of the JSON API's parameter parsers, through the Flask test client.

An input is read as a request: its first byte picks the operation (search by form, by JSON or with a raw body,
item, similar items, outfits by item and by photo, analytics runs, run, comparison and sweep); the rest, split at
NUL bytes, gives name/value pairs (a one-byte name picks one of the operation's known fields, a longer one is used
as it is), sent as form fields, query parameters or JSON members (a value that parses as JSON is sent as that
value). Every answer must be a 200 or the project's own 4xx JSON error envelope: a 5xx, a traceback or any other
shape is a finding, and libFuzzer writes the input to ``var/fuzz/crash-<sha1>``.

    pip install atheris          # optional, not in the dev extras (tested with atheris 3.0.0)
    python fuzz/atheris_api.py -atheris_runs=20000 [corpus_dir] [libFuzzer flags]

The corpus defaults to var/fuzz/api/ (seeded, and kept between runs); findings go to var/fuzz/.

The app serves a small catalog indexed from ../shared/data at start (about a minute on 2 cores: 320 products
embedded, a tiny outfit model trained, two evaluation runs and a sweep stored), in a temporary folder. Without
atheris it says so and exits 0. ``test_one_input`` needs no atheris (tests/web/test_fuzz_harness.py runs it on
``seeds()`` against the test app so the harness cannot rot).
"""

from __future__ import annotations

import base64
import io
import json
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SEARCH = ("image", "k", "offset", "threshold", "crop", "filters", "filter", "localize")
SIMILAR = ("k", "offset", "threshold", "filters", "filter")
OUTFIT = ("image", "crop", "slot", "per_slot", "filters", "filter")
ITEM_OUTFIT = ("per_slot", "filters", "filter")
ANALYTICS = ("sort", "order", "run", "a", "b", "token")
# (operation, method, how the pairs travel, the fields a one-byte name picks from)
OPERATIONS = (
    ("search-form", "POST", "form", SEARCH),
    ("search-json", "POST", "json", SEARCH),
    ("search-raw", "POST", "raw", SEARCH),
    ("item", "GET", "path", ()),
    ("similar", "GET", "path+query", SIMILAR),
    ("item-outfit", "GET", "path+query", ITEM_OUTFIT),
    ("outfit-form", "POST", "form", OUTFIT),
    ("outfit-json", "POST", "json", OUTFIT),
    ("analytics-runs", "GET", "query", ANALYTICS),
    ("analytics-compare", "GET", "query", ANALYTICS),
    ("analytics-run", "GET", "path", ()),
    ("analytics-sweep", "GET", "path", ()),
)
RAW_TYPES = ("application/json", "multipart/form-data", "multipart/form-data; boundary=x", "text/plain", "",
             "application/x-www-form-urlencoded", "image/jpeg", "application/problem+json")
ERROR_CODES = {"bad_request", "not_found", "method_not_allowed", "payload_too_large", "unsupported_media_type",
               "unauthorized", "analytics_off"}
PHOTO = "PHOTO"  # a value that stands for the catalog photo (base64 in JSON, a file part in a form)


class Finding(AssertionError):
    """An answer the API must never give."""


def seeds() -> list[bytes]:
    """Starting inputs: a well-formed request of each operation and a few ill-formed ones."""
    def req(op: str, *pairs: tuple[str, str], path: str | None = None) -> bytes:
        index = [o[0] for o in OPERATIONS].index(op)
        known = OPERATIONS[index][3]
        # A field is named by one byte (its position, never 0: NUL separates the parts).
        parts = [] if path is None else [path.encode()]
        parts += [p for name, value in pairs for p in (bytes([known.index(name) + len(known)]), value.encode())]
        return bytes([index]) + b"\x00".join(parts)

    raw = [o[0] for o in OPERATIONS].index("search-raw")
    return [
        req("search-form", ("k", "5"), ("crop", "0.1,0.1,0.9,0.9"), ("localize", "off")),
        req("search-form", ("k", "0"), ("threshold", "nan")),
        req("search-json", ("k", "5"), ("filters", '{"gender": ["Men"]}'), ("crop", "[0.1, 0.1, 0.9, 0.9]")),
        req("search-json", ("k", "true"), ("filter", "[1, 2]")),
        bytes([raw, len(RAW_TYPES)]) + b'{"image": "AAAA", "k": 3}',
        req("item", path="3"),
        req("similar", ("k", "4"), ("threshold", "-0.5"), ("filter", "gender:Men"), path="3"),
        req("item-outfit", ("per_slot", "2"), path="3"),
        req("outfit-form", ("slot", "footwear"), ("per_slot", "3")),
        req("outfit-json", ("crop", "[0, 0, 1, 1]"), ("filters", '{"gender": "Women"}')),
        req("analytics-runs", ("sort", "recall@1"), ("order", "asc")),
        req("analytics-compare", ("run", "1"), ("run", "2")),
        req("analytics-run", path="1"),
        req("analytics-sweep", path="x"),
    ]


def decode_request(data: bytes, photo: bytes) -> tuple[str, dict[str, Any]]:
    """(operation, keyword arguments for the test client's open()) from fuzz bytes."""
    op, method, where, known = OPERATIONS[data[0] % len(OPERATIONS)] if data else OPERATIONS[0]
    segments = data[1:].split(b"\x00")
    # GET follows redirects: Werkzeug answers doubled slashes (an id "/3") with a 308 to the merged path.
    kwargs: dict[str, Any] = {"method": method, "path": "/api/search", "follow_redirects": method == "GET"}
    if where == "raw":
        ctype = RAW_TYPES[segments[0][0] % len(RAW_TYPES)] if segments[0] else ""
        kwargs.update(data=data[2:], content_type=ctype or None)
        return op, kwargs
    if "path" in where:
        raw_id = segments.pop(0).decode("utf-8", "replace") if segments else ""
        base = {"item": "/api/items/{}", "similar": "/api/items/{}/similar", "item-outfit": "/api/items/{}/outfit",
                "analytics-run": "/api/analytics/runs/{}", "analytics-sweep": "/api/analytics/sweeps/{}"}[op]
        kwargs["path"] = base.format(quote(raw_id, safe=""))
    pairs = []
    for name, value in zip(segments[0::2], segments[1::2], strict=False):
        key = known[name[0] % len(known)] if len(name) == 1 and known else name.decode("utf-8", "replace")
        pairs.append((key, value.decode("utf-8", "replace")))
    if op.startswith("analytics"):
        kwargs["path"] = {"analytics-runs": "/api/analytics/runs",
                          "analytics-compare": "/api/analytics/compare"}.get(op, kwargs["path"])
        kwargs["environ_base"] = {"REMOTE_ADDR": "127.0.0.1"}
    if op.startswith("outfit"):
        kwargs["path"] = "/api/outfit"
    if where == "form":
        form: dict[str, Any] = {}
        for key, value in pairs:
            form.setdefault(key, []).append(value)
        if "image" not in form:
            form["image"] = [PHOTO]
        form = {k: [(io.BytesIO(photo), "q.jpg") if v == PHOTO else v for v in vs] for k, vs in form.items()}
        kwargs.update(data=form, content_type="multipart/form-data")
    elif where == "json":
        body: dict[str, Any] = {"image": PHOTO}
        for key, value in pairs:
            try:
                body[key] = json.loads(value)
            except ValueError:
                body[key] = value
        body = {k: base64.b64encode(photo).decode() if v == PHOTO else v for k, v in body.items()}
        kwargs.update(data=json.dumps(body), content_type="application/json")
    else:
        kwargs["query_string"] = pairs
    return op, kwargs


def check_answer(op: str, resp) -> None:  # noqa: ANN001 - a Flask test response
    """Raise Finding unless the answer is a 200 or the project's own 4xx JSON error envelope."""
    text = resp.get_data(as_text=True)
    if resp.status_code >= 500 or "Traceback" in text or 'File "' in text:
        raise Finding(f"{op}: {resp.status_code} {text[:500]}")
    if resp.mimetype != "application/json":
        raise Finding(f"{op}: {resp.status_code} answered {resp.mimetype}")
    body = resp.get_json()
    if resp.status_code == 200:
        return
    err = body.get("error") if isinstance(body, dict) else None
    if not (400 <= resp.status_code < 500 and isinstance(err, dict) and err.get("status") == resp.status_code
            and err.get("code") in ERROR_CODES and isinstance(err.get("message"), str) and len(err["message"]) > 5):
        raise Finding(f"{op}: {resp.status_code} is not the error envelope: {text[:500]}")


_APP: dict[str, Any] = {}


def test_one_input(data: bytes, client=None, photo: bytes | None = None) -> None:  # noqa: ANN001
    """The fuzz target: send the request the bytes describe; raise Finding on an answer the API must never give."""
    if client is None:
        client, photo = _APP.get("client") or build_client()
    op, kwargs = decode_request(data, photo or b"")
    check_answer(op, client.open(**kwargs))


class _Folders:
    """What tests.outfit_fixtures expects of pytest's tmp_path_factory."""

    def mktemp(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"lookalike-fuzz-{name}-"))


def build_client():
    """A test client of an app over a small indexed catalog with an outfit model, evaluation runs and a sweep."""
    from engine import create_embedder
    from indexer.evaluation.sweep import SweepPoint, record_sweep
    from indexer.wiring import open_store
    from tests.analytics_fixtures import seed_runs
    from tests.outfit_fixtures import outfit_catalog
    from tests.web.conftest import make_test_app

    embedder = create_embedder("efficientnet_lite0", input_size=96, device="cpu")
    fixture = outfit_catalog(_Folders(), embedder)
    store = open_store(fixture.settings)
    try:
        seed_runs(store)
        record_sweep(store, [SweepPoint("Flat", None, None, 10, 1.0, 900.0, 4_000_000, 0.5, 20_000, 500)], "fp", "g")
    finally:
        store.close()
    photo = sorted((fixture.csv.parent / "images").iterdir())[0].read_bytes()
    _APP["client"] = (make_test_app(fixture.settings, embedder).test_client(), photo)
    return _APP["client"]


def main() -> int:
    try:
        import atheris
    except ImportError:
        print("atheris is not installed (optional): `pip install atheris`, then run this again. Skipped.")
        return 0
    from fuzz.atheris_decode import with_seed_corpus

    with atheris.instrument_imports(include=["web"]):
        pass
    print("building the app over a small indexed catalog (about a minute)...", flush=True)
    build_client()
    atheris.Setup(with_seed_corpus(sys.argv, seeds(), "api"), test_one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
