"""Shared fixtures: real catalog data from ../shared, temp configs, migrated databases, the app."""

from __future__ import annotations

import csv
import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "fashion-product-images"
CATALOG_CSV = SHARED_DATA / "catalog.csv"
PYTHON = sys.executable
pytest_plugins = ["tests.scoreboard"]


def read_catalog_rows(n: int | None = None, step: int = 1) -> list[dict[str, str]]:
    """Rows of the real catalog (every `step`-th row, at most n)."""
    with CATALOG_CSV.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows = rows[::step]
    return rows if n is None else rows[:n]


def write_small_catalog(folder: Path, n: int, step: int = 37, copy_images: bool = True) -> Path:
    """A catalog CSV of n real products in folder (images copied there so tests may alter them)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = read_catalog_rows(n, step)
    out = folder / "catalog.csv"
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        w.writeheader()
        for r in rows:
            if copy_images:
                (folder / "images").mkdir(exist_ok=True)
                shutil.copyfile(SHARED_DATA / r["image"], folder / r["image"])
            w.writerow(r)
    return out


def write_config(folder: Path, db_url: str | None = None, **sections: dict) -> Path:
    """A config.toml for tests: SQLite in folder, index in folder, a small fast model input."""
    base = {
        "database": {"url": db_url or f"sqlite:///{folder / 'lookalike.db'}"},
        "catalog": {"default_csv": str(CATALOG_CSV)},
        # torch: the suite compares vectors across code paths bit for bit; ONNX Runtime is tested on its own
        # (tests/engine/test_onnx_runtime.py) and would export a graph into every test's folder.
        "model": {"input_size": 96, "batch_size": 32, "runtime": "torch"},
        "index": {"dir": str(folder / "index")},
        "pipeline": {"commit_every": 64},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    lines = []
    for name, values in base.items():
        lines.append(f"[{name}]")
        for k, v in values.items():
            lines.append(f"{k} = {v!r}".replace("'", '"') if isinstance(v, str) else f"{k} = {v}")
        lines.append("")
    path = folder / "config.toml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not CATALOG_CSV.is_file():
        pytest.fail(f"real catalog not found at {CATALOG_CSV}: ../shared must sit beside the repo")
    return SHARED_DATA


@pytest.fixture
def config_path(tmp_path: Path, shared_data: Path) -> Path:
    from indexer.settings import load_settings
    from indexer.store.db import upgrade_database

    path = write_config(tmp_path)
    upgrade_database(load_settings(path, env={}).database_url)
    return path


@pytest.fixture
def settings(config_path: Path):
    from indexer.settings import load_settings

    return load_settings(config_path, env={})


@pytest.fixture(scope="session")
def small_embedder():
    """The real default backbone (ImageNet EfficientNet-Lite0) at a small input size, shared by tests."""
    from engine import create_embedder

    return create_embedder("efficientnet_lite0", input_size=96, device="cpu")


def run_manage(*args: str, config: Path, timeout: float = 600, env_extra: dict | None = None):
    """Run manage.py in a real subprocess; returns CompletedProcess."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
    env.update({"LOOKALIKE_CONFIG": str(config), "PYTHONUNBUFFERED": "1"})
    env.update(env_extra or {})
    return subprocess.run([PYTHON, str(REPO / "manage.py"), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO)


def dedent(s: str) -> str:
    return textwrap.dedent(s).lstrip()


def index_in_process(config: Path, catalog: Path, embedder) -> None:
    """Migrate and index ``catalog`` as `manage.py db upgrade` + `manage.py index` do, in this process (no interpreter
    start), with ``embedder`` (the one the config's [model] gives)."""
    from indexer.catalog.source import open_catalog
    from indexer.settings import load_settings
    from indexer.store.db import upgrade_database
    from indexer.wiring import create_pipeline, open_store

    settings = load_settings(config, env={})
    upgrade_database(settings.database_url)
    store = open_store(settings)
    try:
        assert create_pipeline(settings, store, embedder, progress=False).run(open_catalog(catalog)).published
    finally:
        store.close()
