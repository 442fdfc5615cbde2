"""Files of small models keyed to the served image model (the text tower, the garment detector's head): one file per
image model fingerprint, fp16 weights in a ``torch.save`` payload, a ``<file>.json`` manifest with its sha256, both
written crash-safely; reading checks the manifest, the checksum and the image model before anything is built.

May import: torch, engine.files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from engine.files import file_sha256, write_atomically


def keyed_path(configured: str | os.PathLike, image_fingerprint: str) -> Path:
    """``configured`` itself when it names a ``.pt`` file, else ``<configured>/<fingerprint>.pt`` (a folder keeps one
    file per image model)."""
    path = Path(configured)
    return path if path.suffix == ".pt" else path / f"{image_fingerprint}.pt"


def save_keyed(path: str | os.PathLike, file_format: int, meta: Mapping[str, Any],
               state_dict: Mapping[str, torch.Tensor], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write ``{"format", "meta", "state_dict" (floating tensors as fp16), **extra}`` and its manifest (format, file,
    bytes, sha256, meta); returns the manifest. ``meta`` must be JSON data and hold ``image_fingerprint``."""
    if not meta.get("image_fingerprint"):
        raise ValueError("the model's meta needs the image model's fingerprint")
    path = Path(path)
    full_meta = json.loads(json.dumps(dict(meta)))
    state = {k: v.detach().to("cpu", torch.float16 if v.is_floating_point() else v.dtype)
             for k, v in state_dict.items()}
    payload = {"format": file_format, "meta": full_meta, "state_dict": state, **(extra or {})}
    write_atomically(path, lambda f: torch.save(payload, f))
    manifest = {"format": file_format, "file": path.name, "bytes": path.stat().st_size,
                "sha256": file_sha256(path), "meta": full_meta}
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    write_atomically(Path(f"{path}.json"), lambda f: f.write(text.encode()))
    return manifest


def load_keyed(path: str | os.PathLike, image_fingerprint: str | None, what: str, hint: str,
               error: Callable[[str], Exception]) -> tuple[dict[str, Any], str]:
    """The payload written by ``save_keyed`` (state_dict back in fp32) and the file's sha256, after checking that the
    file exists, its manifest reads, it was made for ``image_fingerprint`` (None: any) and matches its checksum.

    Args:
        what: How messages name the model ("text model", "detector").
        hint: What to do about it, appended to every message.
        error: The exception type to raise, called with the message.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"no {what} at {str(path)!r}; {hint}")
    manifest_file = Path(f"{path}.json")
    try:
        manifest = json.loads(manifest_file.read_text())
    except (OSError, ValueError) as exc:
        raise error(f"{what} manifest {str(manifest_file)!r} is missing or unreadable ({exc}); {hint}") from None
    made_for = manifest.get("meta", {}).get("image_fingerprint")
    if image_fingerprint is not None and made_for != image_fingerprint:
        raise error(f"the {what} {str(path)!r} was trained for image model {made_for}, but the served image model is "
                    f"{image_fingerprint}; {hint}")
    if manifest.get("sha256") != file_sha256(path):
        raise error(f"{what} {str(path)!r} does not match its manifest's sha256 (interrupted save or edited file?); "
                    f"{hint}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        payload["state_dict"] = {k: v.float() if v.is_floating_point() else v
                                 for k, v in payload["state_dict"].items()}
        meta = payload["meta"]
    except Exception as exc:  # noqa: BLE001 - any unreadable payload is one clear message
        raise error(f"cannot read {what} {str(path)!r}: {type(exc).__name__}: {exc}; {hint}") from None
    if image_fingerprint is not None and meta.get("image_fingerprint") != image_fingerprint:
        raise error(f"the {what} {str(path)!r} was trained for another image model; {hint}")
    return payload, manifest["sha256"]
