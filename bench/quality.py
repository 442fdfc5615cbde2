#!/usr/bin/env python3
"""Retrieval quality of the base backbone vs the fine-tuned default model -> BENCHMARKS.md "quality" section.

Runs the very commands an analyst would (``manage.py make-pairs synthetic`` and ``manage.py evaluate
street2shop|category --json``) in subprocesses, on the test products of the default model's splits file (products
the model never saw in training), for two models: the configured backbone without a checkpoint ("base") and with
the fine-tuned checkpoint. Every run is also stored in SQL when the configured database is migrated.

    python bench/quality.py [--config config.toml] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import REPO, markdown_table, update_section  # noqa: E402
from indexer.settings import load_settings  # noqa: E402

KEYS = ("recall@1", "recall@5", "recall@10", "recall@20", "mAP")


def run(args: list[str], config: str) -> tuple[str, dict]:
    """Run ``manage.py ARGS --json``; returns (the command as shown in the report, the parsed JSON)."""
    cmd = [sys.executable, "manage.py", *args]
    env = {**os.environ, "LOOKALIKE_CONFIG": config}
    shown = " ".join(shlex.quote(a) for a in ["python", "manage.py", *args])
    print(f"$ {shown}", flush=True)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {shown}\n{proc.stderr[-3000:]}")
    if "--json" not in args:
        return shown, {}
    return shown, json.loads(proc.stdout)


def metrics_row(name: str, r: dict) -> list[object]:
    return [name, *(round(r[k], 4) for k in KEYS), r["n_queries"], r["n_gallery"], r["model"]["fingerprint"][:12]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config.toml")
    ap.add_argument("--pairs-dir", default="var/pairs/synthetic-test", help="Where the synthetic test pairs go.")
    ap.add_argument("--threads", default="2")
    ap.add_argument("--no-store", action="store_true", help="Do not store the runs in SQL.")
    args = ap.parse_args()
    settings = load_settings(args.config)
    checkpoint = settings.model.checkpoint
    if not checkpoint:
        raise SystemExit("model.checkpoint is empty: nothing fine-tuned to compare with the base backbone")
    ckpt = settings.resolve_path(checkpoint)
    manifest = json.loads(Path(f"{ckpt}.json").read_text())
    meta = manifest["meta"]
    splits = Path(meta["data"]["splits"])
    splits = splits if splits.is_absolute() else REPO / splits
    pairs = Path(args.pairs_dir)
    common = ["--threads", args.threads, "--no-progress"] + (["--no-store"] if args.no_store else [])
    commands = []
    t0 = time.perf_counter()
    if not (REPO / pairs / "pairs.csv").is_file():
        commands.append(run(["make-pairs", "synthetic", "--splits", str(splits.relative_to(REPO)), "--split", "test",
                             "--views", "1", "--seed", "1", "--out", str(pairs), "--no-progress"], args.config)[0])
    img = Path("docs/img")
    (REPO / img).mkdir(parents=True, exist_ok=True)
    results: dict[tuple[str, str], dict] = {}
    for model, override in (("base (ImageNet, no fine-tuning)", "none"), ("fine-tuned (default)", checkpoint)):
        tag = "base" if override == "none" else "finetuned"
        shown, results[("s2s", model)] = run(
            ["evaluate", "street2shop", "--pairs", str(pairs / "pairs.csv"), "--gallery", str(pairs / "gallery.csv"),
             "--checkpoint", override, "--plot", str(img / f"quality-street2shop-{tag}.png"), "--json", *common],
            args.config)
        commands.append(shown)
        shown, results[("cat", model)] = run(
            ["evaluate", "category", "--splits", str(splits.relative_to(REPO)), "--split", "test", "--label",
             "article_type", "--checkpoint", override, "--plot", str(img / f"quality-category-{tag}.png"), "--json",
             *common], args.config)
        commands.append(shown)
    models = ["base (ImageNet, no fine-tuning)", "fine-tuned (default)"]
    header = ["model", *KEYS, "n_queries", "gallery", "fingerprint"]
    s2s = markdown_table(header, [metrics_row(m, results[("s2s", m)]) for m in models])
    cat = markdown_table(header, [metrics_row(m, results[("cat", m)]) for m in models])
    b, f = results[("s2s", models[0])], results[("s2s", models[1])]
    cb, cf = results[("cat", models[0])], results[("cat", models[1])]
    top = sorted(f["per_label"].items(), key=lambda kv: -kv[1]["n_queries"])[:12]
    per_label = markdown_table(
        ["article_type", "n_queries", "base recall@1", "fine-tuned recall@1", "base recall@20", "fine-tuned recall@20"],
        [[lab, m["n_queries"], round(b["per_label"].get(lab, {}).get("recall@1", float("nan")), 3),
          round(m["recall@1"], 3), round(b["per_label"].get(lab, {}).get("recall@20", float("nan")), 3),
          round(m["recall@20"], 3)] for lab, m in top])
    timing = meta.get("timing", {})
    extra = ""
    if meta.get("head_refit") or meta.get("classifier"):
        parts = []
        if meta.get("head_refit"):
            parts.append(f"its head re-fitted for {len(meta['head_refit']['history'])} epochs on features at "
                         f"{meta['head_refit']['input_size']} px")
        if meta.get("classifier"):
            c = meta["classifier"]
            article = "an" if c["level"][:1] in "aeiou" else "a"
            parts.append(f"{article} {c['level']} classifier ({len(c['classes'])} classes) mixed into the "
                         f"embedding at weight {c['weight']}")
        extra = (" Then `manage.py train-classifier` (train products to fit, val products to choose the weight): "
                 + " and ".join(parts) + ".")
    sizes = ("the size it was trained at" if meta["input_size"] == settings.model.input_size else
             f"the checkpoint was trained at {meta['input_size']} px; the serving size was chosen on validation "
             "products, docs/training.md")
    body = f"""Test products only: the {meta['data']['split_counts']['test']} products that `{splits.relative_to(REPO)}`
puts in "test" were never seen in training (splits by product id). Model: `{settings.model.backbone}` served at
{settings.model.input_size} px, both rows ({sizes}); fine-tuned checkpoint `{checkpoint}`
(sha256 {manifest['sha256'][:16]}, trained
{meta.get('epochs_done')} epochs, view caching {timing.get('cache_seconds')} s + training
{timing.get('train_seconds')} s on {meta.get('machine')}; see docs/training.md).{extra} Index: the configured spec
(`{f['index_spec']}`, {f['search_backend']}) built over the gallery vectors, searched with the serving
`VectorSearcher`. Definitions: docs/metrics.md.

### SYNTHETIC street-to-shop (test products)

Queries are SYNTHETIC street photos made from the test products' catalog images (`make-pairs synthetic`, seed 1:
composited on scenes with other garments, occluded, warped, re-lit, blurred, noised, JPEG-recompressed); the
gallery is the {f['n_gallery']} test products' catalog images. A hit is the query's own product.

{s2s}

recall@1 gain: {f['recall@1'] - b['recall@1']:+.4f} ({100 * (f['recall@1'] - b['recall@1']):+.1f} points);
recall@20 of the fine-tuned model: {f['recall@20']:.4f}. Plots: `docs/img/quality-street2shop-base.png`,
`docs/img/quality-street2shop-finetuned.png`.

Largest article types (synthetic street-to-shop):

{per_label}

### Category retrieval (article_type, leave-one-out among test products)

Each test product queries all the other test products; a hit is a product of the same article_type
({cf['n_labels']} article types; {cf['n_singletons']} products whose type no other test product has are not
queries).

{cat}

recall@1 gain: {cf['recall@1'] - cb['recall@1']:+.4f}. Plots: `docs/img/quality-category-base.png`,
`docs/img/quality-category-finetuned.png`.

Commands (in this order; {time.perf_counter() - t0:.0f} s in all):

```
{chr(10).join(commands)}
```
"""
    update_section("quality", "Quality: base vs fine-tuned (synthetic street-to-shop, category)", body)
    print(body)


if __name__ == "__main__":
    main()
