"""This user's private folder under the system's temporary directory (generated wrappers, lock files)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def private_folder() -> Path:
    """`<tmp>/observatory-<uid>`, made with mode 0700 if missing; refused when someone else could write it."""
    folder = Path(tempfile.gettempdir()) / f"observatory-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise RuntimeError(f"{folder} must be a directory of user {os.getuid()} with mode 0700: remove it")
    return folder
