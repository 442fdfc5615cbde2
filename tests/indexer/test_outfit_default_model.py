"""The committed outfit model for the configured model (config.toml outfit.checkpoint, a folder of
<fingerprint>.pt) is intact, labelled proxy, fits the configured slots, and its recorded held-out numbers meet the
acceptance bar."""

from __future__ import annotations

import dataclasses
import json

import pytest

from engine.outfits.model import load_outfit_model
from indexer.embedders import create_embedder_from_settings
from indexer.outfits.service import check_outfit_model
from indexer.outfits.wiring import outfit_checkpoint, outfit_rules
from indexer.settings import load_settings
from tests.conftest import REPO


@pytest.fixture(scope="module")
def committed():
    settings = load_settings(REPO / "config.toml", env={})
    embedder = create_embedder_from_settings(settings)
    path = outfit_checkpoint(settings, embedder.fingerprint)
    # Missing when [model] changed without an outfit model for it: `python manage.py index && python manage.py
    # train-outfits` writes models/outfits/<fingerprint>.pt (docs/outfits.md).
    assert path.is_file(), f"no outfit model for the configured model: {path}"
    return settings, embedder, path


def test_committed_outfit_model_fits_the_served_model(committed):
    settings, embedder, path = committed
    model, meta = load_outfit_model(path)  # verifies the sha256 in the manifest beside it
    assert meta["proxy"] is True and "PROXY" in meta["trained_on"]
    check_outfit_model(model, meta, outfit_rules(settings), embedder.fingerprint, embedder.dim)
    assert meta["templates"] == ["+".join(t) for t in outfit_rules(settings).templates]
    assert path.stat().st_size < 8_000_000


def test_recorded_held_out_numbers(committed):
    _, _, path = committed
    meta = json.loads(path.with_name(path.name + ".json").read_text())["meta"]
    test = meta["metrics"]["proxy_test"]
    assert test["model"]["n_fitb"] >= 1000 and test["model"]["n_compatibility"] >= 2000
    assert test["model"]["fitb"] >= 0.60 and test["model"]["auc"] >= 0.85
    assert test["model"]["fitb"] >= test["visual_baseline"]["fitb"] + 0.10
    assert meta["metrics"]["slot_classifier_test"]["n"] > 1000


def test_checkpoint_setting_is_a_file_or_a_folder_of_fingerprints(committed):
    settings = committed[0]
    folder = dataclasses.replace(settings, outfit=dataclasses.replace(settings.outfit, checkpoint="models/outfits"))
    assert outfit_checkpoint(folder, "abc") == REPO / "models" / "outfits" / "abc.pt"
    assert outfit_checkpoint(folder, "abc", "/tmp/x.pt").as_posix() == "/tmp/x.pt"
