"""Catalog labels named in a shopper's words: which article types and colours "navy blue linen shirts" asks for.

The text tower writes words into the image embedding space, where colour and article type are only two of many
things a vector says; when a query names a label the catalog uses, search can also ask the item-side posteriors
for it (indexer/search/label_terms.py). This module only reads the words.

Rule (documented in docs/text-search.md): words are lower-cased and split on anything that is not a letter or a
digit ("T-shirt" -> "t", "shirt"); each word loses a plural "s" or "es" ("shirts" -> "shirt", "dresses" -> "dress";
"dress" stays); a label matches when its words appear in a row, written apart or together ("t shirt", "tshirt" and
"T-shirts" all name "Tshirts").
Scanning left to right, the longest label starting at a word wins and its words are used up, so "navy blue shirt"
names "Navy Blue" and "Shirts", not "Blue". A phrase that names a label of both kinds counts for both.

May import: nothing outside the standard library.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

MAX_LABEL_WORDS = 4
_WORD = re.compile(r"[^\W_]+")


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]  # dresses, watches, boxes
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def words(text: str) -> list[str]:
    """The query's words, lower-cased, without plural "s"."""
    return [_singular(w) for w in _WORD.findall(text.lower())]


def label_key(label: str) -> str:
    """What a label is matched by: its words run together ("Navy Blue" -> "navyblue", "Tshirts" -> "tshirt")."""
    return "".join(words(label))


@dataclass(frozen=True)
class NamedLabels:
    """Labels a text names, per kind ("article_type", "colour"), each in catalog spelling, in the order named."""

    by_kind: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def of(self, kind: str) -> tuple[str, ...]:
        return self.by_kind.get(kind, ())

    def __bool__(self) -> bool:
        return any(self.by_kind.values())


class LabelVocabulary:
    """The labels search can ask posteriors for, per kind, and the reading of query words against them."""

    def __init__(self, labels: dict[str, Iterable[str]]) -> None:
        self._keys: dict[str, list[tuple[str, str]]] = {}  # key -> [(kind, catalog spelling)]
        for kind, names in labels.items():
            for name in names:
                key = label_key(name)
                if not key:
                    continue
                entry = (kind, name)
                if entry not in self._keys.setdefault(key, []):
                    self._keys[key].append(entry)
        self.kinds = tuple(labels)

    def __len__(self) -> int:
        return len(self._keys)

    def named(self, text: str) -> NamedLabels:
        """The labels ``text`` names (see the module docstring for the rule)."""
        tokens = words(text)
        found: dict[str, list[str]] = {}
        i = 0
        while i < len(tokens):
            # "t shirt" may be two words of a one-word label, so phrases up to MAX_LABEL_WORDS are tried.
            for n in range(min(MAX_LABEL_WORDS, len(tokens) - i), 0, -1):
                hits = self._keys.get("".join(tokens[i:i + n]))
                if hits:
                    for kind, name in hits:
                        if name not in found.setdefault(kind, []):
                            found[kind].append(name)
                    i += n
                    break
            else:
                i += 1
        return NamedLabels({k: tuple(v) for k, v in found.items()})


def label_vocabulary(article_types: Sequence[str] = (), colours: Sequence[str] = ()) -> LabelVocabulary:
    """The vocabulary of the served model's article-type classes and the colour head's colours."""
    return LabelVocabulary({"article_type": list(article_types), "colour": list(colours)})
