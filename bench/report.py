"""Shared helpers for bench scripts: machine description and BENCHMARKS.md section updates.

Each bench owns one section of BENCHMARKS.md between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`
markers and rewrites only that, so benches can run in any order.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nEvery table below is written by the bench script named in its command line.\n"


def machine_description() -> str:
    """CPU model, core count, memory, and GPU if torch sees one."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}{gpu}; Python {platform.python_version()}"


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name.replace("python3", "python"), *sys.argv])


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


def update_section(name: str, title: str, body: str, path: Path = BENCHMARKS) -> None:
    """Replace (or append) the section NAME of BENCHMARKS.md with a title, the command, machine and body."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    block = (f"<!-- bench:{name} -->\n## {title}\n\n"
             f"Command: `{command_line()}`  \nMachine: {machine_description()}  \nRun: {stamp}\n\n"
             f"{body.rstrip()}\n<!-- /bench:{name} -->")
    text = path.read_text() if path.exists() else HEADER
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
