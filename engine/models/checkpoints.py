"""Fine-tuned model checkpoints: one torch file plus a JSON manifest beside it, both written crash-safely.

File ``<path>``: ``torch.save({"format": 1, "meta": meta, "state_dict": state})`` where ``state`` is the
``EmbeddingNet`` state dict (keys ``backbone.*`` and ``head.*``) and ``meta`` holds at least::

    {"backbone": "efficientnet_lite0", "input_size": 224,
     "head": {"type": "linear" | "mlp", "in_dim": 1280, "out_dim": 256, "hidden": 0}}   # head may be None

plus anything else the trainer wants recorded (it must be JSON-able). Optional ``"mean"``/``"std"`` override the
backbone's normalization. A *partial* checkpoint (``meta["base_weights"]`` present, e.g. ``""`` for the backbone's
default weights) stores only the tensors fine-tuning changed (``head.*`` and the unfrozen ``backbone.*`` keys); the
other backbone tensors are loaded from those base weights, whose resolved source must equal
``meta["base"]["source"]`` when that is recorded.
Manifest ``<path>.json``: ``{"format", "file", "bytes", "sha256", "meta"}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from engine.errors import EmbedderError
from engine.files import file_sha256, write_atomically

CHECKPOINT_FORMAT = 1


def manifest_path(path: str | os.PathLike) -> Path:
    """The manifest that sits beside a checkpoint: ``<path>.json``."""
    return Path(f"{os.fspath(path)}.json")


def _check_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(meta.get("backbone"), str) or not meta["backbone"]:
        raise ValueError("checkpoint meta needs a 'backbone' name")
    head = meta.get("head")
    if head is not None and not (isinstance(head, Mapping) and {"type", "in_dim", "out_dim"} <= set(head)):
        raise ValueError(f"checkpoint meta 'head' must be None or a spec with type/in_dim/out_dim, got {head!r}")
    try:
        return json.loads(json.dumps(dict(meta)))  # plain JSON types only, so weights_only torch.load can read it
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint meta must be JSON-serialisable: {exc}") from exc


def save_checkpoint(path: str | os.PathLike, module_state: Mapping[str, torch.Tensor],
                    meta: Mapping[str, Any]) -> dict[str, Any]:
    """Write a checkpoint file and its ``<path>.json`` manifest, each crash-safely.

    The checkpoint goes first and the manifest second, so after a crash between the two the manifest's sha256
    no longer matches and ``load_checkpoint`` refuses the pair instead of trusting it.

    Args:
        path: Destination file (its folder is created when missing).
        module_state: State dict of the ``EmbeddingNet`` (``backbone.*``, ``head.*``); tensors are copied to CPU.
        meta: JSON-able description; needs ``backbone`` and (optionally None) ``head`` spec, see module docstring.

    Returns:
        The manifest written beside the checkpoint.

    Raises:
        ValueError: When ``meta`` lacks the required keys or is not JSON-able.
    """
    clean_meta = _check_meta(meta)
    path = Path(path)
    state = {k: v.detach().to("cpu") for k, v in module_state.items()}
    payload = {"format": CHECKPOINT_FORMAT, "meta": clean_meta, "state_dict": state}
    write_atomically(path, lambda f: torch.save(payload, f))
    manifest = {"format": CHECKPOINT_FORMAT, "file": path.name, "bytes": path.stat().st_size,
                "sha256": file_sha256(path), "meta": clean_meta}
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    write_atomically(manifest_path(path), lambda f: f.write(text.encode()))
    return manifest


def load_checkpoint(path: str | os.PathLike, verify: bool = True) -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint`` onto the CPU.

    Args:
        path: The checkpoint file.
        verify: Check the file's sha256 against the manifest beside it (when there is one).

    Returns:
        ``{"meta": dict, "state_dict": dict[str, Tensor], "sha256": str}``.

    Raises:
        EmbedderError: Missing file, checksum mismatch, or not a checkpoint of this format.
    """
    path = Path(path)
    if not path.is_file():
        raise EmbedderError(f"checkpoint not found: {str(path)!r} (model.checkpoint); leave it empty for none")
    sha = file_sha256(path)
    manifest_file = manifest_path(path)
    if verify and manifest_file.is_file():
        try:
            expected = json.loads(manifest_file.read_text())["sha256"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EmbedderError(f"unreadable checkpoint manifest {str(manifest_file)!r}: {exc}") from exc
        if expected != sha:
            raise EmbedderError(f"checkpoint {str(path)!r} does not match its manifest's sha256 (interrupted save or "
                                "edited file?) (model.checkpoint); save it again")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EmbedderError(f"cannot read checkpoint {str(path)!r} (model.checkpoint): {exc}") from exc
    if not (isinstance(payload, dict) and isinstance(payload.get("meta"), dict)
            and isinstance(payload.get("state_dict"), dict)):
        raise EmbedderError(f"{str(path)!r} is not a Lookalike checkpoint (model.checkpoint): expected meta and "
                            "state_dict")
    if payload.get("format", CHECKPOINT_FORMAT) > CHECKPOINT_FORMAT:
        raise EmbedderError(f"checkpoint {str(path)!r} has format {payload['format']}, newer than this code reads")
    return {"meta": payload["meta"], "state_dict": payload["state_dict"], "sha256": sha}
