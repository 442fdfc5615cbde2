"""`manage.py duplicates` and `manage.py audit labels`: duplicate / variant groups and label suspects of the catalog,
stored as curation runs (shown on /curation and /analytics); `audit labels --apply ID=VALUE` changes a label and
records who, when, old and new."""

from __future__ import annotations

import csv
import getpass
import json
import sys
from typing import Any

import click
import numpy as np

from indexer.cli_support import fail, with_settings
from indexer.settings import Settings


def _served(settings: Settings):
    from indexer.curation import records
    from indexer.vectors.generations import load_generation
    from indexer.wiring import open_store

    store = open_store(settings)
    gen = load_generation(settings.index_dir)
    rows = records.catalog_rows(store, gen.ids.tolist())
    keep = np.array([int(i) in rows for i in gen.ids], bool)  # removed since the generation was built
    ids = gen.ids[keep]
    return store, gen, ids, np.asarray(gen.vectors)[keep], [rows[int(i)] for i in ids]


def served_classifier(gen) -> tuple[list[str], float]:  # noqa: ANN001 - IndexGeneration
    """(classes, weight) of the taxonomy classifier whose components end the generation's vectors; ([], 0) without."""
    spec = (gen.manifest.model or {}).get("classifier") if hasattr(gen.manifest, "model") else None
    if not spec:
        return [], 0.0
    from engine.models.checkpoints import load_checkpoint

    meta = load_checkpoint(gen.manifest.model["checkpoint"])["meta"]["classifier"]
    return list(meta["classes"]), float(spec["weight"])


def _emit(rows: list[dict[str, Any]], fields: list[str], as_json: bool, as_csv: bool, payload: dict[str, Any]) -> bool:
    if as_json:
        click.echo(json.dumps(payload, indent=2))
        return True
    if as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow(r)
        return True
    return False


@click.command("duplicates")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0, min_open=True), default=None,
              help="Picture similarity a pair needs to count as the same picture [curation.duplicate_threshold].")
@click.option("--variant-threshold", type=click.FloatRange(0.0, 1.0, min_open=True), default=None,
              help="Appearance cosine of colour variants [curation.variant_threshold].")
@click.option("--json", "as_json", is_flag=True, help="Print the groups as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print one row per grouped item as CSV.")
@click.option("--limit", type=click.IntRange(0), default=20, show_default=True, help="Groups printed as text.")
@with_settings
def duplicates_cmd(settings: Settings, threshold: float | None, variant_threshold: float | None, as_json: bool,
                   as_csv: bool, limit: int) -> None:
    """Group exact and near-duplicate items (and colour variants) of the served generation; store the run."""
    from PIL import Image

    from indexer.curation import records
    from indexer.curation.duplicates import find_duplicates
    from indexer.curation.image_match import GRID_H, GRID_W, picture_grid
    from indexer.curation.variants import find_variants

    if as_json and as_csv:
        fail("choose one of --json and --csv")
    cfg = settings.curation
    threshold = cfg.duplicate_threshold if threshold is None else threshold
    variant_threshold = cfg.variant_threshold if variant_threshold is None else variant_threshold
    store, gen, ids, vectors, rows = _served(settings)
    if not len(ids):
        fail("the served index holds no item: run `python manage.py index` first")

    def load_grid(row: int) -> np.ndarray:
        try:
            with Image.open(rows[row]["image_path"]) as img:
                return picture_grid(img)
        except OSError:
            return np.zeros((GRID_H, GRID_W, 3), np.float32)  # unreadable picture: never verified as a duplicate

    report = find_duplicates(ids.tolist(), [r["content_sha256"] for r in rows], vectors, load_grid, threshold,
                             cfg.duplicate_candidates, cfg.duplicate_min_cosine, progress=not (as_json or as_csv))
    classes, weight = served_classifier(gen)
    row_of = {int(i): k for k, i in enumerate(ids)}
    dup_pairs = {(min(row_of[a], row_of[b]), max(row_of[a], row_of[b]))
                 for g in report.groups for a in g.ids for b in g.ids if a != b}
    variants = find_variants(ids.tolist(), vectors, [r.get("article_type") for r in rows], variant_threshold,
                             len(classes) if weight else 0, cfg.duplicate_candidates, dup_pairs)
    summary = {**report.summary(), "variant_groups": len(variants),
               "variant_items": sum(len(v.ids) for v in variants)}
    fp, name = gen.manifest.fingerprint, gen.manifest.name
    run_id = records.record_run(store, records.DUPLICATES, summary, {"groups": [g.as_dict() for g in report.groups]},
                                report.params, fp, name)
    records.record_run(store, records.VARIANTS, {"groups": len(variants), "items": summary["variant_items"]},
                       {"groups": [v.as_dict() for v in variants]}, {"threshold": variant_threshold}, fp, name)
    out_rows = [{"group": k, "kind": g.kind, "size": len(g.ids), "score": round(g.score, 4), "id": i}
                for k, g in enumerate(report.groups) for i in g.ids]
    payload = {"run": run_id, "summary": summary, "groups": [g.as_dict() for g in report.groups],
               "variants": [v.as_dict() for v in variants]}
    if _emit(out_rows, ["group", "kind", "size", "score", "id"], as_json, as_csv, payload):
        return
    click.echo(f"run {run_id}: {summary['groups']} duplicate groups ({summary['exact_groups']} exact, "
               f"{summary['near_groups']} near) holding {summary['duplicate_items']} of {summary['items']} items "
               f"(duplicate rate {summary['duplicate_rate']:.2%}); {len(variants)} variant groups")
    for k, g in enumerate(report.groups[:limit]):
        shown = " ".join(map(str, g.ids[:12])) + (" ..." if len(g.ids) > 12 else "")
        click.echo(f"{k:4d}  {g.kind:5s}  {len(g.ids):3d} items  score {g.score:.3f}  ids {shown}")


@click.group("audit")
def audit() -> None:
    """Audit the catalog's labels against its pictures."""


def _parse_apply(values: tuple[str, ...]) -> list[tuple[int, str]]:
    out = []
    for v in values:
        item, sep, value = v.partition("=")
        if not sep or not item.strip().isdigit() or not value.strip():
            raise click.BadParameter(f"expected ID=VALUE, got {v!r}", param_hint="--apply")
        out.append((int(item), value.strip()))
    return out


def _colours(settings: Settings, rows: list[dict[str, Any]], progress: bool) -> np.ndarray:
    from indexer.curation.colours import picture_colours

    return picture_colours(rows, settings.resolve_path(settings.curation.cache_dir) / "colours.npz", progress)


@audit.command("labels")
@click.option("--column", "columns", multiple=True,
              help="Column to audit; repeat for more (default: article_type, sub_category, master_category, "
                   "base_colour; also gender, usage).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--csv", "as_csv", is_flag=True)
@click.option("--limit", type=click.IntRange(0), default=50, show_default=True, help="Suspects printed per column.")
@click.option("--apply", "apply", multiple=True, metavar="ID=VALUE",
              help="Change item ID's --column to VALUE (recorded); nothing else runs.")
@click.option("--by", "applied_by", default="", help="Who applies the change (default: the login name).")
@with_settings
def audit_labels_cmd(settings: Settings, columns: tuple[str, ...], as_json: bool, as_csv: bool, limit: int,
                     apply: tuple[str, ...], applied_by: str) -> None:
    """Rank items whose labels their pictures contradict, with the suggested value; store the run."""
    from indexer.curation import records
    from indexer.curation.label_audit import AUDIT_COLUMNS, DEFAULT_COLUMNS, AuditInputs, audit_labels

    if as_json and as_csv:
        fail("choose one of --json and --csv")
    unknown = [c for c in columns if c not in AUDIT_COLUMNS]
    if unknown:
        fail(f"cannot audit column(s) {', '.join(unknown)}; auditable: {', '.join(AUDIT_COLUMNS)}")
    if apply:
        if len(columns) != 1:
            fail("--apply needs exactly one --column (the column the values are for)")
        from indexer.wiring import open_store

        store = open_store(settings)
        last = records.latest_run(store, records.AUDIT, with_details=False)
        who = applied_by or getpass.getuser()
        for item_id, value in _parse_apply(apply):
            change = records.apply_label(store, item_id, columns[0], value, who, last["id"] if last else None)
            click.echo(f"item {item_id}: {columns[0]} {change['old_value']!r} -> {value!r} (recorded as change "
                       f"{change['id']} by {who})")
        return
    cfg = settings.curation
    store, gen, ids, vectors, rows = _served(settings)
    if not len(ids):
        fail("the served index holds no item: run `python manage.py index` first")
    classes, weight = served_classifier(gen)
    wanted = columns or DEFAULT_COLUMNS
    colours = _colours(settings, rows, not (as_json or as_csv)) if "base_colour" in wanted else None
    found = audit_labels(AuditInputs(ids.tolist(), rows, vectors, classes, weight, colours), wanted,
                         cfg.audit_neighbours, cfg.audit_max_current)
    suspects = [s for col in wanted for s in found.get(col, [])]
    suspects.sort(key=lambda s: s.rank_key)
    summary = {"items": len(ids), "suspects": len(suspects),
               "by_column": {c: len(found.get(c, [])) for c in wanted},
               "high_confidence": sum(s.confidence >= cfg.outfit_distrust_confidence for s in suspects)}
    run_id = records.record_run(store, records.AUDIT, summary, {"suspects": [s.as_dict() for s in suspects]},
                                {"columns": list(wanted), "neighbours": cfg.audit_neighbours,
                                 "max_current": cfg.audit_max_current}, gen.manifest.fingerprint, gen.manifest.name)
    by_id = {int(r["id"]): r for r in rows}
    out_rows = [{**s.as_dict(), "title": by_id[s.item_id]["title"]} for s in suspects]
    fields = ["id", "column", "current", "suggested", "confidence", "current_probability", "title"]
    if _emit(out_rows, fields, as_json, as_csv, {"run": run_id, "summary": summary, "suspects": out_rows}):
        return
    click.echo(f"run {run_id}: {len(suspects)} suspect labels among {len(ids)} items "
               f"({', '.join(f'{c} {n}' for c, n in summary['by_column'].items())})")
    for col in wanted:
        for s in found.get(col, [])[:limit]:
            click.echo(f"{s.item_id:>7}  {col:15s}  {s.current!r:>22} -> {s.suggested!r:22}  "
                       f"{s.confidence:.2f}  {by_id[s.item_id]['title'][:60]}")
    click.echo("apply one with: python manage.py audit labels --column COLUMN --apply ID=VALUE")

