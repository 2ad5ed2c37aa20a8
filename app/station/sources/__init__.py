"""Frame sources: an image folder, a GenICam camera (harvesters), a video file or USB camera.

``open_source("folder:PATH" | "genicam:DEVICE[@CTI]" | "video:PATH|INDEX", settings=...)``
returns an opened ``Source``; every problem is a ``SourceError`` saying what and why.
"""

from __future__ import annotations

from app.station.sources.base import Source, SourceError, SourceStats
from app.station.sources.devices import DeviceInfo, default_ctis, list_devices
from app.station.sources.folder import FolderSource
from app.station.sources.genicam import PIXEL_FORMATS, GenICamSource
from app.station.sources.imageio import IMAGE_SUFFIXES, ImageReadError, read_image
from app.station.sources.spec import CameraSettings, SourceOptions, SourceSpec, parse_spec
from app.station.sources.video import VideoSource

__all__ = [
    "IMAGE_SUFFIXES",
    "PIXEL_FORMATS",
    "CameraSettings",
    "DeviceInfo",
    "FolderSource",
    "GenICamSource",
    "ImageReadError",
    "Source",
    "SourceError",
    "SourceOptions",
    "SourceSpec",
    "SourceStats",
    "VideoSource",
    "default_ctis",
    "list_devices",
    "open_source",
    "parse_spec",
    "read_image",
]


def open_source(spec: str, *, settings: SourceOptions | None = None) -> Source:
    """Open the source ``spec`` names, with ``settings`` (defaults: as fast as possible, no loop).

    Raises SourceError for a malformed spec, a missing folder/file/device or settings the
    camera refuses.
    """
    parsed = parse_spec(spec)
    options = settings or SourceOptions()
    if parsed.kind == "folder":
        return FolderSource(parsed.target, options=options)
    if parsed.kind == "genicam":
        ctis = (parsed.cti,) if parsed.cti else ()
        return GenICamSource(parsed.target, ctis=ctis, options=options)
    return VideoSource(parsed.target, options=options)
