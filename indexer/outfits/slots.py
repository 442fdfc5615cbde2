"""Outfit slots from the catalog taxonomy: which part of a look an item is (topwear, footwear, ...).

Slots and outfit templates are data (config.toml [outfit] slots / templates), parsed here into ``SlotRules``:

    slots = ["topwear: sub_category=Topwear; article_type!=Dupatta", "footwear: master_category=Footwear"]
    templates = ["topwear+bottomwear+footwear", "one_piece+footwear"]

An item takes the first slot whose conditions all hold (case-insensitive); items matching none (innerwear,
personal care, ...) are not part of outfits. Pure logic, no SQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class SlotRulesError(ValueError):
    """A slot or template definition that cannot be parsed; the message quotes it."""


@dataclass(frozen=True)
class SlotCondition:
    """``column=v1|v2`` (value in the set) or ``column!=v1|v2`` (value not in the set, or missing)."""

    column: str
    values: frozenset[str]
    negated: bool = False

    def holds(self, item: Mapping[str, Any]) -> bool:
        value = item.get(self.column)
        present = value is not None and str(value).strip().lower() in self.values
        return not present if self.negated else present


@dataclass(frozen=True)
class SlotRule:
    slot: str
    conditions: tuple[SlotCondition, ...]

    def matches(self, item: Mapping[str, Any]) -> bool:
        return all(c.holds(item) for c in self.conditions)


@dataclass(frozen=True)
class SlotRules:
    """Parsed slot rules and outfit templates.

    Attributes:
        rules: One rule per slot, in configured order (a slot may appear in several rules).
        slots: Distinct slot names in configured order; a slot's index here is its class id.
        templates: Each template is a tuple of slot names.
    """

    rules: tuple[SlotRule, ...]
    slots: tuple[str, ...]
    templates: tuple[tuple[str, ...], ...]

    def slot_of(self, item: Mapping[str, Any]) -> str | None:
        """The slot of an item (a mapping with taxonomy columns), or None when no rule matches."""
        for rule in self.rules:
            if rule.matches(item):
                return rule.slot
        return None

    def slot_index(self, slot: str) -> int:
        """Class id of a slot name.

        Raises:
            SlotRulesError: Unknown slot.
        """
        try:
            return self.slots.index(slot)
        except ValueError:
            raise SlotRulesError(f"unknown slot {slot!r}; configured: {', '.join(self.slots)}") from None

    def template_for(self, slot: str) -> tuple[str, ...]:
        """The first template containing ``slot`` (a slot in no template gets an empty tuple)."""
        for template in self.templates:
            if slot in template:
                return template
        return ()

    def complementary(self, slot: str) -> tuple[str, ...]:
        """Slots that complete a look around an item of ``slot``, in template order."""
        return tuple(s for s in self.template_for(slot) if s != slot)


def _parse_condition(text: str, where: str) -> SlotCondition:
    negated = "!=" in text
    column, sep, values = text.partition("!=" if negated else "=")
    column = column.strip()
    vals = frozenset(v.strip().lower() for v in values.split("|") if v.strip())
    if not sep or not column or not vals:
        raise SlotRulesError(f"{where}: bad condition {text.strip()!r}; expected COLUMN=VALUE|VALUE or COLUMN!=VALUE")
    return SlotCondition(column, vals, negated)


def parse_slot_rules(slots: Sequence[str], templates: Sequence[str]) -> SlotRules:
    """Parse ``outfit.slots`` and ``outfit.templates`` entries.

    Args:
        slots: Entries "SLOT: COLUMN=VALUE|VALUE; COLUMN!=VALUE".
        templates: Entries "SLOT+SLOT+...".

    Returns:
        The parsed SlotRules.

    Raises:
        SlotRulesError: A malformed entry, a template naming an unknown slot, or nothing configured.
    """
    rules: list[SlotRule] = []
    names: list[str] = []
    for entry in slots:
        where = f"outfit.slots entry {entry!r}"
        name, sep, body = entry.partition(":")
        name = name.strip()
        if not sep or not name or not name.replace("_", "").replace("-", "").isalnum():
            raise SlotRulesError(f"{where}: expected 'SLOT: COLUMN=VALUE; ...' with a slot name of letters, digits, _")
        conditions = tuple(_parse_condition(c, where) for c in body.split(";") if c.strip())
        if not conditions:
            raise SlotRulesError(f"{where}: no conditions")
        rules.append(SlotRule(name, conditions))
        if name not in names:
            names.append(name)
    if not rules:
        raise SlotRulesError("outfit.slots is empty: configure at least two slots")
    parsed_templates: list[tuple[str, ...]] = []
    for entry in templates:
        parts = tuple(p.strip() for p in entry.split("+") if p.strip())
        unknown = [p for p in parts if p not in names]
        if unknown:
            raise SlotRulesError(f"outfit.templates entry {entry!r} names unknown slot(s) {', '.join(unknown)}; "
                                 f"configured slots: {', '.join(names)}")
        if len(parts) < 2 or len(set(parts)) != len(parts):
            raise SlotRulesError(f"outfit.templates entry {entry!r}: needs two or more distinct slots")
        parsed_templates.append(parts)
    if not parsed_templates:
        raise SlotRulesError("outfit.templates is empty: configure at least one template")
    return SlotRules(tuple(rules), tuple(names), tuple(parsed_templates))


def parse_category_map(entries: Sequence[str], rules: SlotRules) -> dict[str, str]:
    """Parse ``outfit.polyvore_categories`` entries "category=slot" into {category (lower case): slot}.

    Raises:
        SlotRulesError: A malformed entry or an unknown slot.
    """
    out: dict[str, str] = {}
    for entry in entries:
        category, sep, slot = entry.partition("=")
        if not sep or not category.strip() or slot.strip() not in rules.slots:
            raise SlotRulesError(f"outfit.polyvore_categories entry {entry!r}: expected CATEGORY=SLOT with a "
                                 f"configured slot ({', '.join(rules.slots)})")
        out[category.strip().lower()] = slot.strip()
    return out
