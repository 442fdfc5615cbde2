"""`manage.py train-detector` (resumable, checkpoint keyed to the image model), `manage.py evaluate detection`
(AP@0.5 per slot on SYNTHETIC test-product scenes, stored as a run) and the served evaluation's detector row, on the
demo catalog with the small ImageNet model (quality is not the point here; bench/street.py and the committed
checkpoint's manifest measure it)."""

from __future__ import annotations

import csv
import json

from engine.localize import Detection
from indexer.catalog.splits import assign_splits, write_splits
from indexer.settings import DEMO_CATALOG_CSV, load_settings
from tests.conftest import run_manage


def _splits(tmp_path):
    with DEMO_CATALOG_CSV.open(newline="") as fh:
        ids = [r["id"] for r in csv.DictReader(fh)]
    return write_splits(tmp_path / "splits.csv", assign_splits(ids, 0.2, 0.3, seed=0))


def test_train_resume_and_evaluate_detection(config_path, tmp_path):
    splits = _splits(tmp_path)
    common = ["--catalog", str(DEMO_CATALOG_CSV), "--splits", str(splits)]
    out, work = tmp_path / "detector", tmp_path / "work"
    args = ["train-detector", *common, "--out", str(out), "--work-dir", str(work), "--train-scenes", "12",
            "--val-scenes", "6", "--input-size", "128", "--width", "8", "--batch-size", "4", "--no-progress"]
    first = run_manage(*args, "--epochs", "1", config=config_path)
    assert first.returncode == 0, first.stderr
    assert "SYNTHETIC scenes: 12 from" in first.stdout and "best SYNTHETIC val AP@0.5" in first.stdout
    [ckpt] = out.glob("*.pt")
    manifest = json.loads((out / f"{ckpt.name}.json").read_text())
    meta = manifest["meta"]
    assert ckpt.stem == meta["image_fingerprint"] and meta["synthetic"] is True
    assert meta["slots"] == ["topwear", "bottomwear", "one_piece", "footwear", "bag", "accessory"]
    assert [h["epoch"] for h in meta["history"]] == [1] and manifest["bytes"] < 5_000_000

    again = run_manage(*args, "--epochs", "2", "--resume", config=config_path)
    assert again.returncode == 0, again.stderr
    assert "resuming after epoch 1" in again.stdout
    state = json.loads((out / f"{ckpt.name}.json").read_text())["meta"]["history"]
    assert [h["epoch"] for h in state][-1] in (1, 2)  # the best epoch's checkpoint; the state has both epochs

    # The evaluation needs the detector where web.detector_checkpoint points.
    cfg = config_path.read_text() + f'\n[web]\ndetector_checkpoint = "{out}"\n'
    config_path.write_text(cfg)
    ev = run_manage("evaluate", "detection", *common, "--scenes", "6", "--json", config=config_path)
    assert ev.returncode == 0, ev.stderr
    body = json.loads(ev.stdout)
    assert body["kind"] == "detection" and body["synthetic"] is True and body["n_scenes"] == 6
    assert 0.0 <= body["AP@0.5"] <= 1.0 and body["per_label"] and isinstance(body["run_id"], int)
    runs = run_manage("evaluate", "runs", "--json", config=config_path)
    assert runs.returncode == 0 and any(r["kind"] == "detection" for r in json.loads(runs.stdout))


def test_clear_errors(config_path, tmp_path):
    missing = run_manage("train-detector", "--splits", str(tmp_path / "nope.csv"), config=config_path)
    assert missing.returncode == 2 and "needs the served checkpoint's product splits" in missing.stderr
    assert "Traceback" not in missing.stderr
    no_model = run_manage("evaluate", "detection", "--catalog", str(DEMO_CATALOG_CSV), "--splits",
                          str(_splits(tmp_path)), config=config_path)
    assert no_model.returncode == 2 and "train-detector" in no_model.stderr and "Traceback" not in no_model.stderr


class _TopHalf:
    def detect(self, image):
        return [Detection((0.1, 0.1, 0.9, 0.9), "topwear", 0.8)]


def test_served_evaluation_has_a_detector_row(config_path, small_embedder, tmp_path):
    from indexer.evaluation.served import evaluate_served
    from tests.indexer.test_served_evaluation import _pair_set

    settings = load_settings(config_path, env={})
    report = evaluate_served(settings, small_embedder, _pair_set(tmp_path / "q"), ks=(1, 20), synthetic=True,
                             detector=_TopHalf())
    rows = report.extra["served"]
    assert list(rows) == ["off", "crops", "auto", "detector"] and report.extra["default_mode"] == "detector"
    # Shop photos are product shots (searched whole, nothing detected); the 4 street photos get the garment.
    assert rows["detector"]["queries_with_garments"] == 4 and rows["auto"]["queries_with_garments"] == 0
    assert rows["detector"]["crop_ranked_first_over_the_right_item"] == 0
    assert report.metrics["recall@1"] == rows["detector"]["recall@1"]
