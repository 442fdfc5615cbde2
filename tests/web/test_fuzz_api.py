"""Fuzzing (hypothesis) every API parameter parser through the Flask test client.

k, offset, threshold, crop, filters (JSON and column:value pairs), localize, unknown fields, JSON bodies of any
shape, raw bodies, item ids in paths, per_slot and slot (outfits), run ids, sort/order and sweep ids (analytics),
and the pages' item and form fields. Only 200 or the project's own 4xx JSON error envelope may come out, each a
status the OpenAPI document declares for that operation, with a body that matches its schema; never a 5xx or a
traceback.
"""

from __future__ import annotations

import base64
import io
import json
import re
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from werkzeug.exceptions import HTTPException

from tests.web.conftest import make_test_app
from tests.web.openapi_check import response_schema, validate

pytestmark = pytest.mark.reliability("fuzz")

SLOW_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]
ERROR_CODES = {"bad_request", "not_found", "method_not_allowed", "payload_too_large", "unsupported_media_type",
               "unauthorized", "analytics_off"}
LOCAL = {"REMOTE_ADDR": "127.0.0.1"}

# Values a client might send for a number: in range, out of range, huge, floats, words, odd digits and spaces.
NUMBERISH = st.one_of(
    st.integers(-5, 300).map(str),
    st.integers(-10**40, 10**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(-1.5, 1.5).map(lambda f: f"{f:.3f}"),
    st.sampled_from(["", " ", " 5 ", "+3", "-0", "1e3", "0x10", "1_000", "\u0663", "\uff15", "NaN", "-inf", "\x00",
                     "5\x00", "1" * 31, "true", "null", "[1]"]),
    st.text(max_size=12),
    st.text(alphabet="0123456789+-.eE _,", max_size=8),
)
CROPISH = st.one_of(
    st.lists(st.floats(-0.5, 1.5).map(lambda f: f"{f:.3f}"), min_size=0, max_size=6).map(",".join),
    st.sampled_from(["0.1,0.1,0.9,0.9", "0 0 1 1", "0.2, 0.3 ,0.7,0.8", ",,,,", "nan,0,1,1", "0,0,1e308,1"]),
    st.lists(st.text(alphabet="0123456789.-+eEnaNIf_x", min_size=1, max_size=5), min_size=4, max_size=4).map(",".join),
    st.text(max_size=20),
)
FILTERS_JSON = st.one_of(
    st.dictionaries(st.sampled_from(["gender", "base_colour", "article_type", "usage", "season", "x"]),
                    st.one_of(st.text(max_size=10), st.lists(st.text(max_size=10), max_size=4)), max_size=3)
    .map(json.dumps),
    st.sampled_from(['{"gender": ["Men"]}', '{"gender": "Women", "base_colour": ["Blue", "Black"]}', "{", "[]",
                     '{"gender": [{"$ne": 1}]}', '{"": ["x"]}', '{"gender": [null]}', "null", '"gender"']),
    st.text(max_size=20),
)
FILTER_PAIRS = st.lists(st.one_of(st.sampled_from(["gender:Men", "base_colour:Blue", "usage:Casual", "gender:",
                                                   ":Men", "shoe_size:42", "nocolon"]),
                                  st.text(max_size=16)), max_size=3)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


def _photo(web_catalog) -> bytes:
    return sorted((web_catalog[1].parent / "images").iterdir())[0].read_bytes()


def operation(app, method: str, path: str) -> str | None:
    """The OpenAPI path template of the route a (decoded) path reaches, or None where none does."""
    try:
        rule, _ = app.url_map.bind("localhost").match(path, method=method.upper(), return_rule=True)
    except HTTPException:
        return None
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)


def check_answer(doc: dict[str, Any], app, method: str, resp, scoreboard) -> None:
    """200 or a declared 4xx with the Error envelope; the body matches the document; never a 5xx or traceback.

    GET requests follow redirects: Werkzeug answers a path with doubled slashes (e.g. an id "%2F3") with a
    308 to the merged path on this server, and it is the answer there that counts.
    """
    scoreboard.cases(1)
    event(f"status {resp.status_code}")  # --hypothesis-show-statistics: how many examples got through the parsers
    text = resp.get_data(as_text=True)
    if resp.status_code >= 500 or "Traceback" in text or 'File "' in text:
        scoreboard.wrong(1)
    template = operation(app, method, resp.request.path)
    assert resp.status_code < 500, (method, resp.request.path, resp.status_code, text[:400])
    assert "Traceback" not in text and 'File "' not in text
    assert resp.mimetype == "application/json", (resp.status_code, text[:200])
    body = resp.get_json()
    if resp.status_code >= 400:
        validate(doc, {"$ref": "#/components/schemas/Error"}, body)
        err = body["error"]
        assert err["status"] == resp.status_code and err["code"] in ERROR_CODES, err
        assert len(err["message"]) > 5 and err["message"][0].isalnum(), err
    else:
        assert resp.status_code == 200, resp.status_code
    if template is not None:  # a routed operation: the status is one it declares, the body its schema
        validate(doc, response_schema(doc, template, method, resp.status_code), body)
    elif resp.status_code != 404:
        pytest.fail(f"{method} of an unrouted path answered {resp.status_code}")


@st.composite
def _crop_boxes(draw) -> list[float]:
    x0, y0 = draw(st.floats(0, 0.6)), draw(st.floats(0, 0.6))
    x1, y1 = draw(st.floats(x0 + 0.05, 1)), draw(st.floats(y0 + 0.05, 1))
    return [round(v, 3) for v in (x0, y0, x1, y1)]


# Well-formed values of each search parameter (as a form field and as JSON) and ill-formed ones.
VALID_FORM = {
    "k": st.integers(1, 40).map(str), "offset": st.integers(0, 60).map(str),
    "threshold": st.floats(-1, 1).map(lambda f: f"{f:.3f}"), "crop": _crop_boxes().map(lambda b: ",".join(map(str, b))),
    "filters": st.sampled_from(['{"gender": ["Men"]}', '{"gender": "Women", "base_colour": ["Blue", "Black"]}',
                                '{"usage": ["Casual"]}', "{}"]),
    "filter": st.lists(st.sampled_from(["gender:Men", "base_colour:Blue", "usage:Casual", "gender:Women"]),
                       min_size=1, max_size=2),
    "localize": st.sampled_from(["auto", "crops", "off"]),
}
VALID_JSON = {**VALID_FORM, "k": st.integers(1, 40), "offset": st.integers(0, 60), "threshold": st.floats(-1, 1),
              "crop": _crop_boxes(), "filters": st.sampled_from([{"gender": ["Men"]}, {"base_colour": "Blue"}, {}])}
HOSTILE_FORM = {"k": NUMBERISH, "offset": NUMBERISH, "threshold": NUMBERISH, "crop": CROPISH, "filters": FILTERS_JSON,
                "filter": FILTER_PAIRS, "localize": st.sampled_from(["", "on", "OFF", "auto "]) | st.text(max_size=6)}
HOSTILE_JSON = {name: strategy | JSON_VALUES for name, strategy in HOSTILE_FORM.items()}
HOSTILE_JSON["crop"] = HOSTILE_JSON["crop"] | st.lists(st.floats(-0.2, 1.2), max_size=5)


@st.composite
def _parameters(draw, valid: dict, hostile: dict, target: str | None = None) -> dict[str, Any]:
    """Some well-formed parameters, then the target one (or, with no target, up to two of them) replaced by an
    ill-formed value ("unknown": a field of a random name). Without a target, about a third of the examples are
    well-formed throughout and go all the way through the search."""
    fields = {name: draw(strategy) for name, strategy in valid.items() if draw(st.booleans())}
    targets = [target] if target else draw(st.lists(st.sampled_from([*hostile, "unknown"]), max_size=2, unique=True))
    for name in targets:
        if name == "unknown":
            fields[draw(st.text(min_size=1, max_size=10))] = draw(st.text(max_size=10))
        else:
            fields[name] = draw(hostile[name])
    return fields


def _query(fields: dict[str, Any]) -> list[tuple[str, str]]:
    """Parameters as query-string pairs (a list value repeats its name)."""
    return [(k, v) for k, vs in fields.items() for v in (vs if isinstance(vs, list) else [vs])]


# Each parser gets its own examples (None: any mix, well-formed ones included).
SEARCH_TARGETS = [None, *HOSTILE_FORM, "unknown"]


@pytest.mark.parametrize("target", SEARCH_TARGETS)
@settings(max_examples=10, deadline=None, suppress_health_check=SLOW_OK)
@given(data=st.data(), in_query=st.booleans())
def test_search_multipart_parameters(app, openapi_doc, web_catalog, scoreboard, target, data, in_query):
    fields = data.draw(_parameters(VALID_FORM, HOSTILE_FORM, target), "fields")
    photo = data.draw(st.sampled_from(["real", "real", "junk", "none"]), "photo") if target is None else "real"
    form: dict[str, Any] = {} if in_query else dict(fields)
    if photo != "none":
        form["image"] = (io.BytesIO(_photo(web_catalog) if photo == "real" else b"\xff\xd8\xffjunk"), "q.jpg")
    query = _query(fields) if in_query else []
    resp = app.test_client().post("/api/search", data=form, query_string=query, content_type="multipart/form-data")
    check_answer(openapi_doc, app, "post", resp, scoreboard)


@pytest.mark.parametrize("target", SEARCH_TARGETS)
@settings(max_examples=10, deadline=None, suppress_health_check=SLOW_OK)
@given(data=st.data())
def test_search_json_bodies(app, openapi_doc, web_catalog, scoreboard, target, data):
    body = data.draw(_parameters(VALID_JSON, HOSTILE_JSON, target).map(lambda f: {"image": "PHOTO", **f}) if target
                     else st.one_of(_parameters(VALID_JSON, HOSTILE_JSON).map(lambda f: {"image": "PHOTO", **f}),
                                    st.dictionaries(st.sampled_from(["image", "k", "crop", "filters", "url"]),
                                                    JSON_VALUES, max_size=4),
                                    JSON_VALUES), "body")
    if isinstance(body, dict) and body.get("image") == "PHOTO":
        body["image"] = base64.b64encode(_photo(web_catalog)).decode()
    resp = app.test_client().post("/api/search", data=json.dumps(body), content_type="application/json")
    check_answer(openapi_doc, app, "post", resp, scoreboard)


@settings(max_examples=30, deadline=None, suppress_health_check=SLOW_OK)
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode),
       ctype=st.sampled_from(["application/json", "application/vnd.x+json", "multipart/form-data",
                              "multipart/form-data; boundary=x", "text/plain", "", "application/x-www-form-urlencoded",
                              "image/jpeg"]))
def test_search_raw_bodies(app, openapi_doc, scoreboard, raw, ctype):
    resp = app.test_client().post("/api/search", data=raw, content_type=ctype or None)
    check_answer(openapi_doc, app, "post", resp, scoreboard)


ITEM_PATH = st.one_of(st.integers(1, 80).map(str), st.integers(1, 80).map(str), st.integers(-3, 10**4).map(str),
                      st.integers(-10**30, 10**30).map(str), st.text(max_size=12).map(lambda t: quote(t, safe="")),
                      st.sampled_from(["%2F3", "3%2F", "%2F%2F3", ".", "..", "%2E%2E", "3%00", "0x3", "03"]))
SIMILAR_VALID = {name: VALID_FORM[name] for name in ("k", "offset", "threshold", "filters", "filter")}
SIMILAR_HOSTILE = {name: HOSTILE_FORM[name] for name in SIMILAR_VALID} | {"crop": CROPISH, "url": st.text(max_size=9)}


@pytest.mark.parametrize("target", [None, *SIMILAR_HOSTILE, "unknown"])
@settings(max_examples=8, deadline=None, suppress_health_check=SLOW_OK)
@given(item=ITEM_PATH, data=st.data(), similar=st.booleans())
def test_item_and_similar_parameters(app, openapi_doc, scoreboard, target, item, data, similar):
    query = data.draw(_parameters(SIMILAR_VALID, SIMILAR_HOSTILE, target), "query")
    suffix = "/similar" if similar else ""
    resp = app.test_client().get(f"/api/items/{item}{suffix}", query_string=_query(query), follow_redirects=True)
    check_answer(openapi_doc, app, "get", resp, scoreboard)


@pytest.fixture(scope="module")
def outfit_app(tmp_path_factory, shared_data, small_embedder):
    from tests.outfit_fixtures import outfit_catalog

    return make_test_app(outfit_catalog(tmp_path_factory, small_embedder).settings, small_embedder)


ITEM_OUTFIT_VALID = {"per_slot": st.integers(1, 6).map(str), "filters": VALID_FORM["filters"],
                     "filter": VALID_FORM["filter"]}
ITEM_OUTFIT_HOSTILE = {"per_slot": NUMBERISH, "filters": FILTERS_JSON, "filter": FILTER_PAIRS,
                       "slot": st.text(max_size=8)}


@pytest.mark.parametrize("target", [None, *ITEM_OUTFIT_HOSTILE, "unknown"])
@settings(max_examples=6, deadline=None, suppress_health_check=SLOW_OK)
@given(item=ITEM_PATH, data=st.data())
def test_item_outfit_parameters(outfit_app, openapi_doc, scoreboard, target, item, data):
    query = data.draw(_parameters(ITEM_OUTFIT_VALID, ITEM_OUTFIT_HOSTILE, target), "query")
    resp = outfit_app.test_client().get(f"/api/items/{item}/outfit", query_string=_query(query),
                                        follow_redirects=True)
    check_answer(openapi_doc, outfit_app, "get", resp, scoreboard)


OUTFIT_VALID = {"per_slot": st.integers(1, 6), "crop": _crop_boxes(), "filters": VALID_JSON["filters"],
                "filter": VALID_FORM["filter"], "slot": st.sampled_from(["footwear", "topwear", "bag"])}
OUTFIT_HOSTILE = {"per_slot": NUMBERISH | JSON_VALUES, "crop": HOSTILE_JSON["crop"], "filters": HOSTILE_JSON["filters"],
                  "filter": FILTER_PAIRS, "slot": st.sampled_from(["", "hat", "../x", "k"]) | JSON_VALUES}


@pytest.mark.parametrize("target", [None, *OUTFIT_HOSTILE, "unknown"])
@settings(max_examples=6, deadline=None, suppress_health_check=SLOW_OK)
@given(data=st.data(), as_json=st.booleans())
def test_photo_outfit_parameters(outfit_app, openapi_doc, web_catalog, scoreboard, target, data, as_json):
    fields = data.draw(_parameters(OUTFIT_VALID, OUTFIT_HOSTILE, target), "fields")
    photo = data.draw(st.sampled_from(["real", "real", "junk", "none"]), "photo") if target is None else "real"
    image = _photo(web_catalog) if photo == "real" else b"\x89PNG\r\n\x1a\nnope"
    client = outfit_app.test_client()
    if as_json:
        body = dict(fields)
        if photo != "none":
            body["image"] = base64.b64encode(image).decode()
        resp = client.post("/api/outfit", data=json.dumps(body), content_type="application/json")
    else:
        # A form carries strings: other values go as their JSON text, a crop box as "x0,y0,x1,y1".
        form = {k: v if isinstance(v, str) or k == "filter" else ",".join(map(str, v)) if k == "crop" and
                isinstance(v, list) else json.dumps(v) for k, v in fields.items()}
        if photo != "none":
            form["image"] = (io.BytesIO(image), "q.jpg")
        resp = client.post("/api/outfit", data=form, content_type="multipart/form-data")
    check_answer(openapi_doc, outfit_app, "post", resp, scoreboard)


@pytest.fixture(scope="module")
def analytics_app(tmp_path_factory, shared_data):
    """An app over a fresh database holding two evaluation runs and a sweep (no index needed)."""
    from indexer.evaluation.sweep import SweepPoint, record_sweep
    from indexer.settings import load_settings
    from indexer.store.db import upgrade_database
    from indexer.wiring import open_store
    from tests.analytics_fixtures import seed_runs
    from tests.conftest import write_config

    settings_ = load_settings(write_config(tmp_path_factory.mktemp("fuzz-analytics")), env={})
    upgrade_database(settings_.database_url)
    store = open_store(settings_)
    try:
        runs = seed_runs(store)
        sweep = record_sweep(store, [SweepPoint("Flat", None, None, 10, 1.0, 900.0, 4_000_000, 0.5, 20_000, 500),
                                     SweepPoint("HNSW32", None, 32, 10, 0.99, 2500.0, 6_000_000, 0.5, 20_000, 500)],
                             "fp", "gen-000001")
    finally:
        store.close()
    return make_test_app(settings_, None), runs, sweep


RUNISH = st.one_of(st.integers(-3, 5).map(str), st.integers(-10**20, 10**20).map(str), NUMBERISH)


@settings(max_examples=60, deadline=None, suppress_health_check=SLOW_OK)
@given(which=st.sampled_from(["runs", "run", "compare", "sweeps", "sweep"]), run=RUNISH,
       sweep=st.text(max_size=30), query=st.lists(st.tuples(
           st.sampled_from(["sort", "order", "run", "a", "b", "token"]) | st.text(max_size=6),
           st.sampled_from(["created_at", "recall@1", "mAP", "id", "asc", "desc", "1", "2"]) | RUNISH), max_size=4),
       real_ids=st.booleans())
def test_analytics_parameters(analytics_app, openapi_doc, scoreboard, which, run, sweep, query, real_ids):
    app, runs, sweep_id = analytics_app
    if real_ids:  # the real ids give the parsers' valid paths a fair share of the examples
        run, sweep = str(runs[0]), sweep_id
        query = query + [("run", str(runs[0])), ("run", str(runs[1]))] if which == "compare" else query
    path = {
        "runs": "/api/analytics/runs", "run": f"/api/analytics/runs/{quote(run, safe='')}",
        "compare": "/api/analytics/compare", "sweeps": "/api/analytics/sweeps",
        "sweep": f"/api/analytics/sweeps/{quote(sweep, safe='')}",
    }[which]
    resp = app.test_client().get(path, query_string=query, environ_base=LOCAL, follow_redirects=True)
    check_answer(openapi_doc, app, "get", resp, scoreboard)


@settings(max_examples=30, deadline=None, suppress_health_check=SLOW_OK)
@given(item=st.none() | NUMBERISH, form=st.fixed_dictionaries({}, optional={
    "threshold": NUMBERISH, "filter": FILTER_PAIRS}), photo=st.sampled_from(["real", "junk", "none"]))
def test_page_parameters(app, web_catalog, scoreboard, item, form, photo):
    """The pages parse ?item= and the no-JavaScript search form: an HTML answer, never a 5xx or traceback."""
    client = app.test_client()
    pages = [client.get("/", query_string={"item": item} if item is not None else None)]
    if photo != "none":
        form = {**form, "image": (io.BytesIO(_photo(web_catalog) if photo == "real" else b"GIF89a"), "q.jpg")}
    pages.append(client.post("/search", data=form, content_type="multipart/form-data"))
    for resp in pages:
        scoreboard.cases(1)
        event(f"status {resp.status_code}")
        text = resp.get_data(as_text=True)
        if resp.status_code >= 500 or "Traceback" in text:
            scoreboard.wrong(1)
        assert resp.status_code in (200, 400, 404), (resp.status_code, text[:300])
        assert resp.mimetype == "text/html" and "Traceback" not in text and 'File "' not in text
