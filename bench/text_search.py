#!/usr/bin/env python3
"""Search by words (issue 17): quality on test products (`manage.py evaluate text`, the KAGL protocol) and the p50 of
text queries over HTTP (`bench/latency.py --kinds text`), written as BENCHMARKS.md section "text-search".

    python bench/text_search.py [--config CONFIG] [--composed 1000] [--requests 1000] [--no-write]

The published references are zero-shot on 44k items; this tower is trained in-domain on the catalog's train split,
so they are context, not a like-for-like comparison.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.report import markdown_table, update_section  # noqa: E402

REFERENCES = [  # Marqo's published KAGL numbers (zero-shot, 44k items)
    ["Marqo-FashionSigLIP (zero-shot, published)", 0.179, 0.489, 0.293, "", ""],
    ["FashionCLIP 2.0 (zero-shot, published)", 0.122, 0.404, 0.217, "", ""],
    ["Marqo-FashionCLIP (zero-shot, published)", "", "", "", 0.725, ""],
    ["Marqo-FashionSigLIP (zero-shot, published)", "", "", "", "", 0.587],
]
BOUNDS = {"title_recall@1": 0.25, "title_recall@10": 0.60, "title_mrr@10": 0.40, "article_type_precision@1": 0.85,
          "base_colour_precision@1": 0.70, "composed_colour_type@10": 0.60}


def text_latency(config: Path, requests: int) -> tuple[str, float]:
    """Run bench/latency.py for text queries only; (its text row, HTTP p50 ms)."""
    out = subprocess.run([sys.executable, str(REPO / "bench" / "latency.py"), "--config", str(config), "--kinds",
                          "text", "--clients", "1", "--requests", str(requests), "--inproc", "300", "--no-write"],
                         capture_output=True, text=True, cwd=REPO, check=False)
    row = next((line for line in out.stdout.splitlines() if line.startswith("| 1 | text |")), "")
    if not row:
        raise SystemExit(f"bench/latency.py gave no text row:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    load = next((line for line in out.stdout.splitlines() if line.startswith("Load average")), "")
    return row + "\n\n" + load, float(row.split("|")[4])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=REPO / "config.toml")
    ap.add_argument("--composed", type=int, default=1000, help="photo + \"in <colour>\" queries per split")
    ap.add_argument("--requests", type=int, default=1000, help="HTTP text queries for the latency row")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    from indexer.evaluation.text import run_text_evaluation
    from indexer.settings import load_settings

    settings = load_settings(args.config.resolve(), env={})
    ev = run_text_evaluation(settings, None, args.composed, 0, store_run=True,
                             command=f"python bench/text_search.py --config {args.config.name}")
    m, d = ev.metrics, ev.details
    row_title = ["Lookalike text tower (in-domain, trained on train products)", m["title_recall@1"],
                 m["title_recall@10"], m["title_mrr@10"], m["article_type_precision@1"], m["base_colour_precision@1"]]
    unseen = ["same, test titles that no train product carries", m.get("title_unseen_recall@1", ""),
              m.get("title_unseen_recall@10", ""), m.get("title_unseen_mrr@10", ""), "", ""]
    plain = d.get("vector_only") or {}
    vector_only = ["same tower, the words' vector alone (no label terms)", plain.get("title_recall@1", ""),
                   plain.get("title_recall@10", ""), plain.get("title_mrr@10", ""),
                   plain.get("article_type_precision@1", ""), plain.get("base_colour_precision@1", "")]
    table = markdown_table(["model", "title recall@1", "title recall@10", "title MRR@10", "article_type P@1",
                            "base_colour P@1"], [row_title, unseen, vector_only, *REFERENCES])
    terms = d.get("label_terms", {})
    colour_head = (f"colour head `models/colour/{d['fingerprint']}.pt` ({terms.get('colours')} base colours)"
                   if terms.get("colours") else f"no colour head ({d.get('colour_head_error', 'none configured')})")
    labels = markdown_table(["label column", "precision@1", "precision@10"],
                            [[c, m.get(f"{c}_precision@1"), m.get(f"{c}_precision@10")]
                             for c in ("article_type", "sub_category", "master_category", "base_colour")])
    latency_row, p50 = text_latency(args.config.resolve(), args.requests)
    checks = [(k, m[k], b) for k, b in BOUNDS.items()] + [("text HTTP p50 ms (<=)", p50, 30.0)]
    verdicts = [[k, got, bound, "PASS" if (got <= bound if "ms" in k else got >= bound) else "FAIL"]
                for k, got, bound in checks]
    meta = d.get("text_model", {})
    body = "\n".join([
        f"Served image model fingerprint {d['fingerprint']}, index {d['generation']} ({d['n_gallery']:,} items), "
        f"text tower `models/text/{d['fingerprint']}.pt` (best epoch {meta.get('epoch')} of "
        f"`{d.get('text_command') or 'manage.py train-text'}`), text runtime {d['runtime']}. Test products only "
        f"(split {d['split_counts']}); exact search over the served vectors. Stored as evaluation run "
        f"{d.get('run_id')} (kind text).",
        "",
        "**The published references are zero-shot on 44k items of this catalog family; the Lookalike tower is trained "
        "in-domain on this catalog's train products, so the comparison flatters us, not them.** "
        f"{m['title_queries_in_train']} of the {m['title_queries']} distinct test titles also occur among train "
        "products; the second row leaves them out.",
        "",
        "Served scoring (docs/text-search.md, `indexer/search/label_terms.py`): the words' vector, plus the catalog "
        f"labels the words name: an article type ({terms.get('article_types')} classes) boosts its posterior dimension "
        f"(article_type_boost {terms.get('article_type_boost')}), a base colour adds colour_weight "
        f"{terms.get('colour_weight')} x log P(colour | item) from the {colour_head}, both scaled by the share of the "
        "words the labels make up. Weights chosen on val products; the third row ranks the same test queries by the "
        "words' vector alone.",
        "",
        table,
        "",
        labels,
        "",
        f"Diagnostic (not a text model): querying each label with the mean served vector of its train products "
        f"(minus the train mean) gives article_type P@1 {d['ceiling_article_type_precision@1']} and base_colour P@1 "
        f"{d['ceiling_base_colour_precision@1']}: the locked image space separates colours poorly by one direction, "
        "which is why colour words also ask the colour head.",
        "",
        f"Composed photo of test product A + \"in <colour>\" ({m['composed_queries']} queries, modifier weight "
        f"{m['composed_modifier_weight']} chosen on val products, sweep {d['val_modifier_sweep']}): share of the "
        f"top 10 with the asked colour and A's article type {m['composed_colour_type@10']}, also A's gender "
        f"{m['composed_colour_type_gender@10']}, the colour alone {m['composed_colour@10']}. At the configured weight: "
        f"{d['test_composed_colour_type@10_at_configured_weight']}; the words' vector alone (modifier "
        f"{plain.get('composed_modifier_weight')} chosen on val): {plain.get('composed_colour_type@10')}. Vector "
        "arithmetic plus the colour term; no learned combiner.",
        "",
        "Text query latency over HTTP (1 client, `python bench/latency.py --kinds text --clients 1 --no-write`, "
        "42k index):",
        "",
        "| clients | kind | HTTP requests | HTTP p50 ms | HTTP p99 ms | server handler p50 ms | in-process runs | "
        "in-process p50 ms | in-process p99 ms | HTTP+framework overhead at p50 | HTTP req/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        latency_row,
        "",
        "Acceptance of issue 17:",
        "",
        markdown_table(["check", "measured", "bound", "verdict"], verdicts),
    ])
    print(body)
    if not args.no_write:
        update_section("text-search", "Text search: words, photo + words (KAGL protocol, test products)", body)
        print("updated BENCHMARKS.md (section text-search)")


if __name__ == "__main__":
    main()
