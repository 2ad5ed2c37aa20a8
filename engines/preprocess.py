"""Turn a camera/file frame into what the model was trained on, as the model card says.

Order: normalise to float32 [0, 1] first, then convert channels, then resize. Resizing in float
avoids rounding the down-scaled frame back to 8 bits, so training (which uses this same module)
and the station see identical inputs.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from engines.card import ModelCard

_SCALE = {np.dtype(np.uint8): 1.0 / 255.0, np.dtype(np.uint16): 1.0 / 65535.0}


def to_unit_float(image: NDArray) -> NDArray[np.float32]:
    """uint8 / 255, uint16 / 65535; float input is taken as already in [0, 1] (and clipped).

    Raises
    ------
    ValueError
        For any other dtype (e.g. int32, bool), which no camera or image file here produces.
    """
    dtype = image.dtype
    if dtype in _SCALE:
        return image.astype(np.float32) * np.float32(_SCALE[dtype])
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
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[:, :, None]
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
    out = cv2.resize(image, (w, h), interpolation=interp)
    if out.ndim == 2 and image.ndim == 3:  # OpenCV drops a trailing channel axis of 1
        out = out[:, :, None]
    return out


def to_model_input(image: NDArray, card: ModelCard) -> NDArray[np.float32]:
    """Prepare one frame for ``card``'s model.

    Parameters
    ----------
    image
        HxW / HxWx1 grey or HxWx3 BGR (HxWx4 BGRA: alpha dropped), uint8, uint16 or float in [0, 1].
    card
        The model card: ``channels`` and ``frame_scale`` are used.

    Returns
    -------
    ndarray
        float32 ``H' x W' x card.channels`` in [0, 1], with ``H' = round(H * frame_scale)``. Not
        yet tiled: frames of any size are accepted (see :mod:`engines.tiling`).
    """
    unit = to_unit_float(np.asarray(image))
    chan = to_channels(unit, card.channels)
    if card.frame_scale != 1.0:
        h, w = scaled_size(chan.shape[0], chan.shape[1], card.frame_scale)
        chan = resize(chan, h, w)
    return np.ascontiguousarray(chan, dtype=np.float32)
