"""What only the Milvus store does: config mapping, alias swap on rebuild, repair of a tampered collection,
a sync interrupted half-way, and clear errors (missing extra, another model, a file held by another process)."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

from indexer.extras import MissingExtraError
from indexer.settings import load_settings
from indexer.vectors.base import VectorStoreError
from indexer.vectors.factory import create_vector_store
from indexer.vectors.faiss_index import SearchParams
from indexer.vectors.generations import GenerationError
from indexer.vectors.milvus_schema import filter_expression, milvus_index, search_params
from indexer.wiring import create_pipeline
from tests.conftest import write_config
from tests.indexer.test_vector_stores import N, close_env, make_env, run_index


@pytest.mark.parametrize("spec,expected", [
    ("Flat", {"index_type": "FLAT", "params": {}}),
    ("IVF256,Flat", {"index_type": "IVF_FLAT", "params": {"nlist": 256}}),
    ("IVF4096,SQ8", {"index_type": "IVF_SQ8", "params": {"nlist": 4096}}),
    ("IVF1024,PQ32", {"index_type": "IVF_PQ", "params": {"nlist": 1024, "m": 32, "nbits": 8}}),
    ("HNSW32", {"index_type": "HNSW", "params": {"M": 32, "efConstruction": 200}}),
    ("HNSW16,SQ8", {"index_type": "HNSW_SQ", "params": {"M": 16, "efConstruction": 200, "sq_type": "SQ8"}}),
    ("auto", {"index_type": "HNSW", "params": {"M": 32, "efConstruction": 200}}),
])
def test_index_spec_maps_to_milvus_index_params(spec, expected):
    assert milvus_index(spec) == expected


def test_index_params_json_wins_and_bad_specs_are_refused():
    assert milvus_index("Flat", '{"index_type": "diskann", "params": {"search_list": 100}}') == {
        "index_type": "DISKANN", "params": {"search_list": 100}}
    with pytest.raises(ValueError, match="no Milvus equivalent"):
        milvus_index("OPQ16,IVF256,PQ16")
    with pytest.raises(ValueError, match="milvus.index_params"):
        milvus_index("Flat", "[1, 2]")
    params = SearchParams(nprobe=64, ef_search=32)
    assert search_params(milvus_index("IVF16,Flat"), params, 10)["params"] == {"nprobe": 16}
    assert search_params(milvus_index("HNSW32"), params, 100)["params"] == {"ef": 100}


def test_filter_expression_quotes_values():
    expr = filter_expression({"gender": ("column", ["men", 'say "hi" \\o/']), "season": ("attribute", ["summer"])})
    assert expr == ('gender in ["men", "say \\"hi\\" \\\\o/"] and (attributes["season"] == "summer")')


def test_missing_extra_names_it(tmp_path, monkeypatch):
    settings = load_settings(write_config(tmp_path, index={"store": "milvus"},
                                          milvus={"uri": str(tmp_path / "m.db")}), env={})
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(MissingExtraError, match=r"pip install -e '\.\[scale\]'"):
        create_vector_store(settings).client  # noqa: B018 - connecting is what fails
    with pytest.raises(ValueError, match="index.store must be one of faiss, milvus"):
        create_vector_store(load_settings(write_config(tmp_path, index={"store": "annoy"}), env={}))


@pytest.fixture
def env(tmp_path: Path, shared_data: Path):
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    settings, store, vs, catalog, rows = make_env(tmp_path, "milvus")
    yield settings, store, vs, catalog, rows
    close_env(settings, store, vs)


def test_rebuild_fills_a_new_collection_and_moves_the_alias(env, small_embedder):
    settings, store, vs, catalog, _ = env
    run_index(settings, store, vs, small_embedder, catalog)
    assert vs.served_collection()[0] == "lookalike_g000001"
    assert {"vector", "gender", "article_type"} <= set(vs.client.list_indexes("lookalike_g000001"))
    # index.spec = auto -> HNSW M=32: the engine got the build parameters (milvus-lite drops pymilvus 3's flat ones).
    described = vs.client.describe_index("lookalike_g000001", "vector")
    assert described["index_type"] == "HNSW" and described["params"] == {"M": 32, "efConstruction": 200}
    for expected in ("lookalike_g000002", "lookalike_g000003"):
        report = run_index(settings, store, vs, small_embedder, catalog, rebuild=True)
        assert report.published and report.embedded == 0  # rebuilt from SQL, nothing re-embedded
        assert vs.served_collection()[0] == expected
    # The previous collection stays for servers still reading it; older ones are dropped.
    assert sorted(c for c in vs.client.list_collections() if c.startswith("lookalike_g")) == [
        "lookalike_g000002", "lookalike_g000003"]
    assert vs.current_name(store) == "milvus-000003"
    assert vs.check(store, small_embedder.fingerprint).ok
    other = types.SimpleNamespace(fingerprint="f" * 32, dim=small_embedder.dim)
    with pytest.raises(GenerationError, match="index --rebuild"):
        vs.open(vs.current_name(store), store, other)


def test_check_finds_a_tampered_collection_and_index_repairs_it(env, small_embedder):
    settings, store, vs, catalog, rows = env
    run_index(settings, store, vs, small_embedder, catalog)
    fp = small_embedder.fingerprint
    collection = vs.served_collection()[0]
    ids = [int(i) for i in store.state(fp).ids]
    old = {r["id"]: r for batch in store.iter_index_rows(fp, ids=ids[:3], with_vectors=True) for r in batch}
    from indexer.vectors.milvus_schema import milvus_row

    vs.client.delete(collection, ids=[ids[0]])  # missing
    stale = milvus_row({**old[ids[1]], "revision": old[ids[1]]["revision"] - 1000})
    vs.client.upsert(collection, [stale])  # an older vector
    retitled = milvus_row({**old[ids[2]], "gender": "Nobody"})
    vs.client.upsert(collection, [retitled])  # filter fields that SQL does not hold
    report = vs.check(store, fp)
    assert not report.ok
    assert report.missing_from_index == [ids[0]] and report.stale_vectors and report.stale_metadata == 1
    pipeline = create_pipeline(settings, store, small_embedder, progress=False, vector_store=vs)
    assert pipeline.publish()
    assert vs.check(store, fp).ok
    assert not pipeline.publish()  # in step: nothing to do, no new record


def test_interrupted_sync_is_finished_by_the_next_run(env, small_embedder):
    settings, store, vs, catalog, rows = env
    run_index(settings, store, vs, small_embedder, catalog)
    lines = catalog.read_text().splitlines()
    from indexer.wiring import remove_items

    remove_items(settings, store, small_embedder, [r["id"] for r in rows[:12]])
    assert vs.check(store, small_embedder.fingerprint).ok

    class Interrupted(Exception):
        pass

    def stop(point: str) -> None:
        if point == "during-index-save":  # after the first upsert batch (milvus.batch_size = 5) of 12
            raise Interrupted(point)

    catalog.write_text("\n".join(lines) + "\n")
    pipeline = create_pipeline(settings, store, small_embedder, progress=False, crash_hook=stop, vector_store=vs)
    from indexer.catalog.source import open_catalog

    with pytest.raises(Interrupted):
        pipeline.run(open_catalog(catalog))
    half = vs.check(store, small_embedder.fingerprint)
    assert not half.ok and len(half.missing_from_index) == 12 - 5
    again = run_index(settings, store, vs, small_embedder, catalog)
    assert again.embedded == 0 and again.published
    final = vs.check(store, small_embedder.fingerprint)
    assert final.ok and final.index_count == N


def test_a_milvus_lite_file_held_by_another_process_is_a_clear_error(tmp_path):
    pytest.importorskip("milvus_lite")
    uri = tmp_path / "held.db"
    code = ("from pymilvus import MilvusClient; import sys; MilvusClient(sys.argv[1]); print('ready', flush=True); "
            "sys.stdin.read()")
    with subprocess.Popen([sys.executable, "-c", code, str(uri)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as holder:
        try:
            assert holder.stdout.readline().strip() == "ready"
            settings = load_settings(write_config(tmp_path, index={"store": "milvus"}, milvus={"uri": str(uri)}),
                                     env={})
            with pytest.raises(VectorStoreError, match="open in another process.*milvus-lite server"):
                create_vector_store(settings).client  # noqa: B018
        finally:
            holder.stdin.close()
            holder.wait(timeout=30)
    assert holder.returncode == 0
