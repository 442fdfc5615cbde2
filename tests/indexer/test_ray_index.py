"""`manage.py index --ray`: embedding on Ray Data actors, on a local Ray cluster started on loopback.

One small cluster (2 CPUs, a 100 MB object store) serves the module and is shut down at the end.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from indexer.catalog.source import open_catalog
from indexer.settings import load_settings
from indexer.store.db import upgrade_database
from tests.conftest import write_config, write_small_catalog

pytestmark = pytest.mark.slow
N = 12


@pytest.fixture(scope="module")
def ray_cluster():
    pytest.importorskip("ray.data", reason="the scale extra is not installed (pip install -e '.[scale]')")
    import ray

    from indexer.pipeline.ray_pipeline import RayOptions, connect_ray

    assert not ray.is_initialized()
    assert connect_ray(RayOptions(address="auto", num_cpus=2, object_store_mb=100))
    assert ray.cluster_resources().get("CPU") == 2
    yield ray
    ray.shutdown(wait_for_processes=True)  # reaped, so no "subprocess still running" warnings under load
    assert not ray.is_initialized()


def make_settings(folder: Path, **sections):
    config = write_config(folder, milvus={"uri": str(folder / "milvus.db")}, **sections)
    settings = load_settings(config, env={})
    upgrade_database(settings.database_url)
    return settings


def ray_run(settings, embedder, catalog: Path, workers: int = 2, hook=None):
    from indexer.pipeline.ray_pipeline import RayOptions
    from indexer.wiring import create_ray_pipeline, open_store

    store = open_store(settings)
    pipeline = create_ray_pipeline(settings, store, embedder, RayOptions(workers=workers), crash_hook=hook,
                                   progress=False)
    try:
        return pipeline.run(open_catalog(catalog)), pipeline.runner, store
    finally:
        pipeline.vector_store.close()


def test_cli_index_with_ray_into_milvus_embeds_what_the_local_pipeline_embeds(ray_cluster, small_embedder, tmp_path):
    pytest.importorskip("pymilvus")
    from click.testing import CliRunner

    import manage
    from indexer.vectors.milvus_store import release_local_server
    from indexer.wiring import create_pipeline, open_store

    catalog = write_small_catalog(tmp_path / "cat", N)
    (catalog.parent / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    catalog.write_text(catalog.read_text() + "999001,Broken,,,,,,,images/broken.jpg,\n")
    local = make_settings(tmp_path / "local")
    store = open_store(local)
    expected = create_pipeline(local, store, small_embedder, progress=False).run(open_catalog(catalog))
    ids, _, vectors = store.load_vectors(small_embedder.fingerprint)
    by_external = {store.get_items([int(i)])[int(i)]["external_id"]: v for i, v in zip(ids, vectors, strict=True)}

    settings = make_settings(tmp_path / "ray", index={"store": "milvus"})
    result = CliRunner().invoke(manage.cli, ["index", str(catalog), "--config", settings.source, "--ray", "auto",
                                             "--ray-workers", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"rows: {N + 1}  new: {N}" in result.output and "skipped: 1" in result.output
    assert f"  skipped {expected.problems[0]}" in result.output and "undecodable image" in result.output
    assert "on ray: 2 CPU actors" in result.output and "index generation milvus-000001" in result.output
    rstore = open_store(settings)
    rids, _, rvectors = rstore.load_vectors(small_embedder.fingerprint)
    assert len(rids) == N
    for i, v in zip(rids, rvectors, strict=True):
        ext = rstore.get_items([int(i)])[int(i)]["external_id"]
        np.testing.assert_allclose(v, by_external[ext], atol=1e-5)
    check = CliRunner().invoke(manage.cli, ["check", "--config", settings.source])
    assert check.exit_code == 0 and "consistent" in check.output, check.output
    release_local_server(settings.milvus_uri)


def test_interrupted_ray_run_resumes_and_a_rerun_embeds_nothing(ray_cluster, small_embedder, tmp_path):
    catalog = write_small_catalog(tmp_path / "cat", N)
    settings = make_settings(tmp_path / "s", pipeline={"commit_every": 4})

    class Interrupted(Exception):
        pass

    def stop_after_first_commit(point: str) -> None:
        if point == "after-sql-commit":
            raise Interrupted(point)

    with pytest.raises(Interrupted):
        ray_run(settings, small_embedder, catalog, workers=1, hook=stop_after_first_commit)
    resumed, runner, store = ray_run(settings, small_embedder, catalog, workers=1)
    assert "1 CPU actors x 2 CPUs" in runner
    assert (resumed.unchanged, resumed.new) == (4, N - 4) and resumed.published
    from indexer.vectors.factory import create_vector_store

    report = create_vector_store(settings).check(store, small_embedder.fingerprint)
    assert report.ok and report.index_count == N, report.problems
    again, _, _ = ray_run(settings, small_embedder, catalog, workers=1)
    assert (again.new, again.changed, again.unchanged, again.published) == (0, 0, N, False)
    assert again.embedded_seconds == 0.0  # no forward pass at all: every image hash was already embedded


def test_embed_batch_reports_problems_and_skips_known_images(small_embedder, tmp_path):
    from indexer.pipeline.ray_pipeline import embed_batch

    catalog = write_small_catalog(tmp_path / "cat", 2)
    images = sorted((catalog.parent / "images").iterdir())
    known = hashlib.sha256(images[1].read_bytes()).hexdigest()
    (tmp_path / "text.jpg").write_text("text")
    out = embed_batch(small_embedder, {"key": np.arange(4), "skip_sha": np.array(["", known, "", ""], dtype=object),
                                       "path": np.array([str(images[0]), str(images[1]), str(tmp_path / "missing.jpg"),
                                                         str(tmp_path / "text.jpg")], dtype=object)}, 10_000_000)
    assert out["embedded"].tolist() == [True, False, False, False]
    assert out["sha"][1] == known and out["error"][0] == out["error"][1] == ""
    assert out["error"][2].startswith("cannot read image") and out["error"][3].startswith("undecodable image")
    np.testing.assert_allclose(np.linalg.norm(out["vector"][0]), 1.0, atol=1e-5)
    assert not out["vector"][1:].any()


def test_actor_refuses_a_model_that_differs_from_the_driver(tmp_path):
    from engine import EmbedderError
    from indexer.pipeline.ray_pipeline import EmbedActor

    settings = load_settings(write_config(tmp_path), env={})
    with pytest.raises(EmbedderError, match="same weights"):
        EmbedActor(settings, "0" * 32, 10_000_000, 1, 1)


def test_missing_ray_names_the_extra(monkeypatch):
    import sys

    from indexer.extras import MissingExtraError
    from indexer.pipeline.ray_pipeline import RayOptions, connect_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingExtraError, match=r"manage.py index --ray needs .*pip install -e '\.\[scale\]'"):
        connect_ray(RayOptions())
