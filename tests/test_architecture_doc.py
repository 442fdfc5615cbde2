"""docs/architecture.md names only paths that exist: a file moved or renamed without the page following fails here."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "architecture.md"
MIN_PATHS = 30

# A path must start with one of the repository's top-level folders (engine/..., bench/) or be a top-level file.
TOP_DIRS = ("engine", "indexer", "web", "tests", "bench", "scripts", "docs", "migrations", "models", "fuzz")
TOP_FILES = ("manage.py", "config.toml", "Makefile", "pyproject.toml", "README.md", "BENCHMARKS.md", "RELIABILITY.md")
# Not preceded by a path character (so foo/engine/x.py and ../web/x are not read as engine/x.py or web/x);
# the folder name must be followed by "/" (plain words such as "web" or "engine" are prose, not paths).
PATH_RE = re.compile(
    r"(?<![\w./-])"
    r"(?:(?:" + "|".join(TOP_DIRS) + r")/(?:[\w.-]+/)*[\w.-]*"
    r"|(?:" + "|".join(re.escape(f) for f in TOP_FILES) + r")(?![\w-]))"
)


def repo_paths(text: str) -> list[str]:
    """Repository paths named in TEXT, in order of first mention, without trailing sentence dots."""
    seen: dict[str, None] = {}
    for match in PATH_RE.finditer(text):
        seen.setdefault(match.group(0).rstrip("."), None)
    return list(seen)


def test_every_path_in_the_architecture_doc_exists() -> None:
    paths = repo_paths(DOC.read_text())
    assert len(paths) >= MIN_PATHS, f"only {len(paths)} paths found in {DOC.name}: {paths}"
    missing = [p for p in paths if not (REPO / p).exists()]
    assert not missing, f"{DOC.relative_to(REPO)} names paths that do not exist: {missing}"


def test_the_extractor_finds_a_made_up_path() -> None:
    """The check above cannot pass vacuously: the extractor sees a path that does not exist, and only real names."""
    text = ("Moved to `engine/made_up/nowhere.py`, see indexer/vectors/ and bench/. Run manage.py, then Makefile.\n"
            "Not paths: web -> indexer -> engine, ../shared/STYLE.md, vendor/engine/x.py, engine.models, "
            "migrations/versions/0099_made_up.py.")
    found = repo_paths(text)
    assert found == ["engine/made_up/nowhere.py", "indexer/vectors/", "bench/", "manage.py", "Makefile",
                     "migrations/versions/0099_made_up.py"]
    assert not (REPO / "engine/made_up/nowhere.py").exists()
