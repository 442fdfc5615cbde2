"""Collapsing a ranked result list by duplicate or variant groups: the best-ranked item of each group stays where it
ranked and carries the others ("+N more"); items outside any group stay as they are.

The groups come from the latest stored `manage.py duplicates` run (records.group_lookup), cached per run id, so a
new run takes effect on the next query without a restart.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from indexer.curation.records import DUPLICATES, VARIANTS, group_lookup
from indexer.store.catalog_store import Store

COLLAPSE_MODES = ("none", DUPLICATES, VARIANTS)
# A collapsed page needs more raw results than it shows: this many times the page, at least.
FETCH_FACTOR = 4

T = TypeVar("T")


def collapse_ranked(ranked: Sequence[T], key: Callable[[T], int], group_of: Mapping[int, int]
                    ) -> list[tuple[T, list[int]]]:
    """(kept entry, ids of the later entries of its group) in rank order.

    Args:
        ranked: Results, best first.
        key: Item id of an entry.
        group_of: Item id -> group number; ids not in it are their own group.
    """
    out: list[tuple[T, list[int]]] = []
    slot: dict[int, int] = {}
    for entry in ranked:
        item_id = int(key(entry))
        group = group_of.get(item_id)
        if group is None:
            out.append((entry, []))
        elif group in slot:
            out[slot[group]][1].append(item_id)
        else:
            slot[group] = len(out)
            out.append((entry, []))
    return out


class GroupCache:
    """The item -> group maps of the latest duplicates and variants runs, reloaded when a newer run is stored."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._maps: dict[str, tuple[int | None, dict[int, int]]] = {}

    def groups(self, mode: str) -> dict[int, int]:
        """{item id: group} for "duplicates" or "variants" ({} for "none" or when no run is stored).

        Raises:
            ValueError: An unknown mode.
        """
        if mode not in COLLAPSE_MODES:
            raise ValueError(f"collapse must be one of {', '.join(COLLAPSE_MODES)}, got {mode!r}")
        if mode == "none":
            return {}
        from indexer.curation.records import latest_run

        newest = latest_run(self.store, mode, with_details=False)
        newest_id = newest["id"] if newest else None
        with self._lock:
            cached = self._maps.get(mode)
            if cached is None or cached[0] != newest_id:
                cached = group_lookup(self.store, mode)
                self._maps[mode] = cached
            return cached[1]
