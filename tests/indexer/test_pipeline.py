"""Bulk indexing through the library: import, idempotence, incremental changes, removal, checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from indexer.catalog.source import open_catalog
from indexer.pipeline.crash_safety import WriterBusyError, writer_lock
from indexer.vectors.faiss_store import check_consistency
from indexer.vectors.generations import GenerationError, current_name, load_generation
from indexer.wiring import create_pipeline, create_search_service, open_store, remove_items
from tests.conftest import SHARED_DATA, write_small_catalog


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    return write_small_catalog(tmp_path / "cat", 40)


@pytest.fixture
def store(settings):
    s = open_store(settings)
    yield s
    s.close()


def run_index(settings, store, embedder, csv: Path, rebuild: bool = False):
    return create_pipeline(settings, store, embedder, progress=False).run(open_catalog(csv), rebuild=rebuild)


def test_index_then_rerun_changes_nothing(settings, store, small_embedder, catalog):
    first = run_index(settings, store, small_embedder, catalog)
    assert (first.new, first.unchanged, len(first.problems)) == (40, 0, 0)
    assert first.published and first.generation_count == 40
    gen = current_name(settings.index_dir)
    second = run_index(settings, store, small_embedder, catalog)
    counts = (second.new, second.changed, second.reembedded, second.metadata_updated, second.unchanged)
    assert counts == (0, 0, 0, 0, 40)
    assert not second.published and current_name(settings.index_dir) == gen
    report = check_consistency(store, settings.index_dir, small_embedder.fingerprint)
    assert report.ok, report.problems
    assert report.index_count == report.sql_count == 40


def test_bad_rows_are_reported_with_row_numbers_and_skipped(settings, store, small_embedder, tmp_path):
    csv = write_small_catalog(tmp_path / "cat", 10)
    (tmp_path / "cat" / "images" / "notimage.jpg").write_text("this is text, not a JPEG")
    lines = csv.read_text().splitlines()
    header = lines[0]
    first_id = lines[1].split(",")[0]
    extra = [
        lines[1],  # row 12: duplicate id
        ",No id,,,,,,,images/x.jpg,",  # row 13: empty id
        "999991,Missing image,,,,,,,images/missing.jpg,",  # row 14
        "999992,Text as jpg,,,,,,,images/notimage.jpg,",  # row 15
        "999994,Escapes root,,,,,,,../../../../etc/passwd,",  # row 16
        '999993,"unterminated,,,',  # row 17: an open quote swallows the rest: wrong field count
    ]
    csv.write_text("\n".join([header, *lines[1:], *extra]) + "\n")
    report = run_index(settings, store, small_embedder, csv)
    assert report.new == 10
    text = "\n".join(str(p) for p in report.problems)
    assert f"row 12 (id {first_id}): duplicate id" in text
    assert "row 13: empty id" in text
    assert "row 14 (id 999991): image file not found" in text
    assert "row 15 (id 999992): undecodable image" in text
    assert "row 16 (id 999994)" in text and "leaves the images root" in text
    assert "row 17 (id 999993): has 2 fields, header has 10" in text
    assert len(report.problems) == 6


def test_changed_image_is_reembedded_and_metadata_change_is_not(settings, store, small_embedder, catalog):
    run_index(settings, store, small_embedder, catalog)
    lines = catalog.read_text().splitlines()
    ids = [ln.split(",")[0] for ln in lines[1:]]
    # Swap one item's picture for another product's; retitle another.
    img = catalog.parent / f"images/{ids[0]}.jpg"
    shutil.copyfile(SHARED_DATA / "images" / "1164.jpg", img)
    lines[2] = lines[2].replace(lines[2].split(",")[1], "Renamed product", 1)
    catalog.write_text("\n".join(lines) + "\n")
    report = run_index(settings, store, small_embedder, catalog)
    assert (report.changed, report.metadata_updated, report.unchanged) == (1, 1, 38)
    assert report.published
    assert store.get_item_by_external_id(ids[1])["title"] == "Renamed product"
    assert check_consistency(store, settings.index_dir, small_embedder.fingerprint).ok


def test_remove_deletes_from_sql_and_index(settings, store, small_embedder, catalog):
    run_index(settings, store, small_embedder, catalog)
    ext = [ln.split(",")[0] for ln in catalog.read_text().splitlines()[1:4]]
    result = remove_items(settings, store, small_embedder, [*ext, "no-such-id"])
    assert result["removed"] == 3 and result["unknown"] == ["no-such-id"] and result["count"] == 37
    assert all(store.get_item_by_external_id(e) is None for e in ext)
    gen = load_generation(settings.index_dir)
    assert gen.manifest.count == 37 and len(np.unique(gen.ids)) == 37
    assert check_consistency(store, settings.index_dir, small_embedder.fingerprint).ok
    # Indexing the catalog again brings them back as new items.
    again = run_index(settings, store, small_embedder, catalog)
    assert again.new == 3


def test_search_returns_own_item_and_filters_inside(settings, store, small_embedder, catalog):
    run_index(settings, store, small_embedder, catalog)
    service = create_search_service(settings, store, small_embedder)
    from indexer.catalog.images import decode_image

    row = catalog.read_text().splitlines()[5].split(",")
    img = decode_image((catalog.parent / row[8]).read_bytes())
    hits = service.search_image(img, 5)
    assert hits[0].item["external_id"] == row[0] and hits[0].score > 0.99
    # A filter on a rare value still yields every matching item (not a post-filter of the top k).
    gender_counts: dict[str, int] = {}
    for ln in catalog.read_text().splitlines()[1:]:
        g = ln.split(",")[2]
        if g:
            gender_counts[g] = gender_counts.get(g, 0) + 1
    rare = min(gender_counts, key=gender_counts.get)
    hits = service.search_image(img, 40, {"gender": [rare]})
    assert len(hits) == gender_counts[rare]
    assert {h.item["gender"] for h in hits} == {rare}
    similar = service.similar_to_item(hits[0].id, 5)
    assert similar and hits[0].id not in [h.id for h in similar]


def test_second_writer_is_refused(settings):
    lock = writer_lock(settings.index_dir)
    try:
        with pytest.raises(WriterBusyError, match="another indexing job"):
            writer_lock(settings.index_dir)
    finally:
        lock.release()


def test_corrupt_index_is_refused_and_rebuild_recovers(settings, store, small_embedder, catalog):
    run_index(settings, store, small_embedder, catalog)
    gen_dir = settings.index_dir / current_name(settings.index_dir)
    data = bytearray((gen_dir / "index.faiss").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (gen_dir / "index.faiss").write_bytes(bytes(data))
    with pytest.raises(GenerationError, match="manage.py index --rebuild"):
        load_generation(settings.index_dir)
    assert not check_consistency(store, settings.index_dir, small_embedder.fingerprint).ok
    report = run_index(settings, store, small_embedder, catalog, rebuild=True)
    assert report.published and report.embedded == 0  # rebuilt from SQL, nothing re-embedded
    assert check_consistency(store, settings.index_dir, small_embedder.fingerprint).ok


def test_manifest_describes_the_build(settings, store, small_embedder, catalog):
    run_index(settings, store, small_embedder, catalog)
    gen_dir = settings.index_dir / current_name(settings.index_dir)
    m = json.loads((gen_dir / "manifest.json").read_text())
    assert m["fingerprint"] == small_embedder.fingerprint and m["dim"] == small_embedder.dim
    assert m["metric"] == "inner_product" and m["count"] == 40 and m["spec"] == "Flat"
    assert set(m["checksums"]) == {"index.faiss", "ids.npy", "vectors.npy"} and m["high_water"] >= 40
    assert m["settings"]["model"]["input_size"] == 96


def test_a_failing_sql_write_stops_the_run_and_keeps_what_was_committed(settings, store, small_embedder, catalog,
                                                                        monkeypatch):
    """SQL is written on a writer thread: its error must reach the caller (no hang, no silent loss), the transactions
    before it stay committed, and the next run embeds only the rest."""
    pipeline = create_pipeline(settings, store, small_embedder, progress=False)
    pipeline.batch_size, pipeline.commit_every = 4, 8
    real, calls = store.write_embedded, []

    def failing_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "write_embedded", failing_second)
    with pytest.raises(RuntimeError, match="disk full"):
        pipeline.run(open_catalog(catalog))
    assert len(store.existing_items()) == 8  # the first transaction
    monkeypatch.setattr(store, "write_embedded", real)
    again = run_index(settings, store, small_embedder, catalog)
    assert (again.new, again.unchanged) == (32, 8)
    assert again.published and again.generation_count == 40
