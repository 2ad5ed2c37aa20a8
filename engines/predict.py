"""Frame(s) in, full-resolution probability map(s) out: scale, tile, batch, infer, stitch, resize.

This is the one place that knows how a frame of any size meets a fixed-size network; the station's
inference worker, the validation panel and training's evaluation all call it, so they agree.

:func:`predict_class_maps` is the same path for a multi-class model: the defect map as
:func:`predict_maps` returns it, plus the ``H x W x K`` class-probability map stitched the same
way, for the judge (``judge(prob, rules, class_prob=..., class_names=card.class_names)``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from engines.preprocess import resize, scaled_model_input, tile_to_input
from engines.protocol import Engine
from engines.tiling import Position, Stitcher, pad_to_tile, tile_grid

DEFAULT_MAX_BATCH = 16


def default_overlap(tile_h: int, tile_w: int) -> int:
    """An eighth of the smaller tile side (at least 1 px when the tile allows it).

    A U-Net's output is least reliable within a receptive-field margin of a tile edge; 1/8 of a
    256 tile (32 px) covers TinyUNet's three pooling levels while costing few extra tiles.
    """
    return min(max(1, min(tile_h, tile_w) // 8), min(tile_h, tile_w) - 1)


@dataclass
class _Pending:
    """One frame in flight: its original size and the stitcher its tile outputs go to."""

    orig_hw: tuple[int, int]
    stitcher: Stitcher
    classes: Stitcher | None = None  # the class-probability map of a multi-class model


def _model_source(
    image: NDArray, engine: Engine, bit_depth: int | None
) -> tuple[NDArray, bool, tuple[int, int]]:
    """What tiles are cut from: the raw frame (converted per tile) or the scaled float frame.

    Returns the source, whether its tiles still need converting, and the model-resolution size.
    """
    card = engine.card
    image = np.asarray(image)
    h, w = image.shape[:2]
    if card.frame_scale == 1.0:
        return image, True, (h, w)
    x = scaled_model_input(image, card, bit_depth)
    return x, False, (x.shape[0], x.shape[1])


def _tiles(
    source: NDArray,
    convert: bool,
    positions: list[Position],
    th: int,
    tw: int,
    channels: int,
    bit_depth: int | None,
) -> Iterator[NDArray[np.float32]]:
    padded = pad_to_tile(source, th, tw)  # a copy only for frames smaller than a tile
    for y, x in positions:
        tile = padded[y : y + th, x : x + tw]
        if convert:
            yield tile_to_input(tile, channels, bit_depth)
        else:  # a copy, so the scaled frame can be freed while its last batch is inferred
            yield np.array(tile if tile.ndim == 3 else tile[:, :, None])


def predict_maps(
    engine: Engine,
    images: Iterable[NDArray],
    *,
    overlap: int | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    bit_depths: Sequence[int | None] | int | None = None,
) -> list[NDArray[np.float32]]:
    """Probability maps for several frames, their tiles batched together.

    Tiles stream through ``engine.infer`` in batches of ``max_batch`` that may span frames; each
    tile is cut from the frame, converted to float on its own, inferred, and blended into its
    frame's float32 accumulator at model resolution (:class:`~engines.tiling.Stitcher`). No
    full-resolution float copy of a frame is made (a frame the card scales down is converted in
    bands, see :func:`~engines.preprocess.scaled_model_input`); the only full-size float array
    is the returned map. Peak memory per frame is therefore about the frame itself, plus 4 bytes
    per model-resolution pixel, plus 4 bytes per frame pixel for the result when it is scaled
    back, plus one batch of tiles.

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
    bit_depths
        Declared bit depth of integer frames (8, 10, 12, 14, 16): one value for all frames, or one
        per frame (None = the container's depth, e.g. 65535 for uint16).

    Returns
    -------
    list of ndarray
        One float32 ``H x W`` map per frame, in input order, at its ORIGINAL resolution.
    """
    return [prob for prob, _ in _predict(engine, images, overlap, max_batch, bit_depths, None)]


InferClasses = Callable[[NDArray[np.float32]], tuple[NDArray[np.float32], NDArray[np.float32]]]


def class_inference(engine: Engine) -> InferClasses | None:
    """The engine's ``infer_classes`` when its model has a class output, else None.

    ``infer_classes(batch) -> (N x H x W x 1 defect probabilities, N x H x W x K class
    probabilities)`` is an optional engine method: the ONNX Runtime engine has it; an engine
    without it (or a one-class model) yields no class map and the judge classifies nothing.
    """
    fn = getattr(engine, "infer_classes", None)
    return fn if engine.card.multiclass and callable(fn) else None


def predict_class_maps(
    engine: Engine,
    images: Iterable[NDArray],
    *,
    overlap: int | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    bit_depths: Sequence[int | None] | int | None = None,
) -> list[tuple[NDArray[np.float32], NDArray[np.float32] | None]]:
    """``(defect map, class map)`` per frame; see :func:`predict_maps` for the arguments.

    The defect map is exactly what :func:`predict_maps` returns. The class map is ``H x W x K``
    float32 (channel k = ``engine.card.class_names[k]``), at the frame's original resolution,
    or None when the engine has no class output (:func:`class_inference`).
    """
    return _predict(engine, images, overlap, max_batch, bit_depths, class_inference(engine))


def _predict(
    engine: Engine,
    images: Iterable[NDArray],
    overlap: int | None,
    max_batch: int,
    bit_depths: Sequence[int | None] | int | None,
    infer_classes: InferClasses | None,
) -> list[tuple[NDArray[np.float32], NDArray[np.float32] | None]]:
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, not {max_batch}")
    card = engine.card
    th, tw = card.input_height, card.input_width
    ov = default_overlap(th, tw) if overlap is None else overlap
    k = len(card.class_names)

    maps: list[tuple[NDArray[np.float32], NDArray[np.float32] | None]] = []
    in_flight: deque[_Pending] = deque()  # frames whose tiles are queued or being inferred
    batch: list[NDArray[np.float32]] = []
    owners: list[tuple[_Pending, Position]] = []

    def run() -> None:
        x = np.stack(batch)
        if infer_classes is None:
            probs, classes = np.asarray(engine.infer(x), dtype=np.float32)[..., 0], None
        else:
            out, cls = infer_classes(x)
            probs = np.asarray(out, dtype=np.float32)[..., 0]
            classes = np.asarray(cls, dtype=np.float32)
            if classes.shape != (*probs.shape, k):
                raise ValueError(
                    f"class output of shape {classes.shape}, expected "
                    f"{'x'.join(map(str, (*probs.shape, k)))} ({k} class names in the card)"
                )
        for i, (pending, position) in enumerate(owners):
            pending.stitcher.add(probs[i], position)
            if pending.classes is not None and classes is not None:
                pending.classes.add(classes[i], position)
        batch.clear()
        owners.clear()
        while in_flight and in_flight[0].stitcher.complete:
            done = in_flight.popleft()
            model_map = done.stitcher.result()
            if model_map.shape != done.orig_hw:
                model_map = resize(model_map[:, :, None], *done.orig_hw)[:, :, 0]
            class_map = done.classes.result() if done.classes is not None else None
            if class_map is not None and class_map.shape[:2] != done.orig_hw:
                class_map = resize(class_map, *done.orig_hw)
            maps.append((model_map, class_map))

    for index, image in enumerate(images):
        if isinstance(bit_depths, int) or bit_depths is None:
            depth = bit_depths
        else:
            depth = bit_depths[index]
        source, convert, (sh, sw) = _model_source(image, engine, depth)
        positions = tile_grid(sh, sw, th, tw, ov)
        h, w = np.shape(image)[:2]
        stitcher = Stitcher(sh, sw, th, tw, ov, positions)
        classes = None
        if infer_classes is not None:
            classes = Stitcher(sh, sw, th, tw, ov, positions, channels=k)
        pending = _Pending((h, w), stitcher, classes)
        in_flight.append(pending)
        for tile, position in zip(
            _tiles(source, convert, positions, th, tw, card.channels, depth),
            positions,
            strict=True,
        ):
            batch.append(tile)
            owners.append((pending, position))
            if len(batch) >= max_batch:
                run()
        del source  # the scaled float frame is not needed once its tiles are cut
    if batch:
        run()
    return maps


def predict_map(
    engine: Engine,
    image: NDArray,
    *,
    overlap: int | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    bit_depth: int | None = None,
) -> NDArray[np.float32]:
    """Probability map of one frame at its original resolution (see :func:`predict_maps`)."""
    return predict_maps(
        engine, [image], overlap=overlap, max_batch=max_batch, bit_depths=bit_depth
    )[0]
