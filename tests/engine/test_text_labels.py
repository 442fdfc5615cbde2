"""Catalog labels named in words (engine/text_labels.py): the matching rule of docs/text-search.md."""

from __future__ import annotations

from engine.text_labels import label_vocabulary, words

TYPES = ["Tshirts", "Shirts", "Casual Shoes", "Sports Shoes", "Dresses", "Jeans", "Track Pants"]
COLOURS = ["Navy Blue", "Blue", "Red", "Off White", "White", "Grey Melange", "Grey"]


def named(text: str) -> dict[str, tuple[str, ...]]:
    return label_vocabulary(TYPES, COLOURS).named(text).by_kind


def test_words_lower_split_and_singular() -> None:
    assert words("T-Shirts, DRESSES & glass") == ["t", "shirt", "dress", "glass"]


def test_longest_label_wins_and_uses_its_words() -> None:
    assert named("navy blue linen shirts") == {"colour": ("Navy Blue",), "article_type": ("Shirts",)}
    assert named("blue shirt") == {"colour": ("Blue",), "article_type": ("Shirts",)}
    assert named("grey melange track pants") == {"colour": ("Grey Melange",), "article_type": ("Track Pants",)}


def test_label_words_apart_or_together() -> None:
    for text in ("t shirt", "tshirt", "T-shirts", "red T-Shirt for men"):
        assert named(text)["article_type"] == ("Tshirts",), text
    assert named("off-white dress") == {"colour": ("Off White",), "article_type": ("Dresses",)}


def test_nothing_named() -> None:
    assert named("something for a summer wedding") == {}
    assert not label_vocabulary(TYPES, COLOURS).named("")
    # a label's words must be in a row: "casual" alone is no article type, "shoes" alone neither
    assert named("casual red shoes") == {"colour": ("Red",)}


def test_several_labels_each_once() -> None:
    assert named("red or white dress, red") == {"colour": ("Red", "White"), "article_type": ("Dresses",)}
