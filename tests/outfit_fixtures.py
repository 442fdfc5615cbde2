"""A small indexed catalog with an outfit model trained on it, built once per test session and shared (read-only)
by the outfit tests in tests/indexer, tests/web and tests/e2e."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

OUTFIT_CATALOG_SIZE = 320
_CACHE: dict[str, OutfitCatalogFixture] = {}


@dataclass
class OutfitCatalogFixture:
    settings: object
    csv: Path
    checkpoint: Path
    manifest: dict


def outfit_catalog(tmp_path_factory, embedder) -> OutfitCatalogFixture:
    """Index OUTFIT_CATALOG_SIZE real products (every 11th row) and train a tiny outfit model on their PROXY
    outfits; the config's outfit.checkpoint points at it."""
    if "catalog" in _CACHE:
        return _CACHE["catalog"]
    import torch

    from engine.outfits.training import CompatConfig, SlotConfig
    from indexer.outfits.training import OutfitTrainOptions
    from indexer.outfits.wiring import train_outfits
    from indexer.wiring import open_store
    from tests.web.conftest import build_indexed_catalog

    folder = tmp_path_factory.mktemp("outfits")
    checkpoint = folder / "outfit-model.pt"
    settings, csv = build_indexed_catalog(folder, embedder, n=OUTFIT_CATALOG_SIZE,
                                          outfit={"checkpoint": str(checkpoint)})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    store = open_store(settings)
    try:
        manifest = train_outfits(
            settings, store, embedder,
            OutfitTrainOptions(out=checkpoint, train_outfits=600, val_outfits=60, test_outfits=120,
                               proxy_dir=folder / "proxy", command="tests/outfit_fixtures.py"),
            CompatConfig(embed_dim=16, hidden=32, dropout=0.1, epochs=4, batch_size=256, lr=3e-3),
            SlotConfig(hidden=32, epochs=10), echo=lambda _line: None)
    finally:
        store.close()
        torch.set_num_threads(threads)
    _CACHE["catalog"] = OutfitCatalogFixture(settings, csv, checkpoint, manifest)
    return _CACHE["catalog"]
