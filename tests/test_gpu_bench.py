"""bench/gpu.py --dry-run: the GPU bench's code path on the CPU with tiny sizes, so the script cannot rot unnoticed
(the real run needs a lent GPU: scripts/gpu-bench.sh)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # about 25 s: a subprocess that imports torch, faiss and open_clip and builds 3 models

REPO = Path(__file__).resolve().parents[1]
SECTIONS = {"ceilings": "1. Device ceilings", "encode": "2. Encode", "decode": "3. Decode", "e2e": "4. End to end",
            "search": "5. Search"}


def _number(cell: str) -> float:
    return float(cell.replace(",", "").rstrip("%"))


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gpu-bench")
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--dry-run", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_dry_run_writes_every_section_with_numbers(dry_run: Path) -> None:
    data = json.loads((dry_run / "gpu.json").read_text())
    assert data["dry_run"] is True
    assert set(data["sections"]) == set(SECTIONS)
    for key, section in data["sections"].items():
        assert section["rows"], f"section {key} has no rows: {section['notes']}"
        for row in section["rows"]:
            assert len(row) == len(section["header"])
    ceil = data["ceilings"]
    assert ceil["bf16"] > 0 and ceil["fp32"] > 0 and ceil["bandwidth_gbs"] > 0

    def column(key: str, name: str) -> list[float]:
        section = data["sections"][key]
        i = section["header"].index(name)
        return [_number(str(r[i])) for r in section["rows"]]

    assert all(v > 0 for v in column("ceilings", "measured"))
    encode = data["sections"]["encode"]
    assert {r[0] for r in encode["rows"]} >= {"served", "ResNet-50 (random)"}
    assert {r[3] for r in encode["rows"]} == {"fp32", "bf16", "fp16"}
    assert all(v > 0 for v in column("encode", "images/s") + column("encode", "GFLOP/image"))
    assert len(column("decode", "images/s")) == 3 and all(v > 0 for v in column("decode", "images/s"))
    assert len(column("e2e", "items/s")) == 2 and all(v > 0 for v in column("e2e", "items/s"))
    assert all(v > 0 for v in column("search", "ms (median)") + column("search", "queries/s"))


def test_markdown_tables_and_benchmarks_block(dry_run: Path) -> None:
    md = (dry_run / "gpu.md").read_text()
    assert "DRY RUN" in md
    for title in SECTIONS.values():
        assert f"### {title}" in md
    for line in md.splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            assert line.endswith(" |")
    block = (dry_run / "BENCHMARKS.md").read_text()
    assert "<!-- bench:gpu -->" in block and "<!-- /bench:gpu -->" in block


def test_adopt_refuses_a_dry_run_and_copies_a_real_block(dry_run: Path, tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO))
    from bench.gpu import adopt

    target = tmp_path / "BENCHMARKS.md"
    target.write_text("# Benchmarks\n\n<!-- bench:gpu -->\nnot run yet\n<!-- /bench:gpu -->\n\n<!-- bench:x -->\nx\n"
                      "<!-- /bench:x -->\n")
    with pytest.raises(SystemExit, match="dry run"):
        adopt(dry_run / "BENCHMARKS.md", target)
    real = tmp_path / "real.md"
    real.write_text("<!-- bench:gpu -->\n## GPU\n| a | 1 |\n<!-- /bench:gpu -->\n")
    adopt(real, target)
    text = target.read_text()
    assert "| a | 1 |" in text and "not run yet" not in text and "<!-- bench:x -->\nx\n" in text
