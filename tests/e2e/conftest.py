"""End-to-end fixtures: a live `manage.py serve` (waitress) on a free loopback port over a small indexed catalog,
and Debian's headless Chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PYTHON, REPO
from tests.web.conftest import build_indexed_catalog

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "test-artifacts"
LIVE_CATALOG_SIZE = 80


@dataclass
class LiveServer:
    url: str
    settings: object
    csv: Path
    process: subprocess.Popen
    log: Path

    def get_json(self, path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def rss_kb(self) -> int:
        """Resident memory of the server process (VmRSS)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(config: Path, log: Path, timeout: float = 180.0) -> tuple[subprocess.Popen, str]:
    """Start `manage.py serve` on a free port and wait until /healthz says ok."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
    env.update({"LOOKALIKE_CONFIG": str(config), "PYTHONUNBUFFERED": "1"})
    fh = log.open("w")
    proc = subprocess.Popen([PYTHON, str(REPO / "manage.py"), "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--threads", "4"], cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    fh.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=5) as resp:
                if resp.status == 200:
                    return proc, url
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"server did not become healthy in {timeout:.0f}s:\n{log.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory, shared_data, small_embedder):
    folder = tmp_path_factory.mktemp("live")
    settings, csv = build_indexed_catalog(folder, small_embedder, n=LIVE_CATALOG_SIZE)
    log = folder / "server.log"
    proc, url = start_server(Path(settings.source), log)
    try:
        yield LiveServer(url, settings, csv, proc, log)
    finally:
        stop_server(proc)


@pytest.fixture(scope="session")
def live_rows(live_server):
    import csv

    with live_server.csv.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"Debian Chromium not found at {CHROMIUM}: `make test` installs it "
                    "(scripts/test-services.sh; apt-get install chromium chromium-driver)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, live_server):
    """A fresh browser tab (desktop viewport); fails the test on any JavaScript error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server.url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(60_000)
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def screenshot(page, name: str) -> Path:
    """Save a screenshot under test-artifacts/ (gitignored) for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    # Lazy thumbnails below the fold would be blank in a full-page picture: load them all first.
    page.evaluate("() => document.querySelectorAll('img[loading=lazy]').forEach(img => { img.loading = 'eager'; })")
    page.wait_for_function("() => [...document.images].every(img => img.complete)")
    page.screenshot(path=str(path), full_page=True)
    return path
