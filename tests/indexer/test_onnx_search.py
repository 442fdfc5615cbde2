"""Switching model.runtime never forces a re-index: a catalog indexed with torch is searched with ONNX Runtime."""

from __future__ import annotations

from csv import DictReader
from pathlib import Path

import pytest

from indexer.catalog.images import decode_image
from indexer.embedders import create_embedder_from_settings
from indexer.settings import load_settings
from indexer.wiring import create_search_service, open_store
from tests.conftest import index_in_process, write_config, write_small_catalog

pytest.importorskip("onnxruntime")

MODEL = {"input_size": 64, "batch_size": 16, "threads": 1}


def test_index_with_torch_search_with_onnxruntime(tmp_path: Path) -> None:
    csv = write_small_catalog(tmp_path / "cat", 24, step=53)
    torch_config = write_config(tmp_path, model={**MODEL, "runtime": "torch"})
    torch_embedder = create_embedder_from_settings(load_settings(torch_config, env={}))
    assert torch_embedder.runtime == "torch"
    index_in_process(torch_config, csv, torch_embedder)

    settings = load_settings(torch_config, env={"LOOKALIKE_MODEL__RUNTIME": "onnxruntime",
                                                "LOOKALIKE_MODEL__ONNX_DIR": str(tmp_path / "onnx")})
    ort_embedder = create_embedder_from_settings(settings)
    assert ort_embedder.runtime == "onnxruntime"
    assert ort_embedder.fingerprint == torch_embedder.fingerprint  # the index stays valid for the new runtime
    store = open_store(settings)
    try:
        service = create_search_service(settings, store, ort_embedder)
        service.refresh()
        with csv.open(newline="") as fh:
            rows = list(DictReader(fh))
        for row in rows:
            hits = service.search_image(decode_image((csv.parent / row["image"]).read_bytes()), 3)
            assert hits[0].score > 0.999, (row["id"], hits[0].score)
            assert hits[0].item["external_id"] == row["id"], hits[0].item
        # A street-like photo through the QueryEngine: localisation keeps its activation crop under ONNX Runtime
        # (the graph's feature-map output replaces the torch hook), and every region ran through the same runtime.
        from PIL import Image

        from indexer.search.query import QueryEngine, QueryOptions

        scene = Image.new("RGB", (320, 240), (90, 120, 80))
        scene.paste(decode_image((csv.parent / rows[5]["image"]).read_bytes()).resize((60, 80)), (200, 120))
        result = QueryEngine(service).search(scene, QueryOptions(k=3, localize="crops"))
        assert result.localized and "activation" in [r.region.source for r in result.regions]
    finally:
        store.close()
