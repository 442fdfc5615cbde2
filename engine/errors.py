"""Errors raised by the engine package."""

from __future__ import annotations


class EmbedderError(RuntimeError):
    """A model could not be built or loaded as configured (unknown backbone, weights unavailable, bad checkpoint).

    Messages name the config key to change (``model.backbone``, ``model.weights``, ``model.checkpoint``) so that
    the CLI and the web app can show them to the user as they are.
    """
