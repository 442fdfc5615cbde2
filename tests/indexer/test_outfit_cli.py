"""manage.py outfit / make-outfits / evaluate outfits in real subprocesses, over the small outfit catalog."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_manage
from tests.indexer.test_polyvore import write_fixture
from tests.outfit_fixtures import outfit_catalog


@pytest.fixture(scope="module")
def fixture(tmp_path_factory, shared_data, small_embedder):
    return outfit_catalog(tmp_path_factory, small_embedder)


def config_of(fixture) -> Path:
    return Path(fixture.settings.source)


def catalog_rows(fixture) -> list[dict[str, str]]:
    with fixture.csv.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_outfit_for_a_catalog_id_and_a_photo(fixture):
    rows = catalog_rows(fixture)
    top = next(r for r in rows if r["sub_category"] == "Topwear")
    res = run_manage("outfit", top["id"], "--json", "--per-slot", "2", config=config_of(fixture))
    assert res.returncode == 0, res.stderr
    body = json.loads(res.stdout)
    assert body["query_slot"] == "topwear" and body["model"]["proxy"] is True
    assert [s["slot"] for s in body["slots"]] == ["bottomwear", "footwear", "bag", "accessory"]
    assert all(1 <= len(s["items"]) <= 2 for s in body["slots"])
    shoe = next(r for r in rows if r["master_category"] == "Footwear")
    res = run_manage("outfit", str(fixture.csv.parent / shoe["image"]), "--slot", "footwear", "--filter",
                     "gender=Women", config=config_of(fixture))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("query slot: footwear (client)") and "PROXY" in res.stdout
    assert "bottomwear (" in res.stdout


def test_make_outfits_then_evaluate_reproduces_the_training_report(fixture, tmp_path):
    out = tmp_path / "proxy"
    res = run_manage("make-outfits", "--out", str(out), "--outfits", "120", "--catalog", str(fixture.csv),
                     config=config_of(fixture))
    assert res.returncode == 0, res.stderr
    assert "PROXY test" in res.stdout
    assert json.loads((out / "manifest.json").read_text())["proxy"] is True
    # The same PROXY test set the fixture's training run held out (same splits, seed and size).
    held_out = fixture.checkpoint.parent / "proxy"
    assert (out / "test.json").read_text() == (held_out / "test.json").read_text()
    res = run_manage("evaluate", "outfits", "--outfits", str(out / "test.json"), "--questions",
                     str(out / "compatibility_test.txt"), "--questions", str(out / "fill_in_blank_test.json"),
                     "--json", config=config_of(fixture))
    assert res.returncode == 0, res.stderr
    body = json.loads(res.stdout)
    assert body["proxy"] is True and "PROXY" in body["label"]
    assert body["n_fitb"] > 20 and body["n_compatibility"] > 40 and body["dropped_questions"] == 0
    reported = fixture.manifest["meta"]["metrics"]["proxy_test"]
    assert body["fitb"] == pytest.approx(reported["model"]["fitb"])
    assert body["auc"] == pytest.approx(reported["model"]["auc"])
    assert body["visual_baseline"]["fitb"] == pytest.approx(reported["visual_baseline"]["fitb"])
    assert 0.95 <= body["taxonomy_rules_ceiling"]["auc"] <= 1.0


def test_evaluate_polyvore_items_embedded_from_their_images(fixture, tmp_path):
    """Items that are not catalog items (real Polyvore) are embedded from <root>/images/<item_id>.jpg."""
    outfits = write_fixture(tmp_path / "polyvore")
    rows = catalog_rows(fixture)
    (tmp_path / "polyvore" / "images").mkdir()
    for item_id, row in zip(json.loads((tmp_path / "polyvore" / "polyvore_item_metadata.json").read_text()), rows,
                            strict=False):
        shutil.copyfile(fixture.csv.parent / row["image"], tmp_path / "polyvore" / "images" / f"{item_id}.jpg")
    res = run_manage("evaluate", "outfits", "--outfits", str(outfits), "--questions",
                     str(outfits.parent / "compatibility_test.txt"), "--questions",
                     str(outfits.parent / "fill_in_blank_test.json"), "--json", config=config_of(fixture))
    assert res.returncode == 0, res.stderr
    body = json.loads(res.stdout)
    assert body["proxy"] is False and body["n_compatibility"] == 2 and body["n_fitb"] == 1
    assert "taxonomy_rules_ceiling" not in body and body["n_missing_items"] == 0


def invoke(fixture, *args: str):
    """In-process run of the CLI (cheap checks of messages and formatting)."""
    from click.testing import CliRunner

    import manage

    return CliRunner().invoke(manage.cli, [*args[:2], "--config", str(config_of(fixture)), *args[2:]]
                              if args[0] == "evaluate" else [args[0], "--config", str(config_of(fixture)), *args[1:]])


def test_cli_messages_and_text_report(fixture, tmp_path):
    res = invoke(fixture, "outfit", "no-such-id")
    assert res.exit_code == 2 and "neither an image file nor a catalog id" in res.output
    held_out = fixture.checkpoint.parent / "proxy"
    res = invoke(fixture, "evaluate", "outfits", "--outfits", str(held_out / "test.json"), "--questions",
                 str(held_out / "fill_in_blank_test.json"))
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("PROXY outfit evaluation") and "not real outfits" in lines[1]
    assert all(line.strip().startswith("PROXY") for line in lines[3:])
    assert "visual similarity only" in res.output and "ceiling" in res.output
    res = invoke(fixture, "evaluate", "outfits", "--outfits", str(held_out / "test.json"), "--questions",
                 str(held_out / "test.json"))
    assert res.exit_code == 2 and "error:" in res.output


def test_train_outfits_if_stale_keeps_a_current_model(fixture, small_embedder, tmp_path):
    from indexer.outfits.wiring import outfit_model_status

    before = fixture.checkpoint.stat().st_mtime_ns
    res = invoke(fixture, "train-outfits", "--if-stale", "--threads", "1")
    assert res.exit_code == 0 and "outfit model is current" in res.output, res.output
    assert fixture.checkpoint.stat().st_mtime_ns == before
    ok, why = outfit_model_status(fixture.settings, small_embedder, str(tmp_path / "missing.pt"))
    assert not ok and "not found" in why


def test_train_outfits_cli_writes_a_checkpoint_with_its_manifest(fixture, tmp_path):
    out = tmp_path / "m.pt"
    res = invoke(fixture, "train-outfits", "--out", str(out), "--train-outfits", "150", "--val-outfits", "20",
                 "--test-outfits", "40", "--epochs", "1", "--slot-epochs", "1", "--hidden", "16", "--embed-dim", "8",
                 "--colour-bins", "2", "--proxy-dir", "", "--threads", "1")
    assert res.exit_code == 0, res.output
    assert "PROXY train:" in res.output and "held-out PROXY test" in res.output
    meta = json.loads((tmp_path / "m.pt.json").read_text())["meta"]
    assert meta["proxy"] is True and meta["model"]["colour_bins"] == 2 and meta["model"]["embed_dim"] == 8
    assert meta["command"] and meta["fingerprint"] == fixture.manifest["meta"]["fingerprint"]
