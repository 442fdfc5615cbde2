"""Index generations on disk: gen-NNNNNN/ folders with a manifest, made current by an atomic swap.

Layout of the index dir:
    CURRENT                 one line: the name of the generation being served
    gen-000007/index.faiss  the FAISS index (ids = SQL primary keys)
    gen-000007/ids.npy      int64 ids, row order of vectors.npy
    gen-000007/vectors.npy  float32 (n, dim) vectors (exact filtered search, torch/CUDA search)
    gen-000007/manifest.json  what was built from what, and checksums of the three files
A generation folder is complete once its manifest exists; CURRENT only ever names complete ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from engine.files import file_sha256, fsync_dir, write_bytes_atomically

MANIFEST = "manifest.json"
CURRENT = "CURRENT"
FORMAT_VERSION = 1
KEEP_GENERATIONS = 2


class GenerationError(RuntimeError):
    """An index generation is missing, corrupt or does not match the store; the message names the fix."""


@dataclass
class Manifest:
    name: str
    spec: str
    metric: str
    dim: int
    count: int
    fingerprint: str
    high_water: int
    ids_sha256: str
    checksums: dict[str, str]
    model: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    build_seconds: float = 0.0
    created_at: float = field(default_factory=time.time)
    format_version: int = FORMAT_VERSION


def ids_digest(ids: np.ndarray, revisions: np.ndarray | None = None) -> str:
    """Order-independent digest of an id set (and each id's embedding revision)."""
    order = np.argsort(ids, kind="stable")
    h = hashlib.sha256(np.ascontiguousarray(ids[order], dtype="<i8").tobytes())
    if revisions is not None:
        h.update(np.ascontiguousarray(revisions[order], dtype="<i8").tobytes())
    return h.hexdigest()


def current_name(index_dir: Path) -> str | None:
    try:
        name = (index_dir / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def list_generations(index_dir: Path) -> list[str]:
    if not index_dir.is_dir():
        return []
    return sorted(p.name for p in index_dir.iterdir() if p.is_dir() and p.name.startswith("gen-")
                  and (p / MANIFEST).is_file())


def generation_number(name: str | None) -> int:
    """The NNNNNN of gen-NNNNNN (0 for anything else)."""
    return int(name[4:]) if name and name.startswith("gen-") and name[4:].isdigit() else 0


def _next_name(index_dir: Path, floor: int = 0) -> str:
    """A name above every generation on disk, the one CURRENT names, and `floor` (e.g. SQL's record)."""
    numbers = [generation_number(p.name.lstrip(".").split(".")[0]) for p in index_dir.iterdir()]
    numbers += [generation_number(current_name(index_dir)), floor]
    return f"gen-{max(numbers) + 1:06d}"


def write_generation(index_dir: Path, index: faiss.Index, ids: np.ndarray, vectors: np.ndarray,
                     manifest_fields: dict[str, Any], crash_hook=None, floor: int = 0) -> Manifest:
    """Write a complete generation folder (not yet current). Returns its manifest.

    Files are written into a hidden temp folder, fsynced, and the folder renamed to gen-NNNNNN;
    a crash leaves at most a hidden folder that the next run removes.
    """
    hook = crash_hook or (lambda _point: None)
    index_dir.mkdir(parents=True, exist_ok=True)
    name = _next_name(index_dir, floor)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=index_dir))
    try:
        faiss.write_index(index, str(tmp / "index.faiss"))
        np.save(tmp / "ids.npy", np.ascontiguousarray(ids, dtype=np.int64))
        np.save(tmp / "vectors.npy", np.ascontiguousarray(vectors, dtype=np.float32))
        hook("during-index-save")
        for f in ("index.faiss", "ids.npy", "vectors.npy"):
            with (tmp / f).open("rb") as fh:
                os.fsync(fh.fileno())
        checksums = {f: file_sha256(tmp / f) for f in ("index.faiss", "ids.npy", "vectors.npy")}
        manifest = Manifest(name=name, checksums=checksums, **manifest_fields)
        write_bytes_atomically(tmp / MANIFEST, json.dumps(asdict(manifest), indent=2, sort_keys=True).encode())
        os.replace(tmp, index_dir / name)
        fsync_dir(index_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def make_current(index_dir: Path, name: str) -> None:
    """Atomically point CURRENT at a complete generation, then prune old ones."""
    if not (index_dir / name / MANIFEST).is_file():
        raise GenerationError(f"generation {name} is incomplete; refusing to make it current")
    write_bytes_atomically(index_dir / CURRENT, (name + "\n").encode())
    prune_generations(index_dir)


def prune_generations(index_dir: Path, keep: int = KEEP_GENERATIONS) -> None:
    """Remove leftover temp folders and all but the newest `keep` generations (never the current one)."""
    cur = current_name(index_dir)
    for p in index_dir.glob(".gen-*"):
        shutil.rmtree(p, ignore_errors=True)
    names = list_generations(index_dir)
    for old in names[:-keep] if keep else names:
        if old != cur:
            shutil.rmtree(index_dir / old, ignore_errors=True)


def read_manifest(gen_dir: Path) -> Manifest:
    try:
        data = json.loads((gen_dir / MANIFEST).read_text())
        return Manifest(**data)
    except FileNotFoundError:
        raise GenerationError(f"{gen_dir} has no manifest: run `python manage.py index --rebuild`") from None
    except (json.JSONDecodeError, TypeError) as exc:
        raise GenerationError(
            f"{gen_dir}/{MANIFEST} is corrupt ({exc}): run `python manage.py index --rebuild`") from None


@dataclass
class LoadedGeneration:
    manifest: Manifest
    index: faiss.Index
    ids: np.ndarray
    vectors: np.ndarray
    path: Path


def load_generation(index_dir: Path, name: str | None = None, verify_checksums: bool = True) -> LoadedGeneration:
    """Load a generation (the current one by default), verifying its files against the manifest.

    Raises:
        GenerationError: nothing built yet, files missing or corrupt, or counts that disagree.
    """
    name = name or current_name(index_dir)
    if name is None:
        raise GenerationError(f"no index has been built in {index_dir}: run `python manage.py index`")
    gen_dir = index_dir / name
    manifest = read_manifest(gen_dir)
    fix = "run `python manage.py index --rebuild`"
    for f, digest in manifest.checksums.items():
        p = gen_dir / f
        if not p.is_file():
            raise GenerationError(f"index file {p} is missing: {fix}")
        if verify_checksums and file_sha256(p) != digest:
            raise GenerationError(f"index file {p} is corrupt (checksum mismatch): {fix}")
    try:
        index = faiss.read_index(str(gen_dir / "index.faiss"))
        ids = np.load(gen_dir / "ids.npy")
        vectors = np.load(gen_dir / "vectors.npy", mmap_mode="r")
    except (RuntimeError, ValueError, OSError) as exc:
        raise GenerationError(f"index in {gen_dir} cannot be read ({exc}): {fix}") from None
    if index.ntotal != manifest.count or len(ids) != manifest.count or vectors.shape != (manifest.count, manifest.dim):
        raise GenerationError(f"index in {gen_dir} holds {index.ntotal} vectors, manifest says {manifest.count}: {fix}")
    if index.d != manifest.dim:
        raise GenerationError(f"index in {gen_dir} has dimension {index.d}, manifest says {manifest.dim}: {fix}")
    return LoadedGeneration(manifest, index, ids, np.asarray(vectors), gen_dir)
