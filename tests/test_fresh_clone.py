"""First run anywhere: a clone of the repository with no ../shared beside it migrates, indexes the committed demo
catalog, answers /healthz and a search by photo.

The clone is made with `git clone`; files of the working tree that are not committed yet (what the next commit
will hold: tracked and untracked files that git does not ignore) are then laid over it and files deleted from the
working tree removed, so the test checks the tree as it will be committed. The model input is 64 px to keep the
demo catalog's embedding short on two cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, REPO

SEARCH = """
import json, sys
from indexer.settings import load_settings
from web import create_app

app = create_app(load_settings("config.toml"), {"TESTING": True})
client = app.test_client()
health = client.get("/healthz")
with open(sys.argv[1], "rb") as fh:
    found = client.post("/api/search?k=5", data={"image": (fh, "query.jpg")}, content_type="multipart/form-data")
page = client.get("/")
picture = client.get(found.get_json()["results"][0]["image_url"])
print(json.dumps({"picture": picture.status_code, "health": [health.status_code, health.get_json()],
                  "search": [found.status_code, found.get_json()],
                  "page": "the demo catalog" in page.get_data(as_text=True)}))
"""


def _git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def _clone(dest: Path) -> int:
    """git clone REPO into dest, then bring it to the working tree's files; returns how many files that changed."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    _git("clone", "-q", str(REPO), str(dest))
    wanted = set(_git("ls-files", "-co", "--exclude-standard", "-z").split("\0")) - {""}
    wanted = {p for p in wanted if (REPO / p).is_file()}
    changed = 0
    for rel in set(_git("ls-files", "-z", cwd=dest).split("\0")) - {""} - wanted:
        (dest / rel).unlink(missing_ok=True)
        changed += 1
    for rel in wanted:
        src, dst = REPO / rel, dest / rel
        if not dst.is_file() or dst.read_bytes() != src.read_bytes():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            changed += 1
    return changed


def test_fresh_clone_indexes_the_demo_catalog_and_serves(tmp_path: Path) -> None:
    clone = tmp_path / "lookalike"
    _clone(clone)
    assert not (tmp_path / "shared").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
    env.update({"LOOKALIKE_MODEL__INPUT_SIZE": "64", "LOOKALIKE_MODEL__DEVICE": "cpu", "PYTHONUNBUFFERED": "1"})

    def run(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([PYTHON, *args], cwd=clone, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{args}\n{proc.stdout}\n{proc.stderr}"
        return proc

    run("manage.py", "db", "upgrade")
    proc = run("manage.py", "index", "--no-progress")
    assert f"indexing the demo catalog committed in the repository: {clone / 'data/demo-catalog/catalog.csv'}" \
        in proc.stderr
    assert "fetch-data fashion-product-images" in proc.stderr
    assert proc.stdout.startswith("rows: 1200  new: 1200") and "skipped: 0" in proc.stdout, proc.stdout
    query = sorted((clone / "data" / "demo-catalog" / "images").glob("*.jpg"))[7]
    out = json.loads(run("-c", SEARCH, str(query)).stdout.strip().splitlines()[-1])
    assert out["health"][0] == 200 and out["health"][1]["ok"] is True
    status, body = out["search"]
    assert status == 200 and len(body["results"]) == 5
    assert body["results"][0]["external_id"] == query.stem  # a catalog photo finds its own product first
    assert out["page"]  # the search page says it serves the demo catalog
    assert out["picture"] == 200
