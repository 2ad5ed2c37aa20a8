"""Frame(s) in, full-resolution probability map(s) out: scale, tile, batch, infer, stitch, resize.

This is the one place that knows how a frame of any size meets a fixed-size network; the station's
inference worker, the validation panel and training's evaluation all call it, so they agree.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from engines.preprocess import resize, to_model_input
from engines.protocol import Engine
from engines.tiling import Position, extract_tiles, stitch, tile_grid

DEFAULT_MAX_BATCH = 16


def default_overlap(tile_h: int, tile_w: int) -> int:
    """An eighth of the smaller tile side (at least 1 px when the tile allows it).

    A U-Net's output is least reliable within a receptive-field margin of a tile edge; 1/8 of a
    256 tile (32 px) covers TinyUNet's three pooling levels while costing few extra tiles.
    """
    return min(max(1, min(tile_h, tile_w) // 8), min(tile_h, tile_w) - 1)


@dataclass
class _Pending:
    """One frame in flight: its tiling plan and the tile outputs received so far."""

    orig_hw: tuple[int, int]
    scaled_hw: tuple[int, int]
    positions: list[Position]
    outputs: list[NDArray[np.float32]] = field(default_factory=list)


def predict_maps(
    engine: Engine,
    images: Iterable[NDArray],
    *,
    overlap: int | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> list[NDArray[np.float32]]:
    """Probability maps for several frames, their tiles batched together.

    Tiles stream through ``engine.infer`` in batches of ``max_batch`` that may span frames; a
    frame is stitched as soon as its last tile is back, so memory stays bounded by one batch
    plus the frames in flight even for a whole validation folder.

    Parameters
    ----------
    engine
        Any :class:`~engines.protocol.Engine`; its card gives input size, channels and scale.
    images
        Frames (HxW / HxWxC, uint8, uint16 or float in [0, 1]); sizes may differ. Any iterable
        (a generator reading files is fine).
    overlap
        Tile overlap in model-input pixels; default :func:`default_overlap`.
    max_batch
        Most tiles per ``engine.infer`` call.

    Returns
    -------
    list of ndarray
        One float32 ``H x W`` map per frame, in input order, at its ORIGINAL resolution.
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, not {max_batch}")
    card = engine.card
    th, tw = card.input_height, card.input_width
    ov = default_overlap(th, tw) if overlap is None else overlap

    maps: list[NDArray[np.float32]] = []
    in_flight: deque[_Pending] = deque()  # frames whose tiles are queued or partly inferred
    queue: list[NDArray[np.float32]] = []  # tiles not yet inferred, in frame order

    def run(batch_tiles: list[NDArray[np.float32]]) -> None:
        probs = np.asarray(engine.infer(np.stack(batch_tiles)), dtype=np.float32)[..., 0]
        i = 0
        for frame in in_flight:  # hand the outputs to the oldest incomplete frames, in order
            need = len(frame.positions) - len(frame.outputs)
            take = min(need, len(probs) - i)
            frame.outputs.extend(probs[i : i + take])
            i += take
            if i == len(probs):
                break
        while in_flight and len(in_flight[0].outputs) == len(in_flight[0].positions):
            done = in_flight.popleft()
            stitched = stitch(np.stack(done.outputs), done.positions, *done.scaled_hw, ov)
            maps.append(resize(stitched[:, :, None], *done.orig_hw)[:, :, 0])

    for image in images:
        x = to_model_input(image, card)
        positions = tile_grid(x.shape[0], x.shape[1], th, tw, ov)
        h, w = np.shape(image)[:2]
        in_flight.append(_Pending((h, w), (x.shape[0], x.shape[1]), positions))
        queue.extend(extract_tiles(x, positions, th, tw))
        while len(queue) >= max_batch:
            run(queue[:max_batch])
            del queue[:max_batch]
    if queue:
        run(queue)
    return maps


def predict_map(
    engine: Engine,
    image: NDArray,
    *,
    overlap: int | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> NDArray[np.float32]:
    """Probability map of one frame at its original resolution (see :func:`predict_maps`)."""
    return predict_maps(engine, [image], overlap=overlap, max_batch=max_batch)[0]
