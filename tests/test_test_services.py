"""scripts/test-services.sh starts a PostgreSQL cluster of its own from a fresh checkout in a private folder.

The checkout lies under a mkdtemp() folder (mode 700, which the `postgres` user cannot enter), the preferred port is
already held by a plain listening socket, and the script must still start its own cluster on another port, write
its URL to var/test-pg-url, and reuse that cluster when run again.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "test-services.sh"
PG_CTLS = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))


def _cluster_base(checkout: Path, uid: int) -> Path:
    digest = hashlib.sha256(str(checkout.resolve()).encode()).hexdigest()[:12]
    return Path(f"/tmp/lookalike-pg-{uid}-{digest}")


def _as_user(user: str | None, cmd: list[str]) -> list[str]:
    return cmd if user is None else ["runuser", "-u", user, "--", *cmd]


def _run_script(checkout: Path, port: int, user: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "LOOKALIKE_SKIP_CHROMIUM": "1"}
    return subprocess.run(_as_user(user, ["bash", "scripts/test-services.sh", str(port)]), cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _query(url: str) -> tuple:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), connect_timeout=10) as conn:
        return conn.execute("SELECT current_database(), current_user").fetchone()


def _check_fresh_checkout(user: str | None) -> None:
    uid = os.getuid() if user is None else pwd.getpwnam(user).pw_uid
    tmp = Path(tempfile.mkdtemp(prefix="lookalike-services-"))
    checkout = tmp / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy2(SCRIPT, checkout / "scripts" / "test-services.sh")
    if user is not None:
        shutil.chown(tmp, user)
        for path in (checkout, checkout / "scripts", checkout / "scripts" / "test-services.sh"):
            shutil.chown(path, user)
    assert stat.S_IMODE(tmp.stat().st_mode) == 0o700
    base = _cluster_base(checkout, uid)
    pg_owner = "postgres" if uid == 0 else None if user is None else user
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        taken = blocker.getsockname()[1]

        first = _run_script(checkout, taken, user)
        assert first.returncode == 0, first.stdout + first.stderr
        m = re.search(r"using port (\d+) instead", first.stdout)
        assert m, first.stdout
        used = int(m.group(1))
        assert used != taken
        assert f"postgresql on 127.0.0.1:{used} (data {base / 'data'})" in first.stdout
        url = (checkout / "var" / "test-pg-url").read_text().strip()
        assert url == f"postgresql+psycopg://lookalike@127.0.0.1:{used}/lookalike_test"
        assert stat.S_IMODE(base.stat().st_mode) == 0o700
        assert pwd.getpwuid(base.stat().st_uid).pw_name == (pg_owner or pwd.getpwuid(os.getuid()).pw_name)
        assert _query(url) == ("lookalike_test", "lookalike")

        second = _run_script(checkout, taken, user)
        assert second.returncode == 0, second.stdout + second.stderr
        assert f"reusing this checkout's postgresql on port {used}" in second.stdout
        assert (checkout / "var" / "test-pg-url").read_text().strip() == url
        assert _query(url) == ("lookalike_test", "lookalike")
    finally:
        blocker.close()
        if (base / "data" / "PG_VERSION").exists():
            subprocess.run(_as_user(pg_owner, [PG_CTLS[-1], "-D", str(base / "data"), "-m", "immediate", "-w",
                                               "stop"]), cwd="/", capture_output=True, timeout=120, check=False)
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.skipif(not PG_CTLS, reason="no PostgreSQL binaries (/usr/lib/postgresql/*/bin/pg_ctl)")
def test_fresh_checkout_in_private_folder_with_taken_port():
    _check_fresh_checkout(None)


@pytest.mark.skipif(not PG_CTLS, reason="no PostgreSQL binaries (/usr/lib/postgresql/*/bin/pg_ctl)")
@pytest.mark.skipif(os.getuid() != 0 or shutil.which("runuser") is None, reason="needs root to act as another user")
def test_fresh_checkout_as_non_root_user():
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no `nobody` user")
    _check_fresh_checkout("nobody")
