"""Optional dependencies: import them on first use, or fail with a message naming the extra that installs them.

The `scale` extra (pymilvus, milvus-lite, ray[data]) is optional: the base install indexes and serves without it.
Imports nothing of the project, so any layer may use it.
"""

from __future__ import annotations

import importlib

SCALE_EXTRA = "pip install -e '.[scale]'"


class MissingExtraError(RuntimeError):
    """An optional dependency (pymilvus, milvus-lite, ray) is not installed; the message names the extra."""



def require_module(name: str, purpose: str):
    """Import an optional module, or raise MissingExtraError naming the `scale` extra."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MissingExtraError(f"{purpose} needs the Python package {exc.name or name!r}, which is not installed: "
                                f"{SCALE_EXTRA} (the `scale` extra: pymilvus, milvus-lite, ray[data])") from None
