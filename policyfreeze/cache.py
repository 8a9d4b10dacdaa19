"""Where policyfreeze keeps what it can rebuild: the user's cache directory, written atomically.

``$POLICYFREEZE_CACHE_DIR``, else ``$XDG_CACHE_HOME/policyfreeze``, else
``~/.cache/policyfreeze``. Everything kept here is plain data (JSON), checked
when read and rebuilt when wrong, so deleting the directory is always safe.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

CACHE_DIR_VARIABLE = "POLICYFREEZE_CACHE_DIR"


def directory() -> Path | None:
    """The cache directory (None when no home directory can be found)."""
    explicit = os.environ.get(CACHE_DIR_VARIABLE)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec: a relative path is invalid and ignored
        return Path(xdg) / "policyfreeze"
    try:
        return Path.home() / ".cache" / "policyfreeze"
    except RuntimeError:
        return None


#: No entry is larger than this (the largest manifest a command accepts); a larger file is not ours.
MAX_ENTRY_BYTES = 64 * 1024 * 1024


def read_entry(path: Path) -> bytes | None:
    """An entry's bytes, or None when it is absent, unreadable, too large or not a regular file.

    Opened without blocking, so a FIFO or a device planted at the path is passed
    over rather than waited on or read without end.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode) or status.st_size > MAX_ENTRY_BYTES:
            return None
        with os.fdopen(descriptor, "rb", closefd=False) as file:
            data = file.read(MAX_ENTRY_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(descriptor)
    return data if len(data) <= MAX_ENTRY_BYTES else None


def write_atomically(path: Path, data: bytes) -> None:
    """Write a cache entry whole or not at all; a cache that cannot be written is skipped."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(path, data)


def replace_file(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` over ``path`` whole or not at all (``OSError`` when it cannot).

    The data goes to a temporary file in the same directory, renamed over
    ``path``, so a reader sees the old file or the new one however many
    processes write, and a failure part-way leaves the old file.
    """
    temporary = None
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except OSError:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        raise
