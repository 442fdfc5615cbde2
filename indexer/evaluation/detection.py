"""`manage.py evaluate detection`: the garment detector's AP@0.5 and recall@0.5 per slot on SYNTHETIC scenes of
test products (never seen in training), stored as an evaluation run (kind "detection") for /analytics.

The scenes are ``indexer.datasets.scenes`` scenes drawn from the test split of the served checkpoint's splits.csv,
seeded apart from training's ("test" is mixed into every scene's seed). Every scene goes through the same
``GarmentDetector.detect_batch`` the QueryEngine calls (letterbox, trunk, head, decoding), at a low threshold for
AP; recall@0.5 counts the objects found at the served threshold (web.detector_threshold). Objects mostly hidden
(< 20% visible) or tiny (< 3% of the square's side) are ignored: neither to be found nor false alarms.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from engine.models.detector import photo_to_square
from engine.train.detector import detection_metrics
from indexer.settings import Settings
from indexer.training.detector import scene_synthesizer, square_objects

EVAL_BATCH = 16
AP_THRESHOLD = 0.01


@dataclass
class DetectionEvaluation:
    metrics: dict[str, float]
    per_slot: dict[str, dict[str, float]]
    details: dict[str, Any] = field(default_factory=dict)
    run_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**self.metrics, "kind": "detection", "synthetic": True, "per_slot": self.per_slot, **self.details,
                "run_id": self.run_id}


def evaluate_detection(settings: Settings, detector, catalog: Path, images_root: Path | None,  # noqa: ANN001
                       splits: Path, scenes: int = 500, seed: int = 0, progress: bool = True
                       ) -> DetectionEvaluation:
    """AP@0.5 / recall@0.5 per slot of ``detector`` (a GarmentDetector) on ``scenes`` SYNTHETIC test scenes."""
    t0 = time.perf_counter()
    synth = scene_synthesizer(settings, catalog, images_root, splits, "test", seed)
    slots = list(detector.slots)
    predictions, truths = [], []
    digest = hashlib.sha256(f"detection|{seed}|{scenes}".encode())
    bar = tqdm(total=scenes, desc="test scenes", unit="scene", disable=not progress)
    for start in range(0, scenes, EVAL_BATCH):
        batch = [synth.scene(i) for i in range(start, min(scenes, start + EVAL_BATCH))]
        found = detector.detect_batch([s.image for s in batch], threshold=AP_THRESHOLD)
        for scene, dets in zip(batch, found, strict=True):
            w, h = scene.image.size
            predictions.append([(photo_to_square(d.box, w, h), slots.index(d.label), d.score) for d in dets])
            truths.append(square_objects(scene, slots))
            digest.update(repr([o.as_dict() for o in scene.objects]).encode())
        bar.update(len(batch))
    bar.close()
    per_slot = detection_metrics(predictions, truths, slots, 0.5, detector.threshold)
    overall = per_slot.pop("all", {"AP@0.5": 0.0, "recall@0.5": 0.0, "objects": 0})
    metrics = {"AP@0.5": round(overall["AP@0.5"], 6), "recall@0.5": round(overall["recall@0.5"], 6),
               "n_scenes": scenes, "n_objects": int(overall["objects"])}
    per_label = {slot: {"AP@0.5": round(m["AP@0.5"], 6), "recall@0.5": round(m["recall@0.5"], 6),
                        "n_queries": int(m["objects"])} for slot, m in per_slot.items()}
    details = {"synthetic": True, "per_label": per_label, "served_threshold": detector.threshold,
               "detector": {k: detector.meta.get(k) for k in ("image_fingerprint", "input_size", "sha256", "slots")},
               "scenes": synth.describe(), "splits": str(splits), "dataset_sha256": digest.hexdigest(),
               "seconds": round(time.perf_counter() - t0, 1)}
    return DetectionEvaluation(metrics, per_label, details)


def record_detection_run(store, evaluation: DetectionEvaluation, fingerprint: str, command: str) -> int:  # noqa: ANN001
    """Store the run (kind "detection") for `evaluate runs` and /analytics; returns its id."""
    from indexer.store.tables import EvaluationRun

    d = evaluation.details
    run = EvaluationRun(kind="detection", model_fingerprint=fingerprint, index_spec="",
                        dataset_sha256=d["dataset_sha256"],
                        dataset=f"SYNTHETIC scenes of test products ({evaluation.metrics['n_scenes']})",
                        metrics=evaluation.metrics, details={**d, "command": command})
    with store.sessions() as s:
        s.add(run)
        s.commit()
        evaluation.run_id = int(run.id)
    return evaluation.run_id


def format_detection(evaluation: DetectionEvaluation, echo: Callable[[str], None]) -> None:
    """Human-readable summary: overall, then one line per slot."""
    m = evaluation.metrics
    echo(f"SYNTHETIC detection on {m['n_scenes']} scenes of test products ({m['n_objects']} garments): "
         f"AP@0.5 {m['AP@0.5']:.3f}, recall@0.5 {m['recall@0.5']:.3f} at threshold "
         f"{evaluation.details['served_threshold']}")
    for slot, s in evaluation.per_slot.items():
        echo(f"    {slot:<12} n={s['n_queries']:<5} AP@0.5 {s['AP@0.5']:.3f}  recall@0.5 {s['recall@0.5']:.3f}")
    if evaluation.run_id:
        echo(f"  stored as evaluation run {evaluation.run_id}")
