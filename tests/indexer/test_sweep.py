"""Index sweeps (issue 9): Pareto front, measurement against exact search, storing, config.toml line edits, CLI."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest

from indexer.evaluation.sweep import (
    SweepSetting,
    default_grid,
    list_sweeps,
    load_sweep,
    measure_sweep,
    pareto_front,
    recommend,
    record_sweep,
    set_config_value,
    sweep_settings,
    validate_spec,
)
from indexer.vectors.synthetic_vectors import clustered_unit_vectors
from tests.conftest import run_manage


def test_pareto_front_keeps_undominated_points_and_ties():
    pts = [(1.0, 100.0), (0.9, 1000.0), (0.8, 500.0), (0.95, 600.0), (0.95, 600.0), (0.7, 1000.0)]
    assert pareto_front(pts) == [0, 1, 3, 4]
    assert pareto_front([]) == []


def test_sweep_settings_expand_knobs():
    got = sweep_settings(["Flat", "IVF16,Flat", "HNSW8"], [1, 4], [16])
    assert got == [SweepSetting("Flat"), SweepSetting("IVF16,Flat", nprobe=1), SweepSetting("IVF16,Flat", nprobe=4),
                   SweepSetting("HNSW8", ef_search=16)]
    assert default_grid(40_000)[0] == "Flat" and default_grid(40_000)[-1] == "HNSW32"
    assert "IVF512,Flat" in default_grid(40_000)


def test_measure_sweep_against_exact_search():
    x = clustered_unit_vectors(1500, 24, seed=3)
    problems: list[str] = []
    grid = sweep_settings(["Flat", "IVF16,Flat", "HNSW8", "IVF4096,Flat"], [1, 16], [8, 64])
    points = measure_sweep(x, grid, k=10, n_queries=60, budget_s=0.01, problems=problems)
    by = {p.label: p for p in points}
    assert len(points) == 5 and "IVF4096,Flat" in problems[0]
    assert by["Flat"].recall == 1.0 and by["IVF16,Flat nprobe=16"].recall == 1.0  # every list probed = exact
    assert by["IVF16,Flat nprobe=1"].recall < 1.0
    assert all(p.n_queries == 60 and p.n_vectors == 1440 and p.queries_per_s > 0 for p in points)
    assert by["Flat"].memory_bytes >= 1440 * 24 * 4
    assert by["HNSW8 efSearch=8"].memory_bytes > by["Flat"].memory_bytes  # graph links on top of the vectors
    front = [p for p in points if p.pareto]
    assert front and all(p.pareto == (i in pareto_front([(q.recall, q.queries_per_s) for q in points]))
                         for i, p in enumerate(points))
    best = recommend(points, 0.9)
    assert best is not None and best.pareto and best.recall >= 0.9


def test_recall_counts_tied_duplicates_as_correct():
    from indexer.evaluation.sweep import recall_with_ties

    base = clustered_unit_vectors(200, 16, seed=5)
    x = np.concatenate([base, base[:100]])  # 100 exact duplicates, as catalogs have
    points = measure_sweep(x, [SweepSetting("Flat"), SweepSetting("HNSW16", ef_search=64)], k=10, n_queries=20,
                           budget_s=0.0)
    assert points[0].recall == 1.0
    q = base[:3]
    truth = np.array([[0, 1], [1, 2], [2, 0]])
    assert recall_with_ties(np.array([[0, 1], [1, 2], [2, 0]]), q, base, truth) == 1.0
    assert recall_with_ties(np.array([[0, -1], [1, 2], [2, 0]]), q, base, truth) == pytest.approx(5 / 6)


def test_record_and_load_sweep(settings):
    from indexer.wiring import open_store

    x = clustered_unit_vectors(400, 8, seed=1)
    points = measure_sweep(x, sweep_settings(["Flat", "IVF4,Flat"], [1, 4], []), k=5, n_queries=20, budget_s=0.0)
    store = open_store(settings)
    try:
        sweep_id = record_sweep(store, points, "fp123", "gen-000001", {"command": "test"})
        loaded = load_sweep(store, sweep_id)
        assert [(p.label, p.pareto, round(p.recall, 6)) for p in loaded] == \
            [(p.label, p.pareto, round(p.recall, 6)) for p in points]
        assert loaded[0].details == {"command": "test"}
        summary = list_sweeps(store)[0]
        assert summary["sweep_id"] == sweep_id and summary["n_settings"] == 3 and summary["generation"] == "gen-000001"
        assert load_sweep(store, "nope") == []
    finally:
        store.close()


def test_set_config_value_edits_one_line(tmp_path):
    path = tmp_path / "config.toml"
    original = ('# top comment\n[model]\nspec = "not this one"\n\n[index]\n# the FAISS factory string\n'
                'dir = "var/index"\nspec = "auto"   # trailing comment\nnprobe = 32\n\n[web]\nport = 5000\n')
    path.write_text(original)
    old = set_config_value(path, "index", "spec", "IVF256,Flat")
    assert old == 'spec = "auto"   # trailing comment\n'
    text = path.read_text()
    assert text == original.replace('spec = "auto"', 'spec = "IVF256,Flat"')
    assert tomllib.loads(text)["index"]["spec"] == "IVF256,Flat"
    set_config_value(path, "index", "ef_search", "x")  # absent key: appended to its section
    data = tomllib.loads(path.read_text())
    assert data["index"]["ef_search"] == "x" and data["web"] == {"port": 5000}
    set_config_value(path, "outfit", "checkpoint", 'a"b')  # absent section
    assert tomllib.loads(path.read_text())["outfit"]["checkpoint"] == 'a"b'


def test_validate_spec():
    validate_spec("HNSW32", 16, 10)
    with pytest.raises(ValueError, match="invalid index spec"):
        validate_spec("Bogus99", 16, 10)
    with pytest.raises(ValueError, match="lists"):
        validate_spec("IVF64,Flat", 16, 10)


@pytest.mark.slow
def test_sweep_cli_stores_results_and_apply_rebuilds(tmp_path, shared_data, small_embedder):
    """`manage.py sweep` on a small indexed catalog; --apply edits index.spec only and publishes a new generation."""
    from indexer.store.db import check_database
    from indexer.vectors.generations import load_generation
    from indexer.wiring import open_store
    from tests.web.conftest import build_indexed_catalog

    settings, _ = build_indexed_catalog(tmp_path, small_embedder, n=40)
    config = tmp_path / "config.toml"
    text = config.read_text().replace("[index]\n", '[index]\n# FAISS factory string (keep it)\nspec = "auto"\n')
    config.write_text(text)
    before = load_generation(settings.index_dir, verify_checksums=False).manifest.name
    res = run_manage("sweep", "--index-specs", "Flat;IVF2,Flat HNSW8", "--nprobe", "1,2", "--ef-search", "8,32",
                     "-k", "5", "--queries", "4", "--budget-s", "0.02", "--json", "--apply", "IVF2,Flat",
                     config=config)
    assert res.returncode == 0, res.stderr
    body = json.loads(res.stdout)
    assert [p["label"] for p in body["points"]] == ["Flat", "IVF2,Flat nprobe=1", "IVF2,Flat nprobe=2",
                                                    "HNSW8 efSearch=8", "HNSW8 efSearch=32"]
    assert body["recommended"]["pareto"] and body["configured"] == "Flat"  # "auto" below 50k vectors
    assert isinstance(body["configured_on_front"], bool)
    assert body["applied"] == "IVF2,Flat nprobe=32" and body["applied_on_front"] is False  # nprobe 32 not measured
    assert "generation" in res.stderr and "IVF2,Flat" in res.stderr
    new_text = config.read_text()
    assert new_text == text.replace('spec = "auto"', 'spec = "IVF2,Flat"')
    gen = load_generation(settings.index_dir)
    assert gen.manifest.name != before and gen.manifest.spec == "IVF2,Flat" and gen.manifest.count == 40
    store = open_store(settings)
    try:
        assert list_sweeps(store)[0]["n_settings"] == 5
    finally:
        store.close()
    check_database(settings.database_url)
    bad = run_manage("sweep", "--index-specs", "Flat", "--budget-s", "0", "--no-store", "--apply", "Bogus7",
                     config=config)
    assert bad.returncode == 2 and bad.stderr.startswith("error: invalid index spec")
    assert config.read_text() == new_text


def test_apply_recommended_writes_spec_and_knob(tmp_path, small_embedder, shared_data):
    """--apply recommended: the recommended point's spec and efSearch land in config.toml; the setting written is
    the one on the measured front."""
    import dataclasses

    from indexer.evaluation.sweep import apply_spec, resolve_apply, sweep_report
    from indexer.vectors.generations import load_generation
    from tests.web.conftest import build_indexed_catalog

    settings, _ = build_indexed_catalog(tmp_path / "c", small_embedder, n=24)
    points = measure_sweep(clustered_unit_vectors(300, 8, seed=2), sweep_settings(["HNSW8"], [], [4, 64]), k=5,
                           n_queries=20, budget_s=0.0)
    chosen = resolve_apply(points, "recommended", settings, 0.0)
    assert chosen.ef_search in (4, 64) and recommend(points, 0.0).pareto
    report = sweep_report(points, settings, 0.0, applied=chosen)
    assert report["json"]["applied_on_front"] is True and "Applied as the new default" in report["markdown"]
    assert resolve_apply(points, "Flat", settings, 0.99) == SweepSetting("Flat")
    gen, count = apply_spec(settings, dataclasses.replace(chosen, ef_search=77), small_embedder)
    data = tomllib.loads((tmp_path / "c" / "config.toml").read_text())
    assert data["index"]["spec"] == "HNSW8" and data["index"]["ef_search"] == 77 and "nprobe" not in data["index"]
    assert count == 24 and load_generation(settings.index_dir).manifest.spec == "HNSW8"
