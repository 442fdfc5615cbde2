"""`manage.py run --port P` (the README's "Flask's development server") really serves.

manage.py is a Flask CLI group, which sets FLASK_RUN_FROM_CLI; Flask then ignores app.run() with "Ignoring a call to
'app.run()' that would block the current 'flask' CLI command", and the command used to exit without serving."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import PYTHON, REPO


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_serves_on_the_given_port(config_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOKALIKE_", "FLASK_"))}
    env.update({"LOOKALIKE_CONFIG": str(config_path), "PYTHONUNBUFFERED": "1"})
    proc = subprocess.Popen([PYTHON, str(REPO / "manage.py"), "run", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        status = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30) as resp:
                    status = resp.status
            except urllib.error.HTTPError as exc:  # 503: nothing indexed in this fresh database, but it answered
                status = exc.code
            except OSError:
                time.sleep(0.3)
                continue
            break
        assert proc.poll() is None, f"manage.py run exited ({proc.returncode}):\n{proc.stdout.read()}"
        assert status in (200, 503), status
    finally:
        proc.terminate()
        try:
            output = proc.communicate(timeout=20)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            output = proc.communicate()[0]
    assert "Ignoring a call to 'app.run()'" not in output
