"""Atomic file writes: a crash, a kill or a full disk never leaves a half-written file behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "write_new_file"]

# mkstemp creates 0600 files; recipes, labels and CSV exports should get the mode an ordinary
# open() would give. The umask is read once at import (reading it means setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


def _temp_copy(path: Path, data: bytes) -> str:
    """Write ``data`` to a fsynced temporary file beside ``path`` (same filesystem, so the final
    rename or link is atomic) and return its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically (temp file + fsync + ``os.replace``)."""
    path = Path(path)
    tmp = _temp_copy(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_new_file(path: str | os.PathLike[str], data: bytes) -> Path:
    """Create ``path`` atomically, failing with ``FileExistsError`` if it already exists.

    ``os.link`` refuses to replace an existing name, so two writers racing for one name cannot
    overwrite each other. On filesystems without hard links (FAT, some network shares) this falls
    back to an existence check followed by ``os.replace``, which is atomic but not race-proof.
    """
    path = Path(path)
    tmp = _temp_copy(path, data)
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:
            if path.exists():
                raise FileExistsError(path) from None
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
