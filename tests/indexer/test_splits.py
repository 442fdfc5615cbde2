"""Product-id splits: disjoint, seeded, stable as the catalog grows, written and read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.catalog.splits import SplitError, assign_splits, read_splits, split_counts, write_splits


def test_assignment_is_deterministic_disjoint_and_close_to_the_fractions() -> None:
    ids = [str(i) for i in range(20_000)]
    a = assign_splits(ids, val_fraction=0.1, test_fraction=0.2, seed=3)
    assert a == assign_splits(list(reversed(ids)), val_fraction=0.1, test_fraction=0.2, seed=3)
    counts = split_counts(a)
    assert sum(counts.values()) == 20_000
    assert counts["test"] == pytest.approx(4000, rel=0.05)
    assert counts["val"] == pytest.approx(2000, rel=0.07)
    assert a != assign_splits(ids, val_fraction=0.1, test_fraction=0.2, seed=4)


def test_adding_products_never_moves_existing_ones() -> None:
    before = assign_splits([f"p{i}" for i in range(500)])
    after = assign_splits([f"p{i}" for i in range(1000)])
    assert all(after[k] == v for k, v in before.items())


def test_write_read_roundtrip_and_errors(tmp_path: Path) -> None:
    splits = assign_splits(["b", "a", "c", "10"])
    path = write_splits(tmp_path / "s" / "splits.csv", splits)
    assert read_splits(path) == splits
    assert path.read_text().splitlines()[0] == "id,split"
    bad = tmp_path / "bad.csv"
    bad.write_text("id,split\n1,train\n1,test\n")
    with pytest.raises(SplitError, match="duplicate"):
        read_splits(bad)
    bad.write_text("id,split\n1,holdout\n")
    with pytest.raises(SplitError, match="line 2"):
        read_splits(bad)
    bad.write_text("product,part\n")
    with pytest.raises(SplitError, match="header"):
        read_splits(bad)
    with pytest.raises(SplitError):
        read_splits(tmp_path / "missing.csv")
    with pytest.raises(SplitError):
        assign_splits(["1"], val_fraction=0.7, test_fraction=0.7)
