"""Turn a camera/file frame into what the model was trained on, as the model card says.

Order: normalise to float32 [0, 1] first, then convert channels, then resize. Resizing in float
avoids rounding the down-scaled frame back to 8 bits, so training (which uses this same module)
and the station see identical inputs.

Bit depth: integer pixels are divided by the full scale of their declared bit depth,
``2**bit_depth - 1`` (a 12-bit camera in a 16-bit container: 4095, not 65535). Without a declared
depth the container's is used (uint8: 255, uint16: 65535). Values above the declared range are
clipped to 1.

Memory: :func:`to_model_input` makes full-size float copies (fine for tiles and training crops).
For large frames :func:`engines.predict.predict_maps` instead converts tile by tile
(:func:`tile_to_input`) or, when the card scales the frame down, in bands of rows
(:func:`scaled_model_input`), so no full-resolution float32 copy of the frame exists.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from engines.card import ModelCard

_CONTAINER_BITS = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}
BIT_DEPTHS = (8, 10, 12, 14, 16)
# Rows converted to float at a time when a frame is scaled down band by band (bounds the
# temporary float copy to about this many rows of the frame).
_BAND_ROWS = 512


def full_scale(dtype: np.dtype, bit_depth: int | None = None) -> int:
    """The value that means 1.0: ``2**bit_depth - 1`` (default: the container's depth).

    Raises
    ------
    ValueError
        ``bit_depth`` is not one of 8, 10, 12, 14, 16, exceeds the container (12-bit data cannot
        come in uint8), or ``dtype`` is not uint8 / uint16.
    """
    container = _CONTAINER_BITS.get(np.dtype(dtype))
    if container is None:
        raise ValueError(f"unsupported image dtype {dtype} (expected uint8 or uint16)")
    if bit_depth is None:
        return 2**container - 1
    if bit_depth not in BIT_DEPTHS:
        raise ValueError(f"bit depth {bit_depth} is not one of {', '.join(map(str, BIT_DEPTHS))}")
    if bit_depth > container:
        raise ValueError(
            f"the frame is {container}-bit ({np.dtype(dtype)}) but the declared bit depth is"
            f" {bit_depth}: check [source] bit_depth in the recipe"
        )
    return 2**bit_depth - 1


def to_unit_float(image: NDArray, bit_depth: int | None = None) -> NDArray[np.float32]:
    """Integers / ``2**bit_depth - 1`` (default uint8 / 255, uint16 / 65535), clipped to [0, 1];
    float input is taken as already in [0, 1] (and clipped).

    Raises
    ------
    ValueError
        For any other dtype (e.g. int32, bool), which no camera or image file here produces, or a
        declared bit depth the container cannot hold (see :func:`full_scale`).
    """
    dtype = image.dtype
    if dtype in _CONTAINER_BITS:
        full = full_scale(dtype, bit_depth)
        out = image.astype(np.float32) * np.float32(1.0 / full)
        if full < 2 ** _CONTAINER_BITS[dtype] - 1:
            np.minimum(out, 1.0, out=out)  # stray values above the declared range
        return out
    if dtype.kind == "f":
        return np.clip(image, 0.0, 1.0).astype(np.float32, copy=False)
    raise ValueError(f"unsupported image dtype {dtype} (expected uint8, uint16 or float)")


def to_channels(image: NDArray[np.float32], channels: int) -> NDArray[np.float32]:
    """HxW, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA) -> HxWx``channels`` (1 = grey, 3 = BGR)."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"unsupported image shape {image.shape} (expected HxW, HxWx1/3/4)")
    have = image.shape[2]
    if have == 4:  # alpha carries nothing the model was trained on
        image, have = np.ascontiguousarray(image[:, :, :3]), 3
    if have == channels:
        return image
    if channels == 1:
        grey: NDArray[Any] = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)  # float32 stays float32
        return grey[:, :, None]
    if channels == 3:
        return np.repeat(image, 3, axis=2)
    raise ValueError(f"card asks for {channels} channels (1 or 3 supported)")


def scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """Frame size after ``frame_scale`` (rounded, at least one pixel)."""
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize(image: NDArray[np.float32], h: int, w: int) -> NDArray[np.float32]:
    """Resize HxWxC to ``h x w``: INTER_AREA when shrinking (no aliasing), linear when growing."""
    src_h, src_w = image.shape[:2]
    if (src_h, src_w) == (h, w):
        return image
    interp = cv2.INTER_AREA if h * w < src_h * src_w else cv2.INTER_LINEAR
    out: NDArray[Any] = cv2.resize(image, (w, h), interpolation=interp)  # float32 stays float32
    if out.ndim == 2 and image.ndim == 3:  # OpenCV drops a trailing channel axis of 1
        out = out[:, :, None]
    return out


def tile_to_input(
    tile: NDArray, channels: int, bit_depth: int | None = None
) -> NDArray[np.float32]:
    """One raw tile (or band) -> float32 ``H x W x channels`` in [0, 1] (no resizing)."""
    return to_channels(to_unit_float(np.asarray(tile), bit_depth), channels)


def scaled_model_input(
    image: NDArray, card: ModelCard, bit_depth: int | None = None
) -> NDArray[np.float32]:
    """``to_model_input`` for a frame the card scales (``frame_scale != 1``), with bounded memory.

    When the frame divides exactly into ``k x k`` blocks (``k = 1 / frame_scale`` an integer, the
    usual 1/2, 1/4, 1/8), bands of rows are converted to float and area-averaged one at a time,
    so only the scaled result and one band exist in float; each output pixel depends only on its
    own block, so the result equals the whole-frame resize. Other scales (non-integer, growing,
    or sizes that do not divide) convert the whole frame as :func:`to_model_input` does.
    """
    h, w = image.shape[:2]
    sh, sw = scaled_size(h, w, card.frame_scale)
    k = h // sh if sh else 0
    if not (k > 1 and sh * k == h and sw * k == w):
        return to_model_input(image, card, bit_depth)
    out = np.empty((sh, sw, card.channels), dtype=np.float32)
    band = max(1, _BAND_ROWS // k) * k  # whole blocks per band
    for y in range(0, h, band):
        part = tile_to_input(image[y : y + band], card.channels, bit_depth)
        rows = part.shape[0] // k
        out[y // k : y // k + rows] = resize(part, rows, sw)
    return out


def to_model_input(
    image: NDArray, card: ModelCard, bit_depth: int | None = None
) -> NDArray[np.float32]:
    """Prepare one frame for ``card``'s model.

    Parameters
    ----------
    image
        HxW / HxWx1 grey or HxWx3 BGR (HxWx4 BGRA: alpha dropped), uint8, uint16 or float in [0, 1].
    card
        The model card: ``channels`` and ``frame_scale`` are used.
    bit_depth
        Declared bit depth of integer pixels (see :func:`to_unit_float`); None = the container's.

    Returns
    -------
    ndarray
        float32 ``H' x W' x card.channels`` in [0, 1], with ``H' = round(H * frame_scale)``. Not
        yet tiled: frames of any size are accepted (see :mod:`engines.tiling`).
    """
    unit = to_unit_float(np.asarray(image), bit_depth)
    chan = to_channels(unit, card.channels)
    if card.frame_scale != 1.0:
        h, w = scaled_size(chan.shape[0], chan.shape[1], card.frame_scale)
        chan = resize(chan, h, w)
    return np.ascontiguousarray(chan, dtype=np.float32)
