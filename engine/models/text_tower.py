"""The text tower: open_clip's BPE tokenizer remapped to a catalog vocabulary, its TextTransformer, and the
checkpoint (+ manifest) that ties a trained tower to the image model whose embedding space it writes into.

LiT-style: the served image model stays locked; the tower maps words to unit vectors of the image embedding's
dimension, so the existing index answers text queries without re-embedding anything.

Vocabulary: open_clip's 49,408 BPE tokens are remapped to the ones that occur in the training text (a few
thousand for a fashion catalog) plus pad / unknown / start / end ids, which keeps the committed checkpoint small.
The end-of-text id is the largest id, so open_clip's ``argmax`` pooling reads the end token's state.

Checkpoint file ``<path>``: ``torch.save({"format": 1, "meta": meta, "state_dict": state})`` with fp16 weights;
``meta`` holds the config, the vocabulary (the BPE ids kept, in order) and ``image_fingerprint``; the manifest
``<path>.json`` repeats meta (without the vocabulary) with the file's sha256.

May import: torch, numpy, open_clip, engine.models.keyed_files, engine.errors.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import EmbedderError
from engine.models.keyed_files import keyed_path, load_keyed, save_keyed

TEXT_FORMAT = 1
PAD, UNK, SOT = 0, 1, 2
N_SPECIAL_LOW = 3  # pad, unk, sot; eot is the last id
MAX_QUERY_CHARS = 200  # longest text query accepted (API, CLI)


class TextTowerError(EmbedderError):
    """A text tower that cannot be used: missing, corrupt, or trained for another image model."""


@dataclass(frozen=True)
class TextTowerConfig:
    """Shape of the tower: context length in tokens, transformer width / heads / layers, output dimension."""

    dim: int
    context_length: int = 32
    width: int = 256
    heads: int = 4
    layers: int = 3


@functools.lru_cache(maxsize=1)
def bpe_tokenizer():  # noqa: ANN201 - open_clip.tokenizer.SimpleTokenizer
    """open_clip's BPE tokenizer (its vocabulary ships inside the package: nothing is downloaded)."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


class TextVocabulary:
    """The BPE ids a tower knows, remapped to 0..size-1 (pad, unk, sot, the kept BPE ids, eot)."""

    def __init__(self, bpe_ids: Sequence[int]) -> None:
        self.bpe_ids = [int(i) for i in bpe_ids]
        self._index = {b: N_SPECIAL_LOW + n for n, b in enumerate(self.bpe_ids)}
        self.eot = N_SPECIAL_LOW + len(self.bpe_ids)
        self.size = self.eot + 1

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> TextVocabulary:
        """Every BPE token that occurs in the texts, in BPE order."""
        tok = bpe_tokenizer()
        seen: set[int] = set()
        for text in texts:
            seen.update(tok.encode(text))
        return cls(sorted(seen))

    def ids(self, text: str) -> list[int]:
        """Remapped token ids of a text, without start / end tokens (UNK for tokens the vocabulary lacks)."""
        return [self._index.get(b, UNK) for b in bpe_tokenizer().encode(text)]

    def unknown_share(self, text: str) -> float:
        """Share of the text's tokens the vocabulary does not know (1.0 for a text with no tokens)."""
        ids = self.ids(text)
        return 1.0 if not ids else sum(i == UNK for i in ids) / len(ids)

    def encode(self, texts: Sequence[str], context_length: int) -> torch.Tensor:
        """(n, context_length) int64 tokens: sot, ids (truncated), eot, pad."""
        return self.encode_ids([self.ids(t) for t in texts], context_length)

    def encode_ids(self, id_lists: Sequence[Sequence[int]], context_length: int) -> torch.Tensor:
        out = torch.full((len(id_lists), context_length), PAD, dtype=torch.long)
        for row, ids in enumerate(id_lists):
            seq = [SOT, *list(ids)[:context_length - 2], self.eot]
            out[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        return out


class TextTower(nn.Module):
    """open_clip's TextTransformer (causal, argmax pooling at the end token) -> L2-normalised vectors."""

    def __init__(self, config: TextTowerConfig, vocab_size: int) -> None:
        super().__init__()
        from open_clip.transformer import TextTransformer

        self.config = config
        self.transformer = TextTransformer(context_length=config.context_length, vocab_size=vocab_size,
                                           width=config.width, heads=config.heads, layers=config.layers,
                                           output_dim=config.dim, pad_id=PAD, pool_type="argmax")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.transformer(tokens), dim=-1)


# The tower file for an image model: ``<folder>/<fingerprint>.pt`` (one tower per image model, as models/outfits
# does), or the configured .pt file itself.
text_checkpoint_path = keyed_path


def save_text_tower(path: str | os.PathLike, tower: TextTower, vocab: TextVocabulary,
                    meta: dict[str, Any]) -> dict[str, Any]:
    """Write the tower (fp16 weights) and its ``<path>.json`` manifest crash-safely; returns the manifest.

    ``meta`` must hold ``image_fingerprint`` (the image model whose space the tower writes into).
    """
    return save_keyed(path, TEXT_FORMAT, {**meta, "config": asdict(tower.config), "vocab_size": vocab.size},
                      tower.state_dict(), extra={"vocab": vocab.bpe_ids})


def load_text_tower(path: str | os.PathLike, image_fingerprint: str | None = None
                    ) -> tuple[TextTower, TextVocabulary, dict[str, Any]]:
    """Read a tower written by ``save_text_tower`` (fp32, eval mode) after checking its manifest.

    Args:
        path: The checkpoint file.
        image_fingerprint: The served image model's fingerprint; a tower trained for another one is refused (its
            vectors would not be comparable).

    Raises:
        TextTowerError: missing file, checksum mismatch, unreadable, or trained for another image model.
    """
    hint = "text search needs one; run `python manage.py train-text`"
    payload, sha256 = load_keyed(path, image_fingerprint, "text model", hint, TextTowerError)
    meta = payload["meta"]
    try:
        vocab = TextVocabulary(payload["vocab"])
        tower = TextTower(TextTowerConfig(**meta["config"]), vocab.size)
        tower.load_state_dict(payload["state_dict"])
    except TextTowerError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable payload is one clear message
        raise TextTowerError(f"cannot read text model {str(path)!r}: {type(exc).__name__}: {exc}; {hint}") from None
    tower.eval()
    return tower, vocab, {**meta, "sha256": sha256}


class TextEncoder:
    """Texts -> unit vectors with a loaded tower, on torch or ONNX Runtime (``engine.models.text_onnx``)."""

    def __init__(self, tower: TextTower, vocab: TextVocabulary, meta: dict[str, Any]) -> None:
        self.tower = tower
        self.vocab = vocab
        self.meta = meta
        self.dim = tower.config.dim
        self.context_length = tower.config.context_length
        self.image_fingerprint = meta.get("image_fingerprint", "")
        self.runtime = "torch"
        self._forward = None  # an ONNX session's run, when attached

    def use_forward(self, forward, runtime: str) -> None:  # noqa: ANN001 - callable(np int64 tokens) -> np vectors
        self._forward = forward
        self.runtime = runtime

    def tokens(self, texts: Sequence[str]) -> torch.Tensor:
        return self.vocab.encode(texts, self.context_length)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        tokens = self.tokens(texts)
        if self._forward is not None:
            out = np.asarray(self._forward(tokens.numpy()), np.float32)
        else:
            with torch.inference_mode():
                out = self.tower(tokens).float().numpy()
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.maximum(norms, 1e-12)).astype(np.float32)
