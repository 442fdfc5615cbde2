"""Server-rendered pages: search page, no-JavaScript search, item page, error pages, offline assets."""

from __future__ import annotations

import io
import re
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "web"


def test_search_page_has_upload_filters_and_no_external_assets(client):
    resp = client.get("/")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert 'type="file"' in html and 'id="dropzone"' in html and 'id="crop-stage"' in html
    assert 'data-column="article_type"' in html and 'data-column="base_colour"' in html
    assert 'id="threshold"' in html and 'id="load-more"' in html
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    for src in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert src.startswith(("/", "#", "data:")), f"non-local asset {src}"
    for name in ("app.css", "app.js", "search.js", "favicon.svg"):
        static = client.get(f"/static/{name}")
        assert static.status_code == 200, name


def test_templates_and_static_reference_nothing_remote():
    for path in [*WEB.joinpath("templates").rglob("*"), *WEB.joinpath("static").rglob("*")]:
        if not path.is_file() or path.suffix not in (".html", ".js", ".css", ".svg"):
            continue
        text = path.read_text()
        remote = [u for u in re.findall(r"https?://[^\s\"')]+", text) if not u.startswith("http://www.w3.org/")]
        assert not remote, f"{path.name} references {remote}"


def test_search_without_javascript(client, web_catalog, catalog_rows):
    row = catalog_rows[2]
    data = (web_catalog[1].parent / row["image"]).read_bytes()
    resp = client.post("/search", data={"image": (io.BytesIO(data), "q.jpg"),
                                        "filter": [f"master_category:{row['master_category']}", ""],
                                        "threshold": "0"}, content_type="multipart/form-data")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert html.count('class="card" data-item-id') == 24
    first = html.index('class="card" data-item-id')
    assert row["title"] in html[first:first + 2000]
    assert "data:image/jpeg;base64," in html  # the query photo is shown back
    assert f'value="master_category:{row["master_category"]}" selected' in html


def test_search_without_javascript_reports_bad_upload(client):
    resp = client.post("/search", data={"image": (io.BytesIO(b"not an image"), "q.jpg")},
                       content_type="multipart/form-data")
    assert resp.status_code == 400 and "not a supported image" in resp.get_data(as_text=True)
    resp = client.post("/search", data={}, content_type="multipart/form-data")
    assert resp.status_code == 400 and "choose a photo first" in resp.get_data(as_text=True)


def test_item_page_shows_details_and_similar_items(client, catalog_rows):
    row = catalog_rows[0]
    resp = client.get("/items/1")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert f"<h1 class=\"item-title\">{row['title']}</h1>" in html
    assert row["article_type"] in html and row["base_colour"] in html and row["id"] in html
    assert 'src="/items/1/image"' in html
    assert html.count('class="card" data-item-id') == 24 and 'href="/items/1"' not in html.split("similar-title")[1]
    assert html.count('class="more-like"') == 24 and "More like this, with filters" in html


def test_more_like_this_link_renders_similar_items_without_javascript(client, catalog_rows):
    resp = client.get("/?item=1")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and html.count('class="card" data-item-id') == 24
    assert catalog_rows[0]["title"] in html
    assert client.get("/?item=99999").status_code == 404
    assert client.get("/?item=../../etc").status_code == 404


def test_error_pages_are_html_without_details(client):
    for url in ("/nope", "/items/999999", "/items/abc"):
        resp = client.get(url)
        assert resp.status_code == 404 and resp.mimetype == "text/html"
        assert "Back to search" in resp.get_data(as_text=True)
    resp = client.delete("/")
    assert resp.status_code == 405 and resp.mimetype == "text/html"


def test_api_urls_match_the_routes(app):
    from flask import url_for

    from web.api.serializers import item_json

    with app.test_request_context("/"):
        urls = item_json({"id": 7, "title": "x", "attributes": {}, "status": "active"})
        assert urls["image_url"] == url_for("pages.item_image", item_id=7)
        assert urls["thumb_url"] == url_for("pages.item_thumb", item_id=7)
        assert urls["item_url"] == url_for("pages.item_page", item_id=7)
        assert "status" not in urls
