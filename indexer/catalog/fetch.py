"""Download a public catalog and turn it into a catalog CSV in the project's format (`manage.py fetch-data`).

The one dataset known here is "fashion-product-images": the public "Fashion Product Images (Small)" archive (a zip
holding `styles.csv` and `images/ID.jpg`, possibly under a top folder such as `myntradataset/`). Nothing is left
half-written as if complete:
- the download goes to `<archive>.part`, resumed with an HTTP Range request when rerun, checked against the
  expected size (and sha256 when one is configured), fsynced and only then renamed to the archive name;
- the catalog is unpacked into a temp folder beside the destination, written there (CSV fsynced), and renamed to the
  destination only when complete; a damaged archive is deleted, so the next run downloads it again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

from tqdm import tqdm

DATASETS = ("fashion-product-images",)
CATALOG_COLUMNS = ("id", "title", "gender", "master_category", "sub_category", "article_type", "base_colour", "usage",
                   "image", "image_224")
# styles.csv column -> catalog column (the others are derived: title, gender, image, image_224).
STYLE_COLUMNS = {"masterCategory": "master_category", "subCategory": "sub_category", "articleType": "article_type",
                 "baseColour": "base_colour", "usage": "usage"}
GENDERS = ("Men", "Women", "Boys", "Girls", "Unisex")
CHUNK = 1 << 16


class FetchError(RuntimeError):
    """A download or unpack that cannot finish; the message says what to do (one line)."""


@dataclass(frozen=True)
class FetchResult:
    dest: Path
    products: int
    skipped: int
    archive_sha256: str


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _total_size(resp, offset: int) -> int | None:  # noqa: ANN001 - an http.client / urllib response
    """The whole file's size from Content-Range (a resumed 206) or Content-Length (a 200), if the server said."""
    content_range = resp.headers.get("Content-Range", "")
    match = re.match(r"bytes \d+-\d+/(\d+)", content_range)
    if match:
        return int(match.group(1))
    length = resp.headers.get("Content-Length")
    return int(length) + offset if length and length.isdigit() else None


def download(url: str, archive: Path, sha256: str = "", progress: bool = True, timeout: float = 60.0) -> Path:
    """Download url to archive, resuming `<archive>.part` from an earlier run with an HTTP Range request.

    Args:
        url: http(s):// or file:// URL.
        archive: where the complete, verified file is renamed to.
        sha256: expected hex digest; empty = not checked (the computed one is still returned by the caller).
        progress: show a tqdm bar.
        timeout: seconds a connection or read may stall.

    Raises:
        FetchError: unreachable URL, HTTP error, a download that stopped early (the part is kept: rerun to resume),
            or a checksum mismatch (the part is deleted).
    """
    part = archive.with_name(archive.name + ".part")
    archive.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "lookalike-fetch-data"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    host = urlsplit(url).netloc or url
    try:
        resp = urlopen(Request(url, headers=headers), timeout=timeout)  # noqa: S310 - the operator's URL
    except HTTPError as exc:
        if exc.code == 416 and offset:  # the part is longer than the file: start again
            part.unlink()
            return download(url, archive, sha256, progress, timeout)
        raise FetchError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise FetchError(f"cannot reach {host} ({reason}): no network here? Download {url} on a machine that has "
                         "one and pass the file with --archive") from None
    with resp:
        if getattr(resp, "status", None) != 206:
            offset = 0  # the server ignored the Range header (or this is a file:// URL): start from the beginning
        total = _total_size(resp, offset)
        mode = "ab" if offset else "wb"
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc="downloading",
                   disable=not progress, dynamic_ncols=True)
        try:
            with part.open(mode) as fh:
                try:
                    for chunk in iter(lambda: resp.read(CHUNK), b""):
                        fh.write(chunk)
                        bar.update(len(chunk))
                except (OSError, ValueError) as exc:  # connection reset, http.client.IncompleteRead, timeout
                    fh.flush()
                    raise FetchError(f"download of {url} was interrupted at {fh.tell():,} bytes ({exc}); "
                                     "rerun the command to resume") from None
                fh.flush()
                os.fsync(fh.fileno())
        finally:
            bar.close()
    size = part.stat().st_size
    if total is not None and size != total:
        raise FetchError(f"download of {url} stopped at {size:,} of {total:,} bytes; rerun the command to resume")
    if sha256:
        got = _sha256(part)
        if got != sha256.lower():
            part.unlink()
            raise FetchError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {got}; the download was "
                             "deleted (check catalog.fetch_sha256 / --sha256 and the URL, then rerun)")
    os.replace(part, archive)
    return archive


# ---- unpacking ----------------------------------------------------------------------------------------------------


class _Archive:
    """Uniform member access over a zip or a tar archive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            if zipfile.is_zipfile(path):
                self.zip: zipfile.ZipFile | None = zipfile.ZipFile(path)
                self.tar: tarfile.TarFile | None = None
                self.names = [n for n in self.zip.namelist() if not n.endswith("/")]
            elif tarfile.is_tarfile(path):
                self.zip = None
                self.tar = tarfile.open(path)
                self.names = [m.name for m in self.tar.getmembers() if m.isfile()]
            else:
                raise FetchError(f"{path} is not a zip or tar archive (damaged or incomplete download)")
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
            raise FetchError(f"archive {path} is damaged: {exc}") from None

    def read(self, name: str) -> bytes:
        if self.zip is not None:
            return self.zip.read(name)
        fh = self.tar.extractfile(name) if self.tar is not None else None
        if fh is None:
            raise FetchError(f"archive {self.path}: cannot read {name}")
        return fh.read()

    def close(self) -> None:
        (self.zip or self.tar).close()  # type: ignore[union-attr]


def _style_rows(text: str) -> Iterator[dict[str, str]]:
    """Rows of styles.csv. Its last column (productDisplayName) holds unquoted commas in some rows: the extra
    fields are joined back into the title."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(reader, [])]
    if "id" not in header or "productDisplayName" not in header:
        raise FetchError(f"styles.csv lacks the id / productDisplayName columns; header is {header}")
    n = len(header)
    for values in reader:
        if not values:
            continue
        if len(values) > n and header[-1] == "productDisplayName":
            values = [*values[:n - 1], ",".join(values[n - 1:])]
        if len(values) == n:
            yield {h: v.strip() for h, v in zip(header, values, strict=True)}


def catalog_row(style: dict[str, str]) -> dict[str, str]:
    """One styles.csv row in the project's catalog columns. gender is kept only where the title says it (as in the
    catalog beside the project: "empty when the title does not say")."""
    title = style.get("productDisplayName", "")
    words = set(re.findall(r"[A-Za-z]+", title))
    gender = style.get("gender", "")
    row = {"id": style["id"], "title": title, "gender": gender if gender in GENDERS and gender in words else "",
           "image": f"images/{style['id']}.jpg", "image_224": ""}
    row.update({ours: style.get(theirs, "") for theirs, ours in STYLE_COLUMNS.items()})
    return {c: row[c] for c in CATALOG_COLUMNS}


def build_catalog(archive: Path, dest: Path, progress: bool = True) -> tuple[int, int]:
    """Unpack the archive into dest as catalog.csv + images/ID.jpg; returns (products written, rows skipped).

    Written into a temp folder beside dest and renamed into place only when complete.

    Raises:
        FetchError: a damaged archive, or one without styles.csv and images/.
    """
    src = _Archive(archive)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-unpack-", dir=dest.parent))
    try:
        styles = sorted((n for n in src.names if n.rsplit("/", 1)[-1] == "styles.csv"), key=lambda n: n.count("/"))
        if not styles:
            raise FetchError(f"archive {archive} holds no styles.csv: not the Fashion Product Images archive")
        prefix = styles[0][: -len("styles.csv")]
        images = {n[len(prefix) + len("images/"):]: n for n in src.names
                  if n.startswith(prefix + "images/") and re.fullmatch(r"\d+\.jpg", n[len(prefix) + len("images/"):])}
        raw = src.read(styles[0])
        rows = [catalog_row(s) for s in _style_rows(raw.decode("utf-8-sig", errors="replace"))]
        (tmp / "images").mkdir()
        written: list[dict[str, str]] = []
        for row in tqdm(rows, desc="unpacking", unit="image", disable=not progress, dynamic_ncols=True):
            member = images.get(f"{row['id']}.jpg")
            if not row["id"].isdigit() or member is None:
                continue
            (tmp / row["image"]).write_bytes(src.read(member))
            written.append(row)
        written.sort(key=lambda r: int(r["id"]))
        with (tmp / "catalog.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CATALOG_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(written)
            fh.flush()
            os.fsync(fh.fileno())
        if not written:
            raise FetchError(f"archive {archive}: no styles.csv row has its image in images/")
        os.replace(tmp, dest)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, KeyError, zlib.error) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FetchError(f"archive {archive} is damaged: {exc}") from None
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if "compressed" in str(exc).lower() or "crc" in str(exc).lower():
            raise FetchError(f"archive {archive} is damaged: {exc}") from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        src.close()
    return len(written), len(rows) - len(written)


def fetch_dataset(name: str, dest: Path, url: str, sha256: str = "", archive: Path | None = None,
                  progress: bool = True) -> FetchResult:
    """Download (or take the given archive) and write the dataset's catalog into dest.

    Raises:
        FetchError: an unknown dataset, dest already holding a catalog, or any download / unpack failure.
    """
    if name not in DATASETS:
        raise FetchError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    dest = dest.expanduser().resolve()
    if (dest / "catalog.csv").exists():
        raise FetchError(f"{dest} already holds a catalog.csv; remove the folder to fetch it again")
    if dest.exists() and any(dest.iterdir()):
        raise FetchError(f"{dest} exists and is not empty; choose another --dest")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        dest.rmdir()  # an empty folder: replaced by the complete one
    downloaded = archive is None
    if archive is None:
        archive = download(url, dest.parent / f".{dest.name}.archive", sha256, progress)
    elif not archive.is_file():
        raise FetchError(f"archive not found: {archive}")
    elif sha256 and _sha256(archive) != sha256.lower():
        raise FetchError(f"checksum mismatch for {archive}: expected sha256 {sha256}")
    digest = _sha256(archive)
    try:
        products, skipped = build_catalog(archive, dest, progress)
    except FetchError:
        if downloaded:
            archive.unlink(missing_ok=True)  # a damaged download: the next run fetches it again
        raise
    if downloaded:
        archive.unlink(missing_ok=True)
    return FetchResult(dest, products, skipped, digest)
