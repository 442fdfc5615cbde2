"""Fixtures for the engine tests: no network, the real default model, the catalog beside the repo."""

from __future__ import annotations

import csv
import socket
from pathlib import Path

import pytest
import torch

from engine import Embedder, create_embedder

DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CATALOG_DIR = DATA_DIR / "fashion-product-images"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Fail any connection attempt at once (no hub is reachable here, and tests must not depend on one), and
    point the torch hub / Hugging Face caches at an empty folder so cached downloads cannot mask a failure."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access is disabled in the engine tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    cache = tmp_path_factory.getbasetemp() / "model-caches"
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch"))
    monkeypatch.setenv("HF_HOME", str(cache / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> None:
    """The project machines have 2 shared cores. With 2 OpenMP threads and other jobs running, torch's threads
    spin-wait for each other and small forwards get 10-20x slower (measured); one thread stays predictable."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def lite0() -> Embedder:
    """The real default model: EfficientNet-Lite0 with the packaged ImageNet weights, on the CPU."""
    return create_embedder("efficientnet_lite0", device="cpu")


@pytest.fixture(scope="session")
def catalog_dir() -> Path:
    """The real catalog folder beside the repo, ../shared/data/fashion-product-images (skips when absent)."""
    if not (CATALOG_DIR / "catalog.csv").is_file():
        pytest.skip(f"catalog not found at {CATALOG_DIR}")
    return CATALOG_DIR


@pytest.fixture(scope="session")
def catalog_rows(catalog_dir: Path) -> list[dict[str, str]]:
    """Rows of the real catalog.csv, sorted by id."""
    with (catalog_dir / "catalog.csv").open(newline="") as f:
        return list(csv.DictReader(f))
