"""The NG image archive of the results store: PNG image (+ mask) per kept frame, disk-aware.

Layout: ``ARCHIVE/YYYY-MM-DD/HHMMSS_mmm_f<frame>_<n>_image.png`` and ``..._mask.png`` (local
date of the frame's timestamp); callers store the paths relative to the archive dir. NG frames
get image + mask (:func:`~app.station.inspector.binary_mask` of the kept map, 0/255); an ERROR
frame that has an image (a model fault) gets the image only; an unreadable frame (0x0) nothing.

Disk pressure: below ``min_free_mb`` free on the archive's file system the archive stops (the
verdict rows, a few hundred bytes each, go on) and ``alarm`` is called once; once the space is
back, it resumes with a second alarm. Free space is asked at most every ``check_s`` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from app.station import _store_open as op
from app.station._atomic import atomic_write_bytes
from app.station.inspection import FrameResult
from app.station.inspector import binary_mask

log = logging.getLogger(__name__)
_LOG_EVERY_S = 5.0


class NgArchive:
    """Writes archived frames under ``root``; counts ``failures`` (write errors) and ``skipped``
    (frames not kept because the disk is low)."""

    def __init__(
        self,
        root: Path,
        *,
        min_free_mb: float,
        check_s: float,
        alarm: Callable[[str], None],
    ) -> None:
        self.root = root
        self.min_free_mb = float(min_free_mb)
        self.failures = 0
        self.skipped = 0
        self.paused = False
        self._disk = op.DiskGuard(root, check_s)
        self._alarm = alarm
        self._seq = 0
        self._last_log = 0.0

    def allowed(self) -> bool:
        """False while free space is below the floor (alarms on each change)."""
        free = self._disk.free_mb()
        if free is None:
            return not self.paused
        if not self.paused and free < self.min_free_mb:
            self.paused = True
            self._alarm(
                f"NG image archive stopped: {free:.0f} MB free on {op.existing_dir(self.root)} "
                f"(floor {self.min_free_mb:.0f} MB, setting archive_min_free_mb); verdicts are "
                "still stored"
            )
        elif self.paused and free >= self.min_free_mb:
            self.paused = False
            self._alarm(f"NG image archive resumed: {free:.0f} MB free on {self.root}")
        return not self.paused

    def write(self, result: FrameResult) -> tuple[str | None, str | None]:
        """Archive an NG or ERROR frame; returns (image, mask) paths relative to the root,
        None for what was not written. A failure is logged and counted, never raised."""
        ins = result.inspection
        image = result.frame.image
        if ins.verdict not in ("NG", "ERROR") or image.size == 0:
            return None, None
        if not self.allowed():
            self.skipped += 1
            return None, None
        with_mask = ins.verdict == "NG" and result.prob is not None
        ts = ins.timestamp if ins.timestamp > 0 else time.time()
        local = time.localtime(ts)
        self._seq += 1
        stem = f"{time.strftime('%H%M%S', local)}_{int(ts * 1000) % 1000:03d}_f{ins.frame_id}"
        rel_image = f"{time.strftime('%Y-%m-%d', local)}/{stem}_{self._seq}_image.png"
        rel_mask = rel_image.removesuffix("_image.png") + "_mask.png"
        written: list[Path] = []
        try:
            ok, png = cv2.imencode(".png", np.ascontiguousarray(image))
            pngs = [(rel_image, png)]
            if with_mask:
                assert result.prob is not None
                ok_m, png_mask = cv2.imencode(".png", binary_mask(result.prob, ins.rules))
                ok = ok and ok_m
                pngs.append((rel_mask, png_mask))
            if not ok:
                raise OSError("PNG encoding failed")
            for rel, data in pngs:
                written.append(atomic_write_bytes(self.root / rel, data.tobytes()))
        except (OSError, cv2.error) as exc:
            self.failures += 1
            for p in written:  # no orphan image without its mask
                with contextlib.suppress(OSError):
                    p.unlink()
            now = time.monotonic()
            if now - self._last_log >= _LOG_EVERY_S:
                self._last_log = now
                log.warning(
                    "results store: archive write to %s failed: %s (archive failures so far: %d)",
                    self.root, exc, self.failures,
                )  # fmt: skip
            return None, None
        return rel_image, (rel_mask if with_mask else None)

    def delete(self, rel_paths: list[str]) -> None:
        """Remove archived files (retention), and their day folder once it is empty."""
        for rel in rel_paths:
            path = self.root / rel
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                path.parent.rmdir()
