"""Cut frames larger than the model input into overlapping tiles and blend the outputs back.

Every tile is weighted by a separable ramp that is 1 in its interior and falls towards its edges
over the overlap, but never reaches 0. The stitched map is ``sum(w_i * tile_i) / sum(w_i)``, so
an identity model reproduces the input exactly (to float rounding) while tile seams, where a
U-Net sees the least context, count less than the centres of the neighbouring tiles.

A frame smaller than a tile (in either dimension) is reflect-padded up to the tile size; the
padding is cropped off again by :func:`stitch`.

:class:`Stitcher` is the streaming form used by :func:`engines.predict.predict_maps`: tiles are
added one batch at a time into a single float32 accumulator, and the weight sum is not stored
per pixel at all: the grid is a product of row starts and column starts and every weight is an
outer product of two ramps, so the sum of weights is ``outer(rows, cols)`` and two 1-D arrays
hold it. Memory: 4 bytes per map pixel, whatever the number of tiles.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

Position = tuple[int, int]


def _axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    # The last tile is pinned to the far edge so no tile hangs over the frame; it may overlap its
    # neighbour by more than ``overlap``, which the normalised blend handles.
    starts.append(length - tile)
    return starts


def _check(tile_h: int, tile_w: int, overlap: int) -> None:
    if tile_h <= 0 or tile_w <= 0:
        raise ValueError(f"tile size {tile_h}x{tile_w} must be positive")
    if overlap < 0 or overlap >= min(tile_h, tile_w):
        raise ValueError(f"overlap {overlap} must be in [0, {min(tile_h, tile_w)})")


def tile_grid(h: int, w: int, th: int, tw: int, overlap: int) -> list[Position]:
    """Top-left corners of the tiles covering an ``h x w`` frame.

    Parameters
    ----------
    h, w
        Frame size in pixels.
    th, tw
        Tile (model input) size.
    overlap
        Minimum overlap between neighbouring tiles, in pixels; ``0 <= overlap < min(th, tw)``.

    Returns
    -------
    list of (y, x)
        Row-major tile positions. A dimension not larger than the tile yields the single start 0
        (the frame is padded to the tile size by :func:`extract_tiles`).
    """
    if h <= 0 or w <= 0:
        raise ValueError(f"frame size {h}x{w} must be positive")
    _check(th, tw, overlap)
    return [(y, x) for y in _axis_starts(h, th, overlap) for x in _axis_starts(w, tw, overlap)]


def pad_to_tile(image: NDArray, th: int, tw: int) -> NDArray:
    """Reflect-pad ``image`` (HxW or HxWxC) at the bottom/right up to at least ``th x tw``."""
    h, w = image.shape[:2]
    pad_h, pad_w = max(0, th - h), max(0, tw - w)
    if pad_h == 0 and pad_w == 0:
        return image
    pads = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (image.ndim - 2)
    # 'reflect' needs at least two pixels along an axis; a one-pixel line is repeated instead.
    mode: Literal["reflect", "symmetric"] = "reflect" if min(h, w) > 1 else "symmetric"
    return np.pad(image, pads, mode=mode)


def extract_tiles(image: NDArray, positions: list[Position], th: int, tw: int) -> NDArray:
    """Cut tiles at ``positions`` (from :func:`tile_grid`) out of ``image``.

    Parameters
    ----------
    image
        HxW or HxWxC array; padded by reflection when smaller than a tile.
    positions
        Tile corners from :func:`tile_grid` for this image's size.
    th, tw
        Tile size.

    Returns
    -------
    ndarray
        ``N x th x tw (x C)`` array of the same dtype, a copy.
    """
    padded = pad_to_tile(image, th, tw)
    return np.stack([padded[y : y + th, x : x + tw] for y, x in positions])


def _ramp(tile: int, overlap: int) -> NDArray[np.float64]:
    i = np.arange(tile, dtype=np.float64)
    # Rises linearly over ``overlap`` pixels from 1/(overlap+1) and falls the same way: strictly
    # positive, so every covered pixel has a nonzero weight sum.
    return np.minimum(1.0, np.minimum(i + 1, tile - i) / (overlap + 1))


def tile_weights(th: int, tw: int, overlap: int) -> NDArray[np.float32]:
    """The ``th x tw`` blending weight of one tile (separable ramp, strictly positive)."""
    _check(th, tw, overlap)
    return np.outer(_ramp(th, overlap), _ramp(tw, overlap)).astype(np.float32)


def stitch(
    tiles: NDArray, positions: list[Position], h: int, w: int, overlap: int
) -> NDArray[np.float32]:
    """Blend tiles back into one ``h x w (x C)`` float32 map.

    Parameters
    ----------
    tiles
        ``N x th x tw`` or ``N x th x tw x C`` outputs, in the order of ``positions``.
    positions
        The corners used by :func:`extract_tiles`.
    h, w
        Original (unpadded) frame size; padding is cropped away.
    overlap
        The overlap passed to :func:`tile_grid` (sets the blending ramp's width).

    Returns
    -------
    ndarray
        float32 map; where tiles overlap it is their weighted mean, so identical tiles content
        stitches back to exactly that content.
    """
    if len(tiles) != len(positions):
        raise ValueError(f"{len(tiles)} tiles but {len(positions)} positions")
    th, tw = tiles.shape[1:3]
    full_h, full_w = max(h, th), max(w, tw)
    extra = tiles.shape[3:]
    acc = np.zeros((full_h, full_w, *extra), dtype=np.float64)
    norm = np.zeros((full_h, full_w), dtype=np.float64)
    weight = tile_weights(th, tw, overlap).astype(np.float64)
    weight_c = weight.reshape(th, tw, *([1] * len(extra)))
    for tile, (y, x) in zip(tiles, positions, strict=True):
        acc[y : y + th, x : x + tw] += weight_c * tile
        norm[y : y + th, x : x + tw] += weight
    norm = norm.reshape(full_h, full_w, *([1] * len(extra)))
    # Accumulating in float64 keeps the identity round trip exact to float32 precision.
    out = acc[:h, :w] / norm[:h, :w]
    return out.astype(np.float32)


class Stitcher:
    """Blend tile outputs into one ``h x w`` float32 map as they arrive (see the module doc).

    Parameters
    ----------
    h, w
        Map size (unpadded); tiles may hang over it when the map is smaller than a tile.
    th, tw
        Tile size.
    overlap
        The overlap passed to :func:`tile_grid` (sets the ramp width).
    positions
        The full grid from :func:`tile_grid` (rows x columns); every position must be added once.
    channels
        0 (default): ``th x tw`` tiles and an ``h x w`` map; ``C``: ``th x tw x C`` tiles and an
        ``h x w x C`` map (the class probabilities of a multi-class model).
    """

    def __init__(
        self,
        h: int,
        w: int,
        th: int,
        tw: int,
        overlap: int,
        positions: list[Position],
        channels: int = 0,
    ) -> None:
        _check(th, tw, overlap)
        self.h, self.w, self.th, self.tw = h, w, th, tw
        extra = (channels,) if channels else ()
        self._acc = np.zeros((max(h, th), max(w, tw), *extra), dtype=np.float32)
        self._ry = _ramp(th, overlap).astype(np.float32)
        self._rx = _ramp(tw, overlap).astype(np.float32)
        self._weight = np.outer(self._ry, self._rx)
        if channels:
            self._weight = self._weight[:, :, None]
        # Separable weight sum: sum over the grid of ry(y - y_i) * rx(x - x_j).
        self._row_norm = np.zeros(self._acc.shape[0], dtype=np.float64)
        self._col_norm = np.zeros(self._acc.shape[1], dtype=np.float64)
        for y in sorted({y for y, _ in positions}):
            self._row_norm[y : y + th] += self._ry
        for x in sorted({x for _, x in positions}):
            self._col_norm[x : x + tw] += self._rx
        self._expected = len(positions)
        self.added = 0

    @property
    def complete(self) -> bool:
        return self.added == self._expected

    def add(self, tile: NDArray, position: Position) -> None:
        """Accumulate one ``th x tw`` output tile at ``position``."""
        y, x = position
        self._acc[y : y + self.th, x : x + self.tw] += self._weight * tile
        self.added += 1

    def result(self) -> NDArray[np.float32]:
        """The blended map (divides the accumulator in place; call once, when complete)."""
        if not self.complete:
            raise ValueError(f"{self.added} of {self._expected} tiles added")
        out = self._acc[: self.h, : self.w]
        extra = (None,) * (out.ndim - 2)  # a channel axis broadcasts the same norms
        # In place, row factor then column factor: no second full-size array is made.
        out /= self._row_norm[(slice(0, self.h), None, *extra)].astype(np.float32)
        out /= self._col_norm[(None, slice(0, self.w), *extra)].astype(np.float32)
        return out if out.base is None else np.ascontiguousarray(out)
