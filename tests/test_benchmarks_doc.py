"""BENCHMARKS.md says which model each section measured: a section either names its model (the checkpoint, the
backbone or a fingerprint) or is marked stale with the model it did measure. The two claims that had gone false
(latency "config default is 224", search "dimension 512 = the served model's") must not come back."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECTION = re.compile(r"<!-- bench:([\w-]+) -->(.*?)<!-- /bench:\1 -->", re.S)
NAMES_MODEL = re.compile(r"\*\*Stale:|Not run yet|model\.pt|efficientnet_lite0|fingerprint [0-9a-f]{8}|gen-\d{6}")


def sections(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in SECTION.finditer(text)}


def test_every_section_names_the_model_it_measured() -> None:
    found = sections((REPO / "BENCHMARKS.md").read_text())
    assert len(found) >= 10
    silent = [name for name, body in found.items() if not NAMES_MODEL.search(body)]
    assert not silent, f"BENCHMARKS.md sections that do not say which model they measured: {silent}"


def test_false_claims_about_the_served_model_are_gone() -> None:
    text = (REPO / "BENCHMARKS.md").read_text()
    assert "config default is 224" not in text
    assert "dimension 512 = the served model's" not in text


def test_the_rule_catches_a_section_that_names_no_model() -> None:
    body = "<!-- bench:x -->\n## X\n1000 queries at 10 ms\n<!-- /bench:x -->"
    assert not NAMES_MODEL.search(sections(body)["x"])
