"""The worker host's scratch directory, where packs are written before they are uploaded.

One directory per host (under the system temp directory), so that files a killed worker
left behind are found in one place. A live attempt keeps writing its file or uploads it
within its lease; a file older than the lease belongs to no live attempt and is deleted,
at worker start and by the reaper.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
from pathlib import Path

DIRECTORY_NAME = "reviewpacks"
PREFIX = "review-pack-"


def directory() -> Path:
    path = Path(tempfile.gettempdir()) / DIRECTORY_NAME
    # Private to the worker's user: the files hold tenant data before it is uploaded.
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def new_file(pack_id: int) -> tuple[int, Path]:
    """A new empty file for one attempt of a pack: an open descriptor and its path."""
    fd, name = tempfile.mkstemp(prefix=f"{PREFIX}{pack_id}-", suffix=".zip", dir=directory())
    return fd, Path(name)


def remove_pack_files(pack_id: int) -> list[str]:
    """Delete the files earlier attempts of this pack left on this host; returns their names.

    Called only after a successful claim, so the attempt that wrote them no longer owns the run.
    """
    removed = []
    for leftover in directory().glob(f"{PREFIX}{pack_id}-*"):
        leftover.unlink(missing_ok=True)
        removed.append(leftover.name)
    return removed


def sweep(*, older_than: dt.timedelta) -> int:
    """Delete scratch files not modified for ``older_than``; returns how many were deleted."""
    cutoff = time.time() - older_than.total_seconds()
    removed = 0
    for path in directory().glob(f"{PREFIX}*"):
        try:
            if path.stat().st_mtime < cutoff:
                os.unlink(path)
                removed += 1
        except FileNotFoundError:
            # Its own attempt finished and removed it between the listing and now.
            continue
    return removed
