"""The committed outfit model (config.toml outfit.checkpoint) is intact, labelled proxy, fits the configured slots
and was trained on vectors of the configured model; its recorded held-out numbers meet the acceptance bar."""

from __future__ import annotations

import json

from engine.outfit_model import load_outfit_model
from indexer.outfit_search import check_outfit_model
from indexer.outfit_service import outfit_rules
from indexer.service import create_embedder_from_settings
from indexer.settings import load_settings
from tests.conftest import REPO


def test_committed_outfit_model_fits_the_served_model():
    settings = load_settings(REPO / "config.toml", env={})
    path = settings.resolve_path(settings.outfit.checkpoint)
    model, meta = load_outfit_model(path)  # verifies the sha256 in the manifest beside it
    assert meta["proxy"] is True and "PROXY" in meta["trained_on"]
    embedder = create_embedder_from_settings(settings)
    # Fails when [model] changed without retraining: run `python manage.py index && python manage.py train-outfits`.
    check_outfit_model(model, meta, outfit_rules(settings), embedder.fingerprint, embedder.dim)
    assert meta["templates"] == ["+".join(t) for t in outfit_rules(settings).templates]
    assert path.stat().st_size < 8_000_000


def test_recorded_held_out_numbers():
    settings = load_settings(REPO / "config.toml", env={})
    meta = json.loads((settings.resolve_path(settings.outfit.checkpoint).parent /
                       (settings.resolve_path(settings.outfit.checkpoint).name + ".json")).read_text())["meta"]
    test = meta["metrics"]["proxy_test"]
    assert test["model"]["n_fitb"] >= 1000 and test["model"]["n_compatibility"] >= 2000
    assert test["model"]["fitb"] >= 0.60 and test["model"]["auc"] >= 0.85
    assert test["model"]["fitb"] >= test["visual_baseline"]["fitb"] + 0.10
    assert meta["metrics"]["slot_classifier_test"]["n"] > 1000
