"""A video file or a USB/V4L2 camera (by index) as a frame source, through OpenCV VideoCapture."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from app.station.frame import Frame
from app.station.sources.base import SourceError, SourceStats
from app.station.sources.imageio import to_frame_layout
from app.station.sources.spec import Pacer, SourceOptions, record_error

log = logging.getLogger(__name__)


class VideoSource:
    """Frames from ``target``: a file path, or an int (or digit string) device index.

    Files: paced at ``options.fps``, else at the file's own rate with ``options.native_fps``,
    else as fast as they decode; ``options.loop`` rewinds at the end. Devices deliver at their
    own rate; a device that stops delivering for ``fetch_timeout_s`` is reopened (counted in
    ``stats.reconnects``) until ``reconnect_timeout_s``, then SourceError.
    """

    def __init__(self, target: str | int | Path, *, options: SourceOptions | None = None) -> None:
        self.options = options or SourceOptions()
        text = str(target)
        self.device: int | None = int(text) if text.isdigit() else None
        self.path = None if self.device is not None else Path(text).expanduser()
        if self.path is not None and not self.path.is_file():
            raise SourceError(f"video file not found: {self.path}")
        self.name = f"video:{self.device if self.device is not None else self.path}"
        self.stats = SourceStats()
        self.triggered = self.options.mode == "triggered"
        self._stop = threading.Event()
        self._lock = threading.Lock()  # guards _cap: VideoCapture is not safe to release mid-read
        self._streaming = False
        self._cap: Any = None
        self._next_id = 0
        self.open()

    @property
    def file_fps(self) -> float:
        """The container's frame rate (0 when unknown or for most devices)."""
        cap = self._cap
        return float(cap.get(cv2.CAP_PROP_FPS) or 0.0) if cap is not None else 0.0

    def open(self) -> None:
        """Open the file or device (done on construction; again after close())."""
        with self._lock:
            self._stop.clear()
            if self._cap is None:
                self._cap = self._open_capture()

    def frames(self) -> Iterator[Frame]:
        """Yield frames until the file ends (no loop), ``close()``, or the device is lost."""
        if self._stop.is_set() or self._cap is None:
            return
        self._streaming = True
        try:
            fps = self.options.fps
            if not fps and self.options.native_fps and self.path is not None:
                fps = self.file_fps or None
            pacer = Pacer(fps, self._stop)
            last_frame = time.monotonic()
            while pacer.wait():
                ok, image = self._cap.read()
                if ok and image is not None and image.size:
                    last_frame = time.monotonic()
                    yield self._frame(image)
                elif self.path is not None:
                    if not self.options.loop or not self._rewind():
                        return
                elif time.monotonic() - last_frame > self.options.fetch_timeout_s:
                    self._reconnect()
                    last_frame = time.monotonic()
                else:
                    self._stop.wait(0.01)  # device not ready yet: don't spin
        finally:
            self._streaming = False
            if self._stop.is_set():
                self._release()

    def close(self) -> None:
        """Stop from any thread; the capture is released by ``frames()`` or here when idle."""
        self._stop.set()
        if not self._streaming:
            self._release()

    def _frame(self, image: np.ndarray) -> Frame:
        meta: dict[str, Any] = {}
        if self.path is not None:
            meta = {
                "path": str(self.path),
                "position": int(self._cap.get(cv2.CAP_PROP_POS_FRAMES)) - 1,
            }
        frame = Frame(
            to_frame_layout(image, name=self.name), self._next_id, time.time(), self.name, meta
        )
        self._next_id += 1
        self.stats.delivered += 1
        return frame

    def _open_capture(self) -> Any:
        cap = cv2.VideoCapture(self.device if self.device is not None else str(self.path))
        if not cap.isOpened():
            cap.release()
            what = (
                f"video device {self.device}"
                if self.device is not None
                else f"video file {self.path}"
            )
            raise SourceError(f"cannot open {what} (not found, busy, or no codec for it in OpenCV)")
        if self.path is not None:
            ok, _ = cap.read()  # some corrupt files open fine and then yield nothing
            if not ok:
                cap.release()
                raise SourceError(f"video file {self.path} has no readable frames")
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        return cap

    def _rewind(self) -> bool:
        with self._lock:
            if self._cap is not None and self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                return True
            # Some containers can't seek: reopening is the portable way back to the start.
            self._release_locked()
            try:
                self._cap = self._open_capture()
            except SourceError as exc:
                self._note(str(exc))
                return False
            return True

    def _reconnect(self) -> None:
        message = f"{self.name}: no frame for {self.options.fetch_timeout_s:g} s; reopening"
        log.error("%s", message)
        record_error(self.stats, message)
        deadline = time.monotonic() + self.options.reconnect_timeout_s
        delay = 0.2
        last = "no frame"
        while not self._stop.is_set():
            with self._lock:
                self._release_locked()
                try:
                    self._cap = self._open_capture()
                except SourceError as exc:
                    last = str(exc)
                else:
                    self.stats.reconnects += 1
                    return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                limit = self.options.reconnect_timeout_s
                message = f"{self.name}: device lost and not reopened within {limit:g} s ({last})"
                record_error(self.stats, message)
                raise SourceError(message)
            self._stop.wait(min(delay, remaining))  # the last attempt lands on the deadline
            delay = min(delay * 2, 2.0)

    def _note(self, message: str) -> None:
        log.warning("%s", message)
        record_error(self.stats, message)

    def _release(self) -> None:
        with self._lock:
            self._release_locked()

    def _release_locked(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()
