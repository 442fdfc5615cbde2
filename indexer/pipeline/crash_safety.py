"""What keeps a bulk indexing run safe to kill: the single-writer lock of an index dir and the named crash points.

The crash tests kill real processes at each CRASH_POINTS name (`manage.py index --crash-at NAME`) and then check
that nothing was lost and no wrong id is served (RELIABILITY.md).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock, Timeout

CrashHook = Callable[[str], None]
# Named points where the crash tests kill the process (manage.py --crash-at NAME).
CRASH_POINTS = ("mid-batch", "after-sql-commit", "mid-metadata-update", "before-index-save", "during-index-save",
                "before-swap", "after-swap", "remove-after-sql", "remove-before-purge")


class WriterBusyError(RuntimeError):
    """Another writer holds the index lock."""


def kill_at(point: str | None) -> CrashHook:
    """A crash hook that SIGKILLs this process when the named point is reached (for crash tests)."""
    if point and point not in CRASH_POINTS:
        raise ValueError(f"unknown crash point {point!r}; known: {', '.join(CRASH_POINTS)}")

    def hook(name: str) -> None:
        if name == point:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def writer_lock(index_dir: Path) -> FileLock:
    """Acquire the single-writer lock of an index dir, or raise WriterBusyError at once."""
    index_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(index_dir / ".writer.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise WriterBusyError(
            f"another indexing job is writing to {index_dir} (lock {index_dir / '.writer.lock'}); "
            "wait for it to finish, then run again"
        ) from None
    return lock
