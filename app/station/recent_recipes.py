"""The recipes opened lately, newest first, for ``File → Open recent recipe``.

Kept as a small JSON list in the station's data folder (``DATA_DIR/recent_recipes.json``), so it
survives restarts and belongs to the station, not to one user's Qt settings. A recipe that no
longer exists is dropped when the list is read; a damaged file is an empty list, never an error
at start-up.

API: ``RecentRecipes(data_dir)``; ``.paths()`` (existing files, newest first); ``.add(path)``
after a recipe was opened or saved; ``.remove(path)``; ``.clear()``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from app.station._atomic import atomic_write_text

__all__ = ["FILE_NAME", "MAX_RECENT", "RecentRecipes"]

log = logging.getLogger(__name__)
FILE_NAME = "recent_recipes.json"
MAX_RECENT = 10


class RecentRecipes:
    def __init__(self, data_dir: str | os.PathLike[str], *, limit: int = MAX_RECENT) -> None:
        self.file = Path(data_dir) / FILE_NAME
        self.limit = max(1, int(limit))

    def _read(self) -> list[Path]:
        try:
            raw = json.loads(self.file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.warning("%s: recent recipes unreadable, starting a new list (%s)", self.file, exc)
            return []
        if not isinstance(raw, list):
            return []
        return [Path(p) for p in raw if isinstance(p, str) and p]

    def _write(self, paths: list[Path]) -> None:
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.file, json.dumps([str(p) for p in paths], indent=1) + "\n")
        except OSError as exc:  # a convenience list: never worth failing an open or a save
            log.warning("%s: recent recipes not written (%s)", self.file, exc)

    def paths(self) -> list[Path]:
        """The recipe files opened lately that still exist, newest first."""
        return [p for p in self._read() if p.is_file()][: self.limit]

    def add(self, path: str | os.PathLike[str]) -> list[Path]:
        """Put ``path`` first (once); returns the new list."""
        p = Path(path).resolve()
        paths = [p, *(q for q in self._read() if q != p and q.is_file())][: self.limit]
        self._write(paths)
        return paths

    def remove(self, path: str | os.PathLike[str]) -> list[Path]:
        p = Path(path).resolve()
        paths = [q for q in self._read() if q != p]
        self._write(paths)
        return paths

    def clear(self) -> None:
        self._write([])
