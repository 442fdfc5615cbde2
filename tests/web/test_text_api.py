"""Search by words and thumbs up / down through /api/search, with a tiny text tower trained in the fixture; every
response checked against the OpenAPI document."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tests.web.openapi_check import assert_error, assert_matches


def train_tiny_tower(settings, embedder, epochs: int = 60):  # noqa: ANN001
    """A small tower trained for a few seconds on the indexed catalog's titles and article types, saved where
    [text] checkpoint points for this embedder. Returns {item id: title}."""
    from engine.models.text_tower import (
        TextTower,
        TextTowerConfig,
        TextVocabulary,
        save_text_tower,
        text_checkpoint_path,
    )
    from engine.train.text import TextTrainConfig, train_text
    from indexer.wiring import open_store

    store = open_store(settings)
    try:
        ids, _, vectors = store.load_vectors(embedder.fingerprint)
        items = store.get_items([int(i) for i in ids])
    finally:
        store.close()
    titles = [items[int(i)]["title"] for i in ids]
    types = [items[int(i)]["article_type"] or "" for i in ids]
    vocab = TextVocabulary.from_texts(titles + types)
    tower = TextTower(TextTowerConfig(dim=vectors.shape[1], context_length=24, width=64, heads=2, layers=1),
                      vocab.size)
    train_text(tower, vocab, vectors, lambda idx, rng: [titles[i] if rng.random() < 0.7 else types[i] for i in idx],
               TextTrainConfig(epochs=epochs, batch_size=len(ids), lr=1e-2, warmup_steps=5), progress=False)
    path = text_checkpoint_path(settings.resolve_path(settings.text.checkpoint), embedder.fingerprint)
    save_text_tower(path, tower, vocab, {"image_fingerprint": embedder.fingerprint})
    return {int(i): t for i, t in zip(ids, titles, strict=True)}


@pytest.fixture(scope="module")
def titles(web_settings, small_embedder):
    return train_tiny_tower(web_settings, small_embedder)


def test_text_only_search_finds_the_titled_item(client, openapi_doc, titles):
    found = 0
    sample = list(titles.items())[:20]
    for item_id, title in sample:
        resp = client.post("/api/search", json={"text": title, "k": 5})
        body = assert_matches(openapi_doc, "/api/search", "post", resp)
        assert body["query"]["text"] == title and body["regions"] == [] and body["query"]["width"] is None
        assert len(body["results"]) == 5
        found += item_id in [r["id"] for r in body["results"]]
    assert found >= 15, f"only {found} of {len(sample)} titles found their item in the top 5"


def test_filters_apply_inside_a_text_query(client, openapi_doc, titles, catalog_rows):
    gender = next(r["gender"] for r in catalog_rows if r["gender"])
    resp = client.post("/api/search", json={"text": "shirt", "k": 10, "filters": {"gender": [gender]}})
    body = assert_matches(openapi_doc, "/api/search", "post", resp)
    assert body["results"] and all(r["gender"] == gender for r in body["results"])


def test_multipart_photo_plus_modifier_and_form_ids(client, openapi_doc, titles, catalog_rows, web_catalog):
    row = catalog_rows[3]
    data = (web_catalog[1].parent / row["image"]).read_bytes()
    plain = client.post("/api/search", data={"image": (io.BytesIO(data), "q.jpg"), "k": "8"}).get_json()
    drop = plain["results"][1]["id"]
    resp = client.post("/api/search", data={"image": (io.BytesIO(data), "q.jpg"), "k": "8", "text": "in red",
                                            "negative_ids": str(drop)})
    body = assert_matches(openapi_doc, "/api/search", "post", resp)
    assert body["query"]["text"] == "in red" and body["query"]["negative_ids"] == [drop]
    assert body["query"]["width"] > 0 and [r["source"] for r in body["regions"]] == ["whole"]
    assert drop not in [r["id"] for r in body["results"]]


def test_thumbs_down_drops_items_and_their_look_alikes(client, openapi_doc, titles, app):
    title = next(iter(titles.values()))
    first = client.post("/api/search", json={"text": title, "k": 12}).get_json()["results"]
    down = [first[0]["id"], first[1]["id"]]
    resp = client.post("/api/search", json={"text": title, "k": 12, "negative_ids": down})
    body = assert_matches(openapi_doc, "/api/search", "post", resp)
    got = [r["id"] for r in body["results"]]
    assert not set(down) & set(got)
    engine = app.extensions["lookalike"].query
    negatives = engine._item_vectors(down)
    hit_vectors = engine._item_vectors(got)
    assert (hit_vectors @ negatives.T).max() < engine.weights.look_alike  # no look-alike of a thumbs-down item left


def test_thumbs_up_alone_searches_like_the_item(client, openapi_doc, titles):
    item_id = next(iter(titles))
    resp = client.post("/api/search", json={"positive_ids": [item_id], "k": 3})
    body = assert_matches(openapi_doc, "/api/search", "post", resp)
    assert body["results"][0]["id"] == item_id


@pytest.mark.parametrize("payload, status, words", [
    ({"text": "   "}, 400, "text is empty"),
    ({"text": "x" * 201}, 400, "too long"),
    ({"negative_text": 5, "text": "shirt"}, 400, "negative_text must be a string"),
    ({"text": "shirt", "negative_ids": [999999999]}, 400, "unknown item id"),
    ({"text": "shirt", "positive_ids": "abc"}, 400, "positive_ids must be a whole number"),
    ({"text": "shirt", "positive_ids": {"a": 1}}, 400, "must be a list of item ids"),
    ({"k": 5}, 400, "nothing to search for"),
    ({"negative_ids": []}, 400, "nothing to search for"),
    ({"negative_text": "striped"}, 400, "nothing to search for"),
])
def test_bad_text_queries_are_clear_400s(client, openapi_doc, titles, payload, status, words):
    message = assert_error(openapi_doc, client.post("/api/search", json=payload), status)
    assert words in message


def test_words_without_a_text_model_are_a_503_naming_the_command(client, openapi_doc, app, tmp_path, monkeypatch):
    from indexer.search.composed import TextModel

    engine = app.extensions["lookalike"].query
    monkeypatch.setattr(engine, "text_model", TextModel(tmp_path / "none"))
    resp = client.post("/api/search", json={"text": "navy shirt"})
    message = assert_error(openapi_doc, resp, 503)
    assert "train-text" in message and resp.get_json()["error"]["code"] == "text_unavailable"


def test_composition_arithmetic():
    from indexer.search.composed import CompositionWeights, compose_vector, drop_look_alikes

    e = np.eye(4, dtype=np.float32)
    w = CompositionWeights(modifier=0.5, beta=1.0, gamma=1.0, negative_text=1.0)
    q = compose_vector(text=e[0], photo=e[1], weights=w)
    assert np.allclose(q, (e[0] + e[1]) / np.sqrt(2))
    q = compose_vector(text=e[0], negatives=e[2:3], weights=w)
    assert q @ e[2] < 0 < q @ e[0]
    q = compose_vector(positives=e[3:4], negative_text=e[0], weights=w)
    assert q @ e[3] > 0 > q @ e[0]
    with pytest.raises(ValueError, match="nothing to search for"):
        compose_vector(negatives=e[:1], weights=w)
    assert drop_look_alikes(e, e[:1], 0.9).tolist() == [False, True, True, True]


def _manage(settings, *args):  # noqa: ANN001
    from click.testing import CliRunner

    import manage

    return CliRunner().invoke(manage.cli, [*args, "--config", str(settings.source)], catch_exceptions=False)


def test_cli_search_by_words(web_settings, titles):
    import json

    item_id, title = list(titles.items())[2]
    result = _manage(web_settings, "search", "--text", title, "-k", "5", "--json")
    assert result.exit_code == 0, result.output
    assert item_id in [r["id"] for r in json.loads(result.output)["results"]]
    result = _manage(web_settings, "search", "--text", title, "-k", "5", "--unlike", str(item_id))
    assert result.exit_code == 0 and title not in result.output.splitlines()[0]


@pytest.mark.parametrize("args, words", [
    ((), "nothing to search for"),
    (("--text", "  "), "--text is empty"),
    (("--text", "x" * 300), "too long"),
    (("--text", "shirt", "--unlike", "999999"), "unknown item id"),
])
def test_cli_search_errors_are_one_line(web_settings, titles, args, words):
    result = _manage(web_settings, "search", *args)
    assert result.exit_code == 2 and words in result.output and "Traceback" not in result.output


def test_train_text_command_writes_a_keyed_checkpoint_and_resumes(web_settings, web_catalog, small_embedder,
                                                                    tmp_path):
    import json

    out, work = tmp_path / "t.pt", tmp_path / "work"
    args = ["train-text", "--catalog", str(web_catalog[1]), "--out", str(out), "--work-dir", str(work), "--width",
            "32", "--layers", "1", "--heads", "2", "--context-length", "16", "--batch-size", "32", "--no-progress"]
    result = _manage(web_settings, *args, "--epochs", "2")
    assert result.exit_code == 0, result.output
    manifest = json.loads(out.with_suffix(".pt.json").read_text())
    assert manifest["meta"]["image_fingerprint"] == small_embedder.fingerprint
    assert (work / f"vectors-{small_embedder.fingerprint}.npz").is_file()
    history = json.loads((work / f"history-{small_embedder.fingerprint}.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    # Mark the saved state: a resumed run carries its records; a run from scratch would recompute them.
    import torch

    state_file = work / f"state-{small_embedder.fingerprint}.pt"
    state = torch.load(state_file, weights_only=False)
    state["history"][0]["loss"] = 99.0
    torch.save(state, state_file)
    result = _manage(web_settings, *args, "--epochs", "3", "--resume")
    assert result.exit_code == 0, result.output
    resumed = json.loads((work / f"history-{small_embedder.fingerprint}.json").read_text())
    assert [h["epoch"] for h in resumed] == [1, 2, 3] and resumed[0]["loss"] == 99.0 and resumed[1] == history[1]


def test_colour_words_rank_that_colour_first_with_a_trained_colour_head(client, app, openapi_doc, titles, web_settings,
                                                                         web_catalog, catalog_rows, tmp_path,
                                                                         monkeypatch):
    """`manage.py train-colour-head` on the indexed catalog, then words naming a colour rank items of that colour
    first (and negative words naming it push them out), which the words' vector alone does not do."""
    from collections import Counter

    from indexer.search.composed import TextModel

    out = tmp_path / "colour" / "head.pt"
    splits = tmp_path / "splits.csv"  # every product trains (no val epoch pick): the head learns this small catalog
    splits.write_text("id,split\n" + "".join(f"{r['id']},train\n" for r in catalog_rows))
    result = _manage(web_settings, "train-colour-head", "--catalog", str(web_catalog[1]), "--out", str(out),
                     "--splits", str(splits),
                     "--work-dir", str(tmp_path / "work"), "--epochs", "300", "--hidden", "64", "--layers", "1",
                     "--min-count", "3", "--no-progress")
    assert result.exit_code == 0 and "wrote" in result.output, result.output
    colour = Counter(r["base_colour"] for r in catalog_rows if r["base_colour"]).most_common(1)[0][0]

    def share(body: dict) -> float:
        return float(np.mean([r["base_colour"] == colour for r in body["results"]]))

    plain = client.post("/api/search", json={"text": colour, "k": 8}).get_json()
    plain_shirt = client.post("/api/search", json={"text": "shirt", "k": 8}).get_json()
    engine = app.extensions["lookalike"].query
    monkeypatch.setattr(engine, "text_model", TextModel(engine.text_model.configured, None, "torch", out))
    body = assert_matches(openapi_doc, "/api/search", "post", client.post("/api/search", json={"text": colour, "k": 8}))
    assert body["query"]["labels"] == {"colour": [colour]}
    assert share(body) >= 0.75 and share(body) > share(plain), (share(body), share(plain))
    away = client.post("/api/search", json={"text": "shirt", "negative_text": colour, "k": 8}).get_json()
    assert away["query"]["labels"] == {"colour": [f"not {colour}"]}
    assert share(away) < share(plain_shirt) or share(plain_shirt) == 0
    assert share(away) <= 0.125


def test_evaluate_text_command_reports_every_metric(web_settings, titles):
    """`manage.py evaluate text` on the small indexed catalog: the KAGL metrics, in [0, 1], and no traceback when a
    catalog this small has no composed cases."""
    import json

    result = _manage(web_settings, "evaluate", "text", "--no-store", "--json", "--composed", "50")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    for key in ("title_recall@1", "title_recall@10", "title_mrr@10", "article_type_precision@1",
                "base_colour_precision@1"):
        assert 0.0 <= out[key] <= 1.0, key
    assert out["title_queries"] > 0 and out["composed_queries"] >= 0
