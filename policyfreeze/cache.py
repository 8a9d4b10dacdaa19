"""Where policyfreeze keeps what it can rebuild: the user's cache directory, written atomically.

``$POLICYFREEZE_CACHE_DIR``, else ``$XDG_CACHE_HOME/policyfreeze``, else
``~/.cache/policyfreeze``. Everything kept here is plain data (JSON), checked
when read and rebuilt when wrong, so deleting the directory is always safe.
"""

from __future__ import annotations

import contextlib
import os
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


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all; a cache that cannot be written is skipped.

    The data goes to a temporary file in the same directory, renamed over the
    entry, so a reader sees a whole entry or none however many processes write.
    """
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except OSError:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
