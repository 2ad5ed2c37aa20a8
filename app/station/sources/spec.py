"""Source specs (``folder:PATH``, ``genicam:DEVICE[@CTI]``, ``video:PATH|INDEX``) and settings.

Also holds the two small helpers every source shares: frame pacing that ``close()`` can interrupt,
and the bounded error log kept in ``SourceStats.errors``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from app.station.sources.base import SourceError, SourceStats

SourceKind = Literal["folder", "genicam", "video"]
Mode = Literal["free-run", "triggered"]
Trigger = Literal["off", "software", "hardware"]

MAX_ERRORS = 20  # SourceStats.errors keeps the newest few; a long run must not grow it forever
DEFAULT_MAX_PIXELS = 100_000_000

BIT_DEPTHS = (8, 10, 12, 14, 16)

SPEC_HELP = "expected folder:PATH, genicam:DEVICE[@CTI] or video:PATH|INDEX"


@dataclass(frozen=True)
class CameraSettings:
    """GenICam settings; ``None`` leaves the camera's current value alone.

    ``trigger``: ``"off"`` free-runs, ``"software"`` fires TriggerSoftware once per frame from the
    acquisition loop (paced by ``SourceOptions.fps`` when set), ``"hardware"`` waits for the line
    named by ``trigger_source`` (or the camera's current TriggerSource when that is ``None``).
    """

    width: int | None = None
    height: int | None = None
    pixel_format: str | None = None  # GenICam name: Mono8, Mono12, RGB8, BGRa8 ...
    exposure_us: float | None = None
    gain_db: float | None = None
    trigger: Trigger | None = None
    trigger_source: str | None = None  # e.g. "Line0"; only used with trigger="hardware"

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) != value or value <= 0):
                raise ValueError(f"camera {name} must be a positive integer, not {value!r}")
        if self.exposure_us is not None and self.exposure_us <= 0:
            raise ValueError(f"camera exposure_us must be > 0, not {self.exposure_us!r}")
        if self.trigger is not None and self.trigger not in get_args(Trigger):
            raise ValueError(
                f"camera trigger must be one of {', '.join(get_args(Trigger))},"
                f" not {self.trigger!r}"
            )


@dataclass(frozen=True)
class SourceOptions:
    """How a source delivers frames. One object for all kinds; each uses what applies to it.

    - ``fps``: ``None`` or 0 = as fast as possible. Folder/video: software pacing. Camera: written
      to AcquisitionFrameRate when the node exists (else reported in ``unsupported_settings``).
    - ``loop``: folder and video files start again at the end.
    - ``mode``: ``"triggered"`` means every frame is a part that needs a verdict (``triggered``
      on the source is True; a camera turns its trigger on unless ``camera.trigger`` says
      otherwise).
    - ``watch``: folder only, when not looping: after the files present at start, keep picking up
      files that arrive (a line camera writing files), polling every ``watch_poll_s``.
    - ``native_fps``: video files only, with ``fps`` unset: pace at the file's own frame rate.
    - ``max_pixels``: images larger than this are refused (folder).
    - ``fetch_timeout_s``: camera/video device: no frame for this long in free-run = device lost.
    - ``reconnect_timeout_s``: how long to keep trying to reopen a lost device before giving up.
    - ``ctis``: extra GenTL producer files for ``genicam:`` specs.
    - ``bit_depth``: significant bits of the pixels (recipe ``[source] bit_depth``); sources
      put it in ``Frame.metadata["bit_depth"]`` (see :func:`frame_metadata`) so preprocessing
      scales 12-bit data by 4095, not 65535. None = the container's depth.
    """

    fps: float | None = None
    loop: bool = False
    mode: Mode = "free-run"
    watch: bool = False
    watch_poll_s: float = 0.2
    native_fps: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    fetch_timeout_s: float = 5.0
    reconnect_timeout_s: float = 10.0
    ctis: tuple[str, ...] = ()
    camera: CameraSettings = field(default_factory=CameraSettings)
    bit_depth: int | None = None

    def __post_init__(self) -> None:
        if self.bit_depth is not None and self.bit_depth not in BIT_DEPTHS:
            raise ValueError(
                f"bit_depth must be one of {', '.join(map(str, BIT_DEPTHS))}, not {self.bit_depth!r}"
            )
        if self.fps is not None and not self.fps >= 0:
            raise ValueError(
                f"fps must be >= 0 (0 or None = as fast as possible), not {self.fps!r}"
            )
        if self.mode not in get_args(Mode):
            raise ValueError(f"mode must be 'free-run' or 'triggered', not {self.mode!r}")
        for name in ("watch_poll_s", "fetch_timeout_s", "reconnect_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, not {getattr(self, name)!r}")
        if not self.max_pixels > 0:
            raise ValueError(f"max_pixels must be > 0, not {self.max_pixels!r}")
        # A list from TOML would make the dataclass unhashable and mutable behind our back.
        object.__setattr__(self, "ctis", tuple(str(c) for c in self.ctis))


@dataclass(frozen=True)
class SourceSpec:
    """A parsed spec. ``target``: the path, the device (id, serial or index) or video index."""

    kind: SourceKind
    target: str
    cti: str | None = None

    def __str__(self) -> str:
        tail = f"@{self.cti}" if self.cti else ""
        return f"{self.kind}:{self.target}{tail}"


def frame_metadata(options: SourceOptions) -> dict[str, int]:
    """Metadata every frame of a source with ``options`` carries (``bit_depth`` when declared)."""
    return {} if options.bit_depth is None else {"bit_depth": options.bit_depth}


def parse_spec(spec: str) -> SourceSpec:
    """Split ``kind:target`` (``genicam:`` also takes ``@CTI``); SourceError when malformed."""
    if not isinstance(spec, str) or ":" not in spec:
        raise SourceError(f"bad source spec {spec!r}: {SPEC_HELP}")
    kind, _, target = spec.partition(":")
    kind = kind.strip().lower()
    target = target.strip()
    if kind == "folder":
        if not target:
            raise SourceError(f"bad source spec {spec!r}: folder: needs a PATH")
        return SourceSpec("folder", str(Path(target).expanduser()))
    if kind == "video":
        if not target:
            raise SourceError(
                f"bad source spec {spec!r}: video: needs a file PATH or a device INDEX"
            )
        return SourceSpec("video", target if target.isdigit() else str(Path(target).expanduser()))
    if kind == "genicam":
        # Split at the first '@': device ids do not contain one, CTI paths might.
        device, at, cti = target.partition("@")
        device = device.strip() or "0"
        if at and not cti.strip():
            raise SourceError(f"bad source spec {spec!r}: nothing after '@' (expected a .cti path)")
        return SourceSpec("genicam", device, str(Path(cti.strip()).expanduser()) if at else None)
    raise SourceError(f"bad source spec {spec!r}: unknown kind {kind!r}; {SPEC_HELP}")


def record_error(stats: SourceStats, message: str) -> None:
    """Keep the newest ``MAX_ERRORS`` messages, newest last."""
    stats.errors.append(message)
    del stats.errors[:-MAX_ERRORS]


class Pacer:
    """Spaces frames ``1/fps`` apart on a fixed schedule, sleeping on an Event so close() wakes it.

    A fixed schedule (not "sleep 1/fps after each frame") keeps the average rate right when reading
    a frame takes a noticeable part of the period; after a long stall it resets instead of bursting.
    """

    def __init__(self, fps: float | None, stop: threading.Event) -> None:
        self.period = 1.0 / fps if fps else 0.0
        self._stop = stop
        self._next: float | None = None

    def wait(self) -> bool:
        """Block until the next frame is due; False when the stop event was set meanwhile."""
        if self.period <= 0:
            return not self._stop.is_set()
        now = time.monotonic()
        if self._next is None or now - self._next > self.period:
            self._next = now
        delay = self._next - now
        self._next += self.period
        if delay > 0:
            return not self._stop.wait(delay)
        return not self._stop.is_set()
