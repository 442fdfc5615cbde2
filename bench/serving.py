"""A `manage.py serve` process for the benchmarks that drive the server over HTTP: a free loopback port, starting it
and waiting for /healthz, and its resident memory."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory (VmRSS) of a process in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_server(config: Path, port: int, log: Path, threads: int = 8, thumbs: Path | None = None
                 ) -> subprocess.Popen:
    """`manage.py serve` on 127.0.0.1:port with only this config's settings, returned once /healthz answers 200."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
    env.update({"LOOKALIKE_CONFIG": str(config), "PYTHONUNBUFFERED": "1"})
    if thumbs is not None:
        env["LOOKALIKE_WEB__THUMB_CACHE_DIR"] = str(thumbs)
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, str(REPO / "manage.py"), "serve", "--host", "127.0.0.1", "--port",
                                 str(port), "--threads", str(threads)], cwd=REPO, env=env, stdout=fh,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return proc
        except OSError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("server did not become healthy")
