"""A burst of 50 concurrent uploads against a 2-worker `manage.py serve` (waitress, 2 threads, one embedding slot,
a short queue wait): every answer is a 200 or the documented 503 `busy` with Retry-After, never another 5xx or a
dropped connection; the server is healthy and answers a search afterwards. Resident memory before and after the burst
is measured and written to test-artifacts/burst.json (a statement, not a timed assertion)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import PYTHON, REPO, index_in_process, write_config, write_small_catalog
from tests.e2e.conftest import ARTIFACTS, free_port, stop_server
from tests.e2e.test_live_http import _multipart

pytestmark = [pytest.mark.slow, pytest.mark.reliability("hostile")]
BURST = 50


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_burst_of_50_uploads_against_2_workers(tmp_path, shared_data, small_embedder, scoreboard):
    csv = write_small_catalog(tmp_path / "cat", 20, step=71)
    config = write_config(tmp_path, model={"input_size": 96, "batch_size": 8},
                          web={"image_roots": [str(tmp_path / "cat")], "thumb_cache_dir": str(tmp_path / "thumbs"),
                               "max_concurrent_embeddings": 1, "embedding_queue_s": 0.5, "torch_threads": 1})
    index_in_process(config, csv, small_embedder)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
    env.update({"LOOKALIKE_CONFIG": str(config), "PYTHONUNBUFFERED": "1"})
    log = tmp_path / "server.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([PYTHON, str(REPO / "manage.py"), "serve", "--host", "127.0.0.1", "--port", str(port),
                                 "--threads", "2"], cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        photos = [p.read_bytes() for p in sorted((tmp_path / "cat" / "images").iterdir())]
        rss_before = rss_mb(proc.pid)
        answers: list[tuple[int, str | None, dict | str]] = []
        lock = threading.Lock()
        go = threading.Barrier(BURST)

        def upload(n: int) -> None:
            body, ctype = _multipart({"image": ("q.jpg", photos[n % len(photos)]), "k": "8"})
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            go.wait()
            try:
                conn.request("POST", "/api/search", body=body, headers={"Content-Type": ctype})
                resp = conn.getresponse()
                raw = resp.read()
                try:
                    parsed: dict | str = json.loads(raw)
                except ValueError:
                    parsed = raw[:200].decode(errors="replace")
                out = (resp.status, resp.getheader("Retry-After"), parsed)
            except OSError as exc:
                out = (0, None, f"{type(exc).__name__}: {exc}")
            finally:
                conn.close()
            with lock:
                answers.append(out)

        threads = [threading.Thread(target=upload, args=(n,)) for n in range(BURST)]
        peak = [rss_before]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                peak.append(rss_mb(proc.pid))

        sampler = threading.Thread(target=sample)
        sampler.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        sampler.join()
        rss_after = rss_mb(proc.pid)
        ok = [a for a in answers if a[0] == 200]
        busy = [a for a in answers if a[0] == 503 and a[1] and int(a[1]) >= 1 and isinstance(a[2], dict)
                and a[2]["error"]["code"] == "busy"]
        wrong = [a for a in answers if a not in ok and a not in busy]
        scoreboard.cases(BURST)
        scoreboard.wrong(len(wrong))
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "burst.json").write_text(json.dumps({
            "uploads": BURST, "server_threads": 2, "max_concurrent_embeddings": 1, "ok": len(ok), "busy_503": len(busy),
            "other": len(wrong), "rss_mb_before": round(rss_before, 1), "rss_mb_peak": round(max(peak), 1),
            "rss_mb_after": round(rss_after, 1)}, indent=2))
        assert not wrong, wrong[:5]
        assert ok, "no upload was answered"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30) as resp:
            assert resp.status == 200 and json.load(resp)["ok"]
        body, ctype = _multipart({"image": ("q.jpg", photos[0]), "k": "3"})
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("POST", "/api/search", body=body, headers={"Content-Type": ctype})
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["results"]
        conn.close()
    finally:
        stop_server(proc)
    assert "Traceback" not in log.read_text()
