"""The README's marked snippets are executed, so they cannot rot.

A fenced block preceded by `<!-- readme-test: KIND[; option]... -->` is:
- `file PATH`: written to PATH in a temp working folder (a CSV's `image` files are made from demo photos);
- `run`: each line run by bash there, with `python` = this interpreter and LOOKALIKE_CONFIG = a temp config (SQLite
  and index in the folder, default catalog = a few demo products); options `images: DIR/` (puts demo photos in DIR)
  and `fetch` (catalog.fetch_url = a fixture archive on a local http.server);
- `config`: loaded by load_settings as a config file (every key must exist and have the right type).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from indexer.settings import DEMO_CATALOG_CSV, load_settings
from tests.conftest import PYTHON, REPO, write_config

MARKER = re.compile(r"<!-- readme-test: (?P<spec>[^>]*?) -->\n```(?P<lang>\w*)\n(?P<body>.*?)```", re.S)


@dataclass
class Snippet:
    kind: str
    arg: str
    options: list[str]
    lang: str
    body: str


def readme_snippets() -> list[Snippet]:
    out = []
    for m in MARKER.finditer((REPO / "README.md").read_text()):
        first, *options = [part.strip() for part in m.group("spec").split(";")]
        kind, _, arg = first.partition(" ")
        out.append(Snippet(kind, arg.strip(), options, m.group("lang"), m.group("body")))
    return out


def _demo_images() -> list[Path]:
    return sorted(DEMO_CATALOG_CSV.parent.glob("images/*.jpg"))


def test_readme_has_the_marked_sections() -> None:
    text = (REPO / "README.md").read_text()
    heads = ["### What `make run` indexes", "### Index your own catalog", "### Use the full dataset",
             "### PostgreSQL and Milvus"]
    setup_end = text.index("make test   #")
    assert all(text.index(h) > setup_end for h in heads) and text.index(heads[0]) < text.index("## Pages and API")
    kinds = [s.kind for s in readme_snippets()]
    assert kinds.count("run") >= 3 and kinds.count("file") >= 1 and kinds.count("config") >= 3


def test_readme_config_snippets_load(tmp_path: Path) -> None:
    for i, snippet in enumerate(s for s in readme_snippets() if s.kind == "config"):
        path = tmp_path / f"config-{i}.toml"
        path.write_text(snippet.body)
        settings = load_settings(path, env={})
        for section, values in tomllib.loads(snippet.body).items():
            for key, value in values.items():
                assert getattr(getattr(settings, section), key) == value


def _write_file(folder: Path, snippet: Snippet) -> None:
    path = folder / snippet.arg
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(snippet.body)
    if snippet.lang == "csv":
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        for row, picture in zip(rows, _demo_images(), strict=False):
            (path.parent / row["image"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(picture, path.parent / row["image"])


def _default_catalog(folder: Path, n: int = 5) -> Path:
    (folder / "images").mkdir(parents=True)
    with DEMO_CATALOG_CSV.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [r for _, r in zip(range(n), reader, strict=False)]
        fields = reader.fieldnames
    with (folder / "catalog.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields or [])
        writer.writeheader()
        writer.writerows(rows)
    for r in rows:
        shutil.copyfile(DEMO_CATALOG_CSV.parent / r["image"], folder / r["image"])
    return folder / "catalog.csv"


@pytest.mark.slow
def test_readme_shell_snippets_run(tmp_path: Path) -> None:
    from tests.indexer.test_fetch import ArchiveServer, fixture_archive

    work = tmp_path / "work"
    work.mkdir()
    (work / "manage.py").symlink_to(REPO / "manage.py")
    default = _default_catalog(tmp_path / "default-catalog")
    config = write_config(work, catalog={"default_csv": str(default)}, model={"input_size": 64, "batch_size": 16})
    server = ArchiveServer()
    server.files["/fpi.zip"] = fixture_archive()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
    env.update({"LOOKALIKE_CONFIG": str(config), "PATH": f"{Path(PYTHON).parent}{os.pathsep}{env.get('PATH', '')}",
                "LOOKALIKE_CATALOG__FETCH_URL": server.url + "/fpi.zip", "PYTHONUNBUFFERED": "1"})

    def run(line: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(["bash", "-c", line], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr and "error:" not in proc.stderr, proc.stderr
        if proc.stdout.startswith("rows:"):
            assert " skipped: 0" in proc.stdout.splitlines()[0], proc.stdout
        return proc

    try:
        run("python manage.py db upgrade")  # what `make run` does first
        outputs: dict[str, str] = {}
        for snippet in readme_snippets():
            if snippet.kind == "file":
                _write_file(work, snippet)
            elif snippet.kind == "run":
                for option in snippet.options:
                    if option.startswith("images:"):
                        target = work / option.split(":", 1)[1].strip()
                        target.mkdir(parents=True, exist_ok=True)
                        for picture in _demo_images()[-3:]:
                            shutil.copyfile(picture, target / picture.name)
                for line in snippet.body.splitlines():
                    if line.strip() and not line.lstrip().startswith("#"):
                        proc = run(line)
                        outputs[line.split("#")[0].strip()] = proc.stdout + proc.stderr
    finally:
        server.close()
    assert f"indexing the configured catalog (catalog.default_csv): {default}" in outputs["python manage.py index"]
    second = outputs["python manage.py index my-shop/catalog.csv --images-root my-shop"]
    assert "new: 0" in second and "unchanged: 3" in second  # re-running is incremental
    assert "new: 3" in outputs["python manage.py index new-arrivals/"]
    assert "consistent" in outputs["python manage.py check"]
    assert (work / "data" / "fashion-product-images" / "catalog.csv").is_file()
