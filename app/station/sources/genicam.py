"""A GenICam camera as a frame source, through harvesters.

Buffers are borrowed from the driver: each one is converted (which copies it) inside
``with buffer:`` and only the copy leaves; harvesters hands the buffer back on exit. Fetching
polls with a short timeout so that ``close()`` from another thread ends ``frames()`` promptly.
A lost camera (fetch raises, the acquirer turns invalid, or no frame for ``fetch_timeout_s`` in
free-run) is logged, reopened with backoff and counted in ``stats.reconnects``; when it cannot
be reopened within ``reconnect_timeout_s``, ``frames()`` raises SourceError.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np

from app.station.frame import Frame
from app.station.sources.base import SourceError, SourceStats
from app.station.sources.devices import (
    _HUB,
    DeviceInfo,
    apply_settings,
    default_ctis,
    effective_trigger,
    list_devices,
    missing_controls,
    resolve_ctis,
)
from app.station.sources.spec import Pacer, SourceOptions, record_error

__all__ = ["GenICamSource", "PIXEL_FORMATS", "default_ctis", "list_devices"]

log = logging.getLogger(__name__)

POLL_S = 0.05  # longest a single fetch waits, i.e. how late close() can be noticed

# Mono formats delivered as uint16, with their significant bits (shifted up to the full 16-bit
# range so that /65535 normalisation downstream means the same for every sensor).
_MONO16_BITS = {
    "Mono10": 10, "Mono10p": 10, "Mono10Packed": 10,
    "Mono12": 12, "Mono12p": 12, "Mono12Packed": 12,
    "Mono14": 14, "Mono14p": 14, "Mono16": 16,
}  # fmt: skip
# Colour formats -> cv2 conversion to BGR (None: already BGR, copy only).
_COLOUR = {
    "RGB8": cv2.COLOR_RGB2BGR,
    "BGR8": None,
    "RGBa8": cv2.COLOR_RGBA2BGR,
    "BGRa8": cv2.COLOR_BGRA2BGR,
}
PIXEL_FORMATS = ("Mono8", *_MONO16_BITS, *_COLOUR)


class _DeviceGone(RuntimeError):
    """The acquirer was destroyed under us (device closed or unplugged)."""


class GenICamSource:
    """Frames from one GenICam device, opened by id, serial number or index.

    ``unsupported_settings`` maps each requested setting the camera has no writable node for
    (``"exposure_us"``, ``"gain_db"``, ``"trigger"``, ``"fps"`` ...) to the reason; they are also
    logged. ``acquirer`` is the current harvesters ImageAcquirer (None when closed).
    """

    def __init__(
        self,
        device: str | int = 0,
        *,
        ctis: tuple[str, ...] | list[str] = (),
        options: SourceOptions | None = None,
    ) -> None:
        self.options = options or SourceOptions()
        self.device = str(device)
        self.ctis = resolve_ctis([*self.options.ctis, *ctis])
        self.name = f"genicam:{self.device}"
        self.stats = SourceStats()
        self.trigger_mode = effective_trigger(self.options)
        self.triggered = self.options.mode == "triggered" or self.trigger_mode in (
            "software",
            "hardware",
        )
        self.unsupported_settings: dict[str, str] = {}
        self.missing_controls: dict[str, str] = {}  # controls the device lacks, requested or not
        self.device_info: DeviceInfo | None = None
        self._acquirer: Any = None
        self._lock = threading.Lock()  # guards _acquirer between frames() and close()
        self._stop = threading.Event()
        self._streaming = False
        self._incomplete = 0  # bumped by the harvesters callback on the acquisition thread
        self._next_id = 0
        self.open()

    @property
    def acquirer(self) -> Any:
        return self._acquirer

    def open(self) -> None:
        """Open the device and apply the settings (done on construction; again after close())."""
        with self._lock:
            self._stop.clear()
            if self._acquirer is None:
                self._open_locked()

    def frames(self) -> Iterator[Frame]:
        """Yield frames until ``close()``; SourceError when the camera is lost for good."""
        if self._stop.is_set():
            return
        if self._acquirer is None:  # a previous run gave up on a lost camera: try it again
            with self._lock:
                if self._stop.is_set():
                    return
                self._open_locked()
        self._streaming = True
        try:
            self._start()
            last_frame = time.monotonic()
            pacer = Pacer(self.options.fps, self._stop)
            while not self._stop.is_set():
                if self.trigger_mode == "software" and not self._fire(pacer):
                    continue
                try:
                    got = self._grab()
                except SourceError:
                    raise
                except Exception as exc:  # harvesters/GenTL raise many types when a device goes
                    self._recover(f"{type(exc).__name__}: {exc}")
                    last_frame = time.monotonic()
                    continue
                if got is None:
                    idle = time.monotonic() - last_frame
                    # A triggered line may wait for parts indefinitely; free-run must not.
                    if not self.triggered and idle > self.options.fetch_timeout_s:
                        self._recover(f"no frame for {idle:.1f} s")
                        last_frame = time.monotonic()
                    continue
                last_frame = time.monotonic()
                image, meta = got
                if image is None:
                    frame = Frame.unreadable(
                        self._next_id, time.time(), self.name, meta["error"], meta
                    )
                else:
                    frame = Frame(image, self._next_id, time.time(), self.name, meta)
                    self.stats.delivered += 1
                self._next_id += 1
                yield frame
        finally:
            self._streaming = False
            self._stop_or_release()

    def trigger(self) -> None:
        """Execute TriggerSoftware once (for callers that fire the trigger themselves)."""
        acquirer = self._acquirer
        if acquirer is not None and acquirer.remote_device.node_map.has_node("TriggerSoftware"):
            acquirer.remote_device.node_map.TriggerSoftware.execute()

    def close(self) -> None:
        """Stop from any thread: ``frames()`` returns within about POLL_S and frees the camera."""
        self._stop.set()
        if not self._streaming:
            self._stop_or_release()

    # -- internals -------------------------------------------------------------------------------

    def _open_locked(self) -> None:
        acquirer, info = _HUB.open(self.device, self.ctis)
        try:
            unsupported = apply_settings(
                acquirer.remote_device.node_map, self.options, self.trigger_mode, PIXEL_FORMATS
            )
        except SourceError:
            _HUB.release(acquirer)
            raise
        if unsupported != self.unsupported_settings:  # once, not again on every reconnect
            for setting, reason in unsupported.items():
                log.warning("%s (%s): %s not applied: %s", self.name, info.id, setting, reason)
        self.unsupported_settings = unsupported
        self.missing_controls = missing_controls(acquirer.remote_device.node_map)
        acquirer.add_callback(acquirer.Events.INCOMPLETE_BUFFER, _incomplete_counter(self))
        self._acquirer, self.device_info = acquirer, info

    def _start(self) -> None:
        acquirer = self._acquirer
        if acquirer is not None and not acquirer.is_acquiring():
            acquirer.start()

    def _grab(self) -> tuple[Any, dict[str, Any]] | None:
        """(image, metadata); (None, {"error": why}) for a broken buffer; None for no buffer."""
        acquirer = self._acquirer
        if acquirer is None or not acquirer.is_valid():
            raise _DeviceGone("image acquirer is no longer valid (device closed)")
        buffer = acquirer.try_fetch(timeout=POLL_S)
        self._count_incomplete()
        if buffer is None:
            return None
        with buffer:  # hands the buffer back to the driver on exit: copy before leaving
            if not buffer.is_complete():
                # Acquired but broken: it becomes an ERROR verdict, not a silent gap (a
                # triggered part must never go without an answer).
                return None, {"error": "incomplete camera buffer"}
            component = buffer.payload.components[0]
            image, meta = convert_component(component)
        meta.update(device=self.device_info.id if self.device_info else self.device)
        return image, meta

    def _fire(self, pacer: Pacer) -> bool:
        if not pacer.wait():
            return False
        try:
            self.trigger()
        except Exception as exc:
            self._recover(f"TriggerSoftware failed: {exc}")
            return False
        return True

    def _count_incomplete(self) -> None:
        if self._incomplete:
            n, self._incomplete = self._incomplete, 0
            self.stats.skipped += n
            message = f"{self.name}: {n} incomplete buffer(s) discarded"
            log.warning("%s", message)
            record_error(self.stats, message)

    def _recover(self, reason: str) -> None:
        message = f"{self.name}: camera lost ({reason}); reconnecting"
        log.error("%s", message)
        record_error(self.stats, message)
        limit = self.options.reconnect_timeout_s
        deadline = time.monotonic() + limit
        delay = 0.1
        last_error = reason
        with self._lock:
            self._release_locked()
        while not self._stop.is_set():
            try:
                with self._lock:
                    if self._stop.is_set():
                        return
                    self._open_locked()
                self._start()
            except Exception as exc:
                last_error = str(exc)
                with self._lock:
                    self._release_locked()
            else:
                self.stats.reconnects += 1
                log.info("%s: reconnected (%d so far)", self.name, self.stats.reconnects)
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                message = (
                    f"{self.name}: camera lost and not reopened within {limit:g} s"
                    f" (first: {reason}; last: {last_error})"
                )
                record_error(self.stats, message)
                raise SourceError(message)
            self._stop.wait(min(delay, remaining))  # the last attempt lands on the deadline
            delay = min(delay * 2, 2.0)

    def _stop_or_release(self) -> None:
        with self._lock:
            if self._stop.is_set():
                self._release_locked()
            elif self._acquirer is not None:
                # frames() left early (consumer stopped iterating): pause streaming, keep the device
                try:
                    self._acquirer.stop()
                except Exception as exc:
                    log.debug("stopping acquisition: %s", exc)

    def _release_locked(self) -> None:
        acquirer, self._acquirer = self._acquirer, None
        if acquirer is not None:
            _HUB.release(acquirer)


def _incomplete_counter(source: GenICamSource) -> Any:
    """harvesters Callback for INCOMPLETE_BUFFER: try_fetch drops those buffers and returns None.

    Built here so that importing this module does not import harvesters (its version lookup
    runs git and costs start-up time even when no camera is used).
    """
    from harvesters.core import Callback

    class IncompleteCounter(Callback):
        def emit(self, context: Any = None) -> None:
            source._incomplete += 1

    return IncompleteCounter()


# -- pixel formats ---------------------------------------------------------------------------------


def convert_component(component: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """A harvesters image component (borrowed memory) -> an owned frame-layout array + metadata."""
    fmt = str(component.data_format)
    width, height = int(component.width), int(component.height)
    data = component.data
    if fmt == "Mono8" or fmt in _MONO16_BITS:
        channels, bits = 1, _MONO16_BITS.get(fmt, 8)
    elif fmt in _COLOUR:
        channels, bits = (3 if fmt in ("RGB8", "BGR8") else 4), 8
    else:
        raise SourceError(
            f"camera pixel format {fmt} is not supported (use one of {', '.join(PIXEL_FORMATS)})"
        )
    rows = _rows(data, width * channels, height, fmt)
    image: np.ndarray  # uint8 or uint16, by the format
    if channels == 1 and bits == 8:
        image = np.array(rows, dtype=np.uint8, copy=True)
    elif channels == 1:
        image = rows.astype(np.uint16)  # the copy
        if bits < 16:
            image <<= 16 - bits
    else:
        pixels = rows.reshape(height, width, channels)
        code = _COLOUR[fmt]
        image = np.array(pixels, copy=True) if code is None else cv2.cvtColor(pixels, code)
    # Mono10/12/14 are shifted into the top of the 16-bit container above, so the frame's
    # significant range is 16 bits whatever the camera's own depth (kept as camera_bits).
    depth = 8 if bits == 8 else 16
    return np.ascontiguousarray(image), {
        "pixel_format": fmt,
        "bit_depth": depth,
        "camera_bits": bits,
    }


def _rows(data: np.ndarray, row_values: int, height: int, fmt: str) -> np.ndarray:
    if data is None or data.size < row_values * height:
        size = 0 if data is None else data.size
        raise _DeviceGone(f"{fmt} buffer holds {size} values, expected {row_values * height}")
    if data.size == row_values * height:
        return data.reshape(height, row_values)
    # Line padding: rows are longer than the pixels; keep the pixels only.
    if data.size % height:
        raise _DeviceGone(f"{fmt} buffer of {data.size} values does not split into {height} rows")
    return data.reshape(height, -1)[:, :row_values]
