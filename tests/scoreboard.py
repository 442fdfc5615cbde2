"""Reliability scoreboard: tests marked `@pytest.mark.reliability("suite")` report here.

A test may count several cases (a corpus of inputs) and items lost through the `scoreboard`
fixture; otherwise it counts as one case. After the run the board is written to
test-artifacts/reliability.json; with `--write-scoreboard` it also rewrites the table in
RELIABILITY.md, so every number there comes from the suites' own output. Cases marked `postgres` (run against the
PostgreSQL server `make test` starts) count on their suite's PostgreSQL row ("crash_pg", ...).
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUITES = {
    "crash": "Crash (SIGKILL at named points, then rerun)",
    "crash_pg": "Crash on PostgreSQL (SIGKILL at named points, then rerun)",
    "corruption": "Corruption and environment faults",
    "corruption_pg": "Corruption and environment faults on PostgreSQL",
    "concurrency": "Concurrency",
    "concurrency_pg": "Concurrency on PostgreSQL",
    "hostile": "Hostile inputs (uploads and parameters)",
    "fuzz": "Fuzzing (hypothesis)",
}


@dataclass
class SuiteTally:
    cases: int = 0
    failures: int = 0
    lost: int = 0
    wrong: int = 0
    tests: set[str] = field(default_factory=set)
    files: set[str] = field(default_factory=set)


_board: dict[str, SuiteTally] = defaultdict(SuiteTally)


class Recorder:
    """Per-test handle: `cases(n, failed=0)`, `lost(n)`, `wrong(n)` (wrong or 5xx answers)."""

    def __init__(self) -> None:
        self.n_cases = 0
        self.n_failed = 0
        self.n_lost = 0
        self.n_wrong = 0

    def cases(self, n: int, failed: int = 0) -> None:
        self.n_cases += n
        self.n_failed += failed

    def lost(self, n: int) -> None:
        self.n_lost += n

    def wrong(self, n: int) -> None:
        self.n_wrong += n


@pytest.fixture
def scoreboard(request) -> Recorder:
    rec = Recorder()
    request.node._scoreboard = rec
    return rec


def pytest_addoption(parser) -> None:
    parser.addoption("--write-scoreboard", action="store_true", help="rewrite the table in RELIABILITY.md")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("reliability")
    if marker is None or report.when != "call" and not (report.when == "setup" and report.failed):
        return
    if report.skipped:
        return
    suite = marker.args[0]
    if item.get_closest_marker("postgres") is not None and f"{suite}_pg" in SUITES:
        suite = f"{suite}_pg"
    tally = _board[suite]
    rec: Recorder | None = getattr(item, "_scoreboard", None)
    cases = rec.n_cases if rec and rec.n_cases else 1
    failed = (rec.n_failed if rec else 0) + (1 if report.failed and not (rec and rec.n_failed) else 0)
    tally.cases += cases
    tally.failures += failed
    tally.lost += rec.n_lost if rec else 0
    tally.wrong += rec.n_wrong if rec else 0
    tally.tests.add(item.nodeid)
    tally.files.add(item.nodeid.split("::")[0])


def pytest_sessionfinish(session, exitstatus) -> None:
    if not _board:
        return
    out = REPO / "test-artifacts"
    out.mkdir(exist_ok=True)
    data = {s: {"cases": t.cases, "failures": t.failures, "items_lost": t.lost, "wrong_or_5xx": t.wrong,
                "tests": len(t.tests), "files": sorted(t.files)} for s, t in _board.items()}
    (out / "reliability.json").write_text(json.dumps(data, indent=2))
    if session.config.getoption("--write-scoreboard"):
        write_reliability_md(data)


def write_reliability_md(data: dict) -> None:
    """Rewrite the rows of the suites in `data`; rows of suites not run this time are kept."""
    path = REPO / "RELIABILITY.md"
    text = path.read_text() if path.exists() else "# Reliability\n\n<!-- scoreboard -->\n<!-- /scoreboard -->\n"
    block = re.search(r"<!-- scoreboard -->(.*?)<!-- /scoreboard -->", text, re.S)
    old_rows = {}
    for line in (block.group(1) if block else "").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0] in SUITES.values():
            old_rows[cells[0]] = line
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    rows = ["| suite | cases tried | failures | items lost | wrong or 5xx answers | run | reproduce |",
            "|---|---|---|---|---|---|---|"]
    for key, title in SUITES.items():
        if key in data:
            d = data[key]
            cmd = f"`.venv/bin/python -m pytest {' '.join(d['files'])} -m reliability --write-scoreboard`"
            rows.append(f"| {title} | {d['cases']} | {d['failures']} | {d['items_lost']} | {d['wrong_or_5xx']} "
                        f"| {stamp} | {cmd} |")
        elif title in old_rows:
            rows.append(old_rows[title])
    table = "\n".join(rows) + "\n"
    replacement = f"<!-- scoreboard -->\n{table}<!-- /scoreboard -->"
    if block:
        text = text[:block.start()] + replacement + text[block.end():]
    else:
        text = text.rstrip() + "\n\n" + replacement + "\n"
    path.write_text(text)
