"""`manage.py fetch-data`: download (resume by HTTP Range, checksum, no network) and unpack into the catalog format,
end to end against a fixture archive served by a local http.server on 127.0.0.1."""

from __future__ import annotations

import csv
import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.catalog.fetch import CATALOG_COLUMNS, FetchError, download, fetch_dataset
from indexer.settings import DEMO_CATALOG_CSV
from tests.conftest import run_manage, write_config

STYLES = """id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName
{a},Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,Nike Men Blue T-shirt
{b},Women,Footwear,Shoes,Heels,Black,Winter,2015,Casual,Catwalk Black Heels, Party Edition
{c},Men,Accessories,Bags,Backpacks,Navy Blue,Fall,2011,Casual,Puma Deck Navy Blue Backpack
999999999,Women,Apparel,Topwear,Tops,Red,Summer,2012,Casual,A row whose image is missing
"""


def _demo_images(n: int = 3) -> list[Path]:
    return sorted(DEMO_CATALOG_CSV.parent.glob("images/*.jpg"))[:n]


def fixture_archive() -> bytes:
    """A small archive shaped like the public one: myntradataset/styles.csv + myntradataset/images/ID.jpg."""
    images = _demo_images()
    ids = [p.stem for p in images]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("myntradataset/styles.csv", STYLES.format(a=ids[0], b=ids[1], c=ids[2]))
        for p in images:
            zf.writestr(f"myntradataset/images/{p.name}", p.read_bytes())
    return buf.getvalue()


@pytest.fixture(scope="module")
def archive_bytes() -> bytes:
    return fixture_archive()


class ArchiveServer:
    """Serves named byte strings, with HTTP Range support; `cut` sends fewer bytes than Content-Length says."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.ranges: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    outer.ranges.append(rng)
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: outer.cut.get(self.path, len(body))])

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[ArchiveServer]:
    srv = ArchiveServer()
    yield srv
    srv.close()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_good_archive_becomes_a_catalog(tmp_path: Path, server: ArchiveServer, archive_bytes: bytes) -> None:
    server.files["/fpi.zip"] = archive_bytes
    dest = tmp_path / "fpi"
    sha = hashlib.sha256(archive_bytes).hexdigest()
    result = fetch_dataset("fashion-product-images", dest, server.url + "/fpi.zip", sha, progress=False)
    assert result.products == 3 and result.skipped == 1 and result.archive_sha256 == sha
    assert _leftovers(tmp_path) == ["fpi"]  # no archive, part or temp folder left behind
    with (dest / "catalog.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == CATALOG_COLUMNS
        rows = list(reader)
    ids = [p.stem for p in _demo_images()]
    assert [r["id"] for r in rows] == sorted(ids, key=int)
    by_id = {r["id"]: r for r in rows}
    assert by_id[ids[0]]["gender"] == "Men" and by_id[ids[0]]["article_type"] == "Tshirts"
    # an unquoted comma in productDisplayName stays in the title; gender only where the title says it
    assert by_id[ids[1]]["title"] == "Catwalk Black Heels, Party Edition" and by_id[ids[1]]["gender"] == ""
    assert by_id[ids[2]]["base_colour"] == "Navy Blue" and by_id[ids[2]]["image_224"] == ""
    for r in rows:
        assert (dest / r["image"]).read_bytes() == (DEMO_CATALOG_CSV.parent / r["image"]).read_bytes()


def test_interrupted_download_resumes_with_range(tmp_path: Path, server: ArchiveServer, archive_bytes: bytes) -> None:
    server.files["/fpi.zip"] = archive_bytes
    server.cut["/fpi.zip"] = len(archive_bytes) // 2
    dest = tmp_path / "fpi"
    with pytest.raises(FetchError, match="rerun the command to resume"):
        fetch_dataset("fashion-product-images", dest, server.url + "/fpi.zip", progress=False)
    assert not dest.exists()
    part = tmp_path / ".fpi.archive.part"
    assert part.stat().st_size == len(archive_bytes) // 2
    del server.cut["/fpi.zip"]
    result = fetch_dataset("fashion-product-images", dest, server.url + "/fpi.zip", progress=False)
    assert server.ranges == [f"bytes={len(archive_bytes) // 2}-"]
    assert result.products == 3 and result.archive_sha256 == hashlib.sha256(archive_bytes).hexdigest()
    assert _leftovers(tmp_path) == ["fpi"]


def test_truncated_archive_is_refused_and_deleted(tmp_path: Path, server: ArchiveServer, archive_bytes: bytes) -> None:
    server.files["/cut.zip"] = archive_bytes[: len(archive_bytes) * 2 // 3]  # a complete response of a cut file
    dest = tmp_path / "fpi"
    with pytest.raises(FetchError, match="damaged|not a zip"):
        fetch_dataset("fashion-product-images", dest, server.url + "/cut.zip", progress=False)
    assert _leftovers(tmp_path) == []  # neither the catalog nor the bad archive nor a temp folder


def test_corrupt_member_is_refused(tmp_path: Path, archive_bytes: bytes) -> None:
    bad = bytearray(archive_bytes)
    at = bytes(bad).index(b"myntradataset/images/") + 200  # inside the first image's compressed data
    bad[at:at + 16] = bytes(16)
    archive = tmp_path / "bad.zip"
    archive.write_bytes(bytes(bad))
    with pytest.raises(FetchError, match="damaged"):
        fetch_dataset("fashion-product-images", tmp_path / "fpi", "unused", archive=archive, progress=False)
    assert _leftovers(tmp_path) == ["bad.zip"]  # an archive the operator gave is not deleted


def test_wrong_checksum(tmp_path: Path, server: ArchiveServer, archive_bytes: bytes) -> None:
    server.files["/fpi.zip"] = archive_bytes
    with pytest.raises(FetchError, match="checksum mismatch"):
        fetch_dataset("fashion-product-images", tmp_path / "fpi", server.url + "/fpi.zip", "0" * 64, progress=False)
    assert _leftovers(tmp_path) == []


def test_no_network_and_http_errors(tmp_path: Path, server: ArchiveServer) -> None:
    with pytest.raises(FetchError, match=r"cannot reach 127\.0\.0\.1:9 .*no network here\?"):
        download("http://127.0.0.1:9/fpi.zip", tmp_path / "a.zip", progress=False, timeout=5)
    with pytest.raises(FetchError, match="HTTP 404"):
        download(server.url + "/missing.zip", tmp_path / "a.zip", progress=False)
    assert not (tmp_path / "a.zip").exists()


def test_refuses_to_overwrite_a_catalog(tmp_path: Path) -> None:
    (tmp_path / "fpi").mkdir()
    (tmp_path / "fpi" / "catalog.csv").write_text("id,image\n")
    with pytest.raises(FetchError, match="already holds a catalog.csv"):
        fetch_dataset("fashion-product-images", tmp_path / "fpi", "http://127.0.0.1:9/x", progress=False)


def test_cli_one_line_errors_and_success(tmp_path: Path, server: ArchiveServer, archive_bytes: bytes) -> None:
    config = write_config(tmp_path / "cfg", catalog={"fetch_url": "http://127.0.0.1:9/fpi.zip"})
    proc = run_manage("fetch-data", "fashion-product-images", "--dest", str(tmp_path / "out"), "--no-progress",
                      config=config)
    assert proc.returncode == 2 and proc.stderr.startswith("error: cannot reach 127.0.0.1:9")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    server.files["/fpi.zip"] = archive_bytes
    proc = run_manage("fetch-data", "fashion-product-images", "--dest", str(tmp_path / "out"), "--no-progress",
                      config=config, env_extra={"LOOKALIKE_CATALOG__FETCH_URL": server.url + "/fpi.zip"})
    assert proc.returncode == 0, proc.stderr
    assert "wrote 3 products" in proc.stdout and (tmp_path / "out" / "catalog.csv").is_file()
