"""Reading image files into frame layout, with a clear reason for every file that can't be used.

Frame layout: H x W (grey) or H x W x 3 (BGR), uint8 or uint16, C-contiguous. Files are read as
bytes and decoded with ``cv2.imdecode`` (``cv2.imread`` can't open non-ASCII paths on Windows).
The image size is checked from the file header before decoding, so a file claiming to be
100k x 100k pixels is refused without allocating gigabytes.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from app.station.sources.spec import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff"})

Image = NDArray[np.uint8] | NDArray[np.uint16]


class ImageReadError(ValueError):
    """A file is not a usable image; the message names the file and the reason."""


def read_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image:
    """Read ``path`` into frame layout or raise ImageReadError saying why not.

    8- and 16-bit grey or colour are kept as they are; alpha is dropped; float images with values
    in [0, 1] become uint16 (logged); other depths are refused.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    return decode_image(data, name=str(path), max_pixels=max_pixels)


def decode_image(
    data: bytes, *, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image:
    """Decode encoded image bytes (PNG, BMP, JPEG, TIFF ...) into frame layout."""
    if not data:
        raise ImageReadError(f"{name}: empty file (0 bytes)")
    size = header_size(data)
    if size is not None:
        _check_pixels(name, size[0], size[1], max_pixels)
    if data[:2] == b"\xff\xd8" and not _jpeg_complete(data):
        # libjpeg decodes a cut-off file with grey rows and only a warning; refuse it instead.
        raise ImageReadError(f"{name}: truncated JPEG (no end-of-image marker)")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageReadError(f"{name}: cannot decode ({_first_line(str(exc))})") from exc
    if image is None or image.size == 0:
        raise ImageReadError(
            f"{name}: not a readable image (corrupt, truncated or unsupported format)"
        )
    _check_pixels(name, image.shape[1], image.shape[0], max_pixels)
    return to_frame_layout(image, name=name)


def to_frame_layout(image: np.ndarray, *, name: str = "<image>") -> Image:
    """Channels to grey/BGR, depth to uint8/uint16, memory to C order (a new array if needed)."""
    if image.ndim == 3:
        channels = image.shape[2]
        if channels == 1:
            image = image[:, :, 0]
        elif channels == 2:  # grey + alpha
            image = image[:, :, 0]
        elif channels == 4:
            image = image[:, :, :3]  # BGRA -> BGR: OpenCV already returns BGR order
        elif channels != 3:
            raise ImageReadError(f"{name}: {channels} channels (expected 1, 3 or 4)")
    elif image.ndim != 2:
        raise ImageReadError(f"{name}: unexpected array shape {image.shape}")
    if image.dtype in (np.uint8, np.uint16):
        return np.ascontiguousarray(image)
    if image.dtype.kind == "f":
        return _float_to_uint16(image, name)
    raise ImageReadError(
        f"{name}: {image.dtype} pixels are not supported (save the image as 8- or 16-bit)"
    )


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, BMP, JPEG or TIFF header; None when unknown or unreadable."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return w, h
        if data[:2] == b"BM" and len(data) >= 26:
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)  # negative height = top-down rows
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_size(data)
    except struct.error:
        return None  # too short to hold the header: the decoder will say it is corrupt
    return None


def _check_pixels(name: str, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageReadError(
            f"{name}: image too large ({width} x {height} = {width * height / 1e6:.6g} megapixels;"
            f" the limit is {max_pixels / 1e6:.6g} megapixels)"
        )


def _float_to_uint16(image: np.ndarray, name: str) -> NDArray[np.uint16]:
    lo, hi = (float(image.min()), float(image.max())) if image.size else (0.0, 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0.0 or hi > 1.0:
        raise ImageReadError(
            f"{name}: float image with values in [{lo:g}, {hi:g}]; only [0, 1] has a known"
            " scale (save it as 8- or 16-bit)"
        )
    log.info("%s: float image converted to 16-bit (values scaled from [0, 1])", name)
    return np.ascontiguousarray(np.round(image * 65535.0).astype(np.uint16))


def _jpeg_complete(data: bytes) -> bool:
    # Some writers pad after EOI with zeros or newlines.
    return data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9")


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        # SOF0..SOF15 carry the size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return w, h
        pos += 2 + length
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    endian = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack(endian + "I", data[4:8])
    (count,) = struct.unpack(endian + "H", data[ifd : ifd + 2])
    size: dict[int, int] = {}
    for i in range(count):
        entry = data[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
        tag, typ = struct.unpack(endian + "HH", entry[:4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            fmt = "H" if typ == 3 else "I"
            (size[tag],) = struct.unpack(endian + fmt, entry[8 : 10 if typ == 3 else 12])
    if 256 in size and 257 in size:
        return size[256], size[257]
    return None


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text)
