"""A folder of image files as a frame source (replay, demo, or a line camera that writes files)."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from app.station.frame import Frame
from app.station.sources.base import SourceError, SourceStats
from app.station.sources.imageio import IMAGE_SUFFIXES, ImageReadError, read_image
from app.station.sources.spec import Pacer, SourceOptions, frame_metadata, record_error

log = logging.getLogger(__name__)

_DIGITS = re.compile(r"(\d+)")


def natural_key(path: Path) -> tuple[tuple[int, int | str], ...]:
    """Sort key putting ``img2.png`` before ``img10.png`` (case-insensitive otherwise)."""
    parts = _DIGITS.split(path.name.lower())
    # (kind, value) pairs so that numbers and text never get compared with each other.
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts if p)


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (png/bmp/jpg/jpeg/tif/tiff, any case), natural order."""
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise SourceError(f"cannot list folder {folder}: {exc.strerror or exc}") from exc
    files = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    return sorted(files, key=natural_key)


def _mark(path: Path) -> tuple[int, float]:
    try:
        st = path.stat()
    except OSError:
        return (-1, -1.0)
    return (st.st_size, st.st_mtime)


class FolderSource:
    """Yields the folder's images in natural order.

    An unreadable file is yielded once as an unreadable frame (``frame.readable`` False, the
    reason in ``metadata["error"]``), so it ends as an ERROR verdict with its file name instead
    of vanishing; a looping folder does not repeat it on later passes unless it changes.

    ``options.loop`` starts again at the end (re-listing the folder each pass);
    ``options.watch`` (without loop) keeps waiting for new files after the initial ones. A file
    that is still being written is picked up once its size and mtime stop changing between polls.
    """

    def __init__(self, folder: str | Path, *, options: SourceOptions | None = None) -> None:
        self.folder = Path(folder).expanduser()
        self.options = options or SourceOptions()
        if not self.folder.is_dir():
            raise SourceError(f"image folder not found: {self.folder}")
        if not self.options.watch and not list_images(self.folder):
            raise SourceError(
                f"no images in {self.folder} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        self.name = f"folder:{self.folder}"
        self.stats = SourceStats()
        self.triggered = self.options.mode == "triggered"
        self._stop = threading.Event()
        self._next_id = 0
        # Unreadable files by (size, mtime): a looping folder reports each bad file once, not on
        # every pass; a file rewritten since (new size or mtime) is tried again.
        self._bad: dict[Path, tuple[int, float]] = {}

    def frames(self) -> Iterator[Frame]:
        """Yield frames until the folder is exhausted (no loop, no watch) or ``close()``."""
        pacer = Pacer(self.options.fps, self._stop)
        while not self._stop.is_set():
            delivered_before = self.stats.delivered
            paths = list_images(self.folder)
            yield from self._deliver(paths, pacer)
            if self.options.loop:
                if self.stats.delivered == delivered_before:
                    # Nothing readable in a whole pass: looping would spin on the same errors.
                    self._fail_soft(f"{self.folder}: no readable images; stopping the loop")
                    return
                continue
            if self.options.watch:
                yield from self._watch({p.name for p in paths}, pacer)
            return

    def open(self) -> None:
        """Re-arm after ``close()`` so that ``frames()`` starts again from the first file."""
        self._stop.clear()

    def close(self) -> None:
        """Make ``frames()`` return promptly, from any thread. Final until ``open()``."""
        self._stop.set()

    def _deliver(self, paths: list[Path], pacer: Pacer) -> Iterator[Frame]:
        for path in paths:
            if path in self._bad and self._bad[path] == _mark(path):
                self.stats.skipped += 1  # reported once already as an ERROR frame
                continue
            if not pacer.wait():
                return
            frame = self._read(path)
            if frame is not None:
                yield frame
            if self._stop.is_set():
                return

    def _read(self, path: Path) -> Frame | None:
        t0 = time.perf_counter()
        try:
            image = read_image(path, max_pixels=self.options.max_pixels)
        except ImageReadError as exc:
            self._bad[path] = _mark(path)
            self._fail_soft(f"not readable: {exc}")
            frame = Frame.unreadable(
                self._next_id,
                time.time(),
                self.name,
                str(exc),
                {"path": str(path), "file": path.name},
            )
            self._next_id += 1
            return frame
        frame = Frame(
            image=image,
            frame_id=self._next_id,
            timestamp=time.time(),
            source=self.name,
            metadata={
                "path": str(path),
                "file": path.name,
                "read_ms": (time.perf_counter() - t0) * 1000.0,
                **frame_metadata(self.options),  # the recipe's declared bit depth
            },
        )
        self._next_id += 1
        self.stats.delivered += 1
        return frame

    def _watch(self, seen: set[str], pacer: Pacer) -> Iterator[Frame]:
        # name -> (size, mtime) at the previous poll; a file is read once it stops changing.
        pending: dict[str, tuple[int, float]] = {}
        poll = self.options.watch_poll_s
        while not self._stop.wait(poll):
            ready: list[Path] = []
            for path in list_images(self.folder):
                if path.name in seen:
                    continue
                try:
                    st = path.stat()
                except OSError:
                    continue  # removed between listing and stat
                mark = (st.st_size, st.st_mtime)
                if pending.get(path.name) == mark:
                    ready.append(path)
                    seen.add(path.name)
                    del pending[path.name]
                else:
                    pending[path.name] = mark
            yield from self._deliver(ready, pacer)

    def _fail_soft(self, message: str) -> None:
        log.warning("%s", message)
        record_error(self.stats, message)
