"""Model health: the golden self-test run at every load, and the per-frame output check.

A model card (schema 2) carries a *golden*: one real reference tile at the model's input size
(stored in the card as a base64 PNG, 8 or 16 bit as the frames are) and a compact fingerprint of
the probability map the model produced for it when it was exported. :func:`check_engine` runs
the tile through a freshly loaded engine and compares fingerprints, so weights corrupted on disk,
a wrong execution provider, a TensorRT engine built for another GPU or a model that produces NaN
are refused at load time instead of judging parts.

The fingerprint is not a hash (floating-point results differ in the last bits between thread
counts, CPU kernels and GPUs); it is an 8x8 grid of block means plus the mean, the maximum and
the fraction of pixels above 0.5, compared with an absolute tolerance recorded beside it.

Cards without a golden (schema 1, written before this existed, and test models) still load,
with a logged warning: older user-built models must keep running.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from numpy.typing import NDArray

from engines.card import ModelCard
from engines.preprocess import to_channels, to_unit_float
from engines.protocol import ModelLoadError

if TYPE_CHECKING:
    from engines.protocol import Engine

log = logging.getLogger("engines")

GRID = 8  # blocks per side of the fingerprint grid
RANGE_SLACK = 1e-3  # float overshoot of a sigmoid / fp16 cast that is still a probability

# Tolerance on any fingerprint figure, per precision. Measured with kernel_spread() on the
# committed models (2-core x86_64, ONNX Runtime CPU; 1 vs 2 threads, graph optimisation off vs
# on) over 5 demo and 6 defective DAGM tiles: fp32 <= 1e-7 (the digest's resolution), fp16
# <= 2e-6, int8 <= 2.5e-3 (one tile; the others <= 2e-5). Scaling one weight tensor of the FP32
# models by 1.01 moved the fingerprint by 2.6e-4 to 1.3e-3, so fp32 1e-4 still sees that.
# record_golden() raises a tolerance to SPREAD_MARGIN x the spread of the tile it records.
DEFAULT_TOLERANCE: dict[str, float] = {"fp32": 1e-4, "fp16": 1e-3, "int8": 0.02}
# GPU backends run FP32 convolutions in TF32 (10-bit mantissa) by default on Ampere and later:
# about 5e-4 relative error per product; on a logit of ~10 that is ~2e-3 in probability. Not
# measured here (no GPU); the floor keeps a healthy TensorRT / CUDA engine from being refused.
GPU_TOLERANCE_FLOOR = 0.01
# A recorded tolerance is at least this many times the spread measured across CPU kernels, so
# a healthy model on another CPU is never refused.
SPREAD_MARGIN = 10.0

_FIGURES = ("block", "mean", "max", "above_half")
_LABELS = {
    "block": "max block difference",
    "mean": "mean difference",
    "max": "max-probability difference",
    "above_half": "above-0.5 fraction difference",
}


def output_fault(prob: NDArray[np.floating]) -> str | None:
    """Why ``prob`` is not a usable probability map, or None when it is.

    Only a min and a max (no temporary arrays): NaN propagates through both and infinity shows
    in them, so a map whose extremes are finite and within [0, 1] (give or take
    ``RANGE_SLACK``) is fine. About 0.1 ms for a 512x512 map: cheap enough for every frame.
    """
    if prob.size == 0:
        return "empty probability map"
    lo, hi = float(np.min(prob)), float(np.max(prob))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        bad = int(np.count_nonzero(~np.isfinite(prob)))  # only on the failure path
        return f"model output is not finite ({bad} of {prob.size} values NaN or infinite)"
    if lo < -RANGE_SLACK or hi > 1.0 + RANGE_SLACK:
        return f"model output {lo:.4g}..{hi:.4g} is outside the probability range [0, 1]"
    return None


def _edges(n: int, parts: int) -> NDArray[np.intp]:
    return np.linspace(0, n, parts + 1).round().astype(np.intp)[:-1]


def digest(prob: NDArray[np.floating]) -> dict[str, Any]:
    """Fingerprint of one ``H x W`` (or ``H x W x 1``) probability map, JSON-ready."""
    p = np.asarray(prob, dtype=np.float64)
    if p.ndim == 3:
        p = p[:, :, 0]
    h, w = p.shape
    gh, gw = min(GRID, h), min(GRID, w)
    rows, cols = _edges(h, gh), _edges(w, gw)
    sums = np.add.reduceat(np.add.reduceat(p, rows, axis=0), cols, axis=1)
    counts = np.outer(np.diff(np.append(rows, h)), np.diff(np.append(cols, w)))
    return {
        "grid": [[round(float(v), 7) for v in row] for row in sums / counts],
        "mean": round(float(p.mean()), 7),
        "max": round(float(p.max()), 7),
        "above_half": round(float(np.count_nonzero(p > 0.5)) / p.size, 7),
    }


def compare(expected: dict[str, Any], got: dict[str, Any]) -> dict[str, float]:
    """Absolute difference per fingerprint figure (``block`` = worst block of the grid)."""
    a, b = np.asarray(expected["grid"], np.float64), np.asarray(got["grid"], np.float64)
    if a.shape != b.shape:
        return dict.fromkeys(_FIGURES, math.inf)
    return {
        "block": float(np.abs(a - b).max()),
        "mean": abs(float(expected["mean"]) - float(got["mean"])),
        "max": abs(float(expected["max"]) - float(got["max"])),
        "above_half": abs(float(expected["above_half"]) - float(got["above_half"])),
    }


def encode_tile(tile: NDArray) -> dict[str, Any]:
    """``input`` (base64 PNG, lossless) and ``input_sha256`` (of the pixels) for a uint tile."""
    if tile.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"a golden tile is uint8 or uint16, not {tile.dtype}")
    ok, png = cv2.imencode(".png", tile, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise ValueError(f"cannot encode a {tile.shape} {tile.dtype} tile as PNG")
    return {
        "input": base64.b64encode(png.tobytes()).decode("ascii"),
        "input_sha256": _pixels_sha256(tile),
    }


def _pixels_sha256(tile: NDArray) -> str:
    # Of the decoded pixels (with shape and type), not of the PNG bytes: another encoder may
    # compress the same tile differently.
    head = f"{tile.dtype.str}{tile.shape}".encode()
    return hashlib.sha256(head + np.ascontiguousarray(tile).tobytes()).hexdigest()


def check_tile(tile: NDArray, card: ModelCard) -> None:
    """:class:`ValueError` unless ``tile`` is a uint8/uint16 tile of the card's input shape."""
    if tile.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"a golden tile is uint8 or uint16, not {tile.dtype}")
    channels = 1 if tile.ndim == 2 else tile.shape[2]
    if tile.shape[:2] != (card.input_height, card.input_width) or channels != card.channels:
        raise ValueError(
            f"golden tile is {tile.shape[0]}x{tile.shape[1]}x{channels}, the model takes "
            f"{card.input_height}x{card.input_width}x{card.channels}"
        )


@dataclass(frozen=True)
class Golden:
    """The parsed ``card.golden``: the decoded tile, the expected fingerprint, the tolerance."""

    tile: NDArray  # uint8 / uint16, H x W or H x W x C, at the model's input size
    output_digest: dict[str, Any]
    tolerance: float

    @classmethod
    def from_card(cls, card: ModelCard) -> Golden | None:
        """None when the card has no golden; :class:`ValueError` when it is malformed."""
        g = card.golden
        if not g:
            return None
        missing = {"input", "input_sha256", "output_digest", "tolerance"} - set(g)
        if missing:
            raise ValueError(f"golden self-test lacks {sorted(missing)}")
        try:
            png = np.frombuffer(base64.b64decode(g["input"], validate=True), np.uint8)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"golden input is not base64 ({exc})") from None
        tile = cv2.imdecode(png, cv2.IMREAD_UNCHANGED) if png.size else None
        if tile is None:
            raise ValueError("golden input is not a readable PNG")
        if _pixels_sha256(tile) != g["input_sha256"]:
            raise ValueError("golden input does not match its input_sha256 (the card is damaged)")
        check_tile(tile, card)
        out = g["output_digest"]
        if not isinstance(out, dict) or {"grid", "mean", "max", "above_half"} - set(out):
            raise ValueError("golden output_digest lacks grid / mean / max / above_half")
        try:
            grid = np.asarray(out["grid"], np.float64)
            numbers = [float(out[k]) for k in ("mean", "max", "above_half")]
            tolerance = float(g["tolerance"])
        except (TypeError, ValueError):
            raise ValueError("golden output_digest or tolerance holds non-numbers") from None
        if grid.ndim != 2 or not np.isfinite(grid).all() or not all(map(math.isfinite, numbers)):
            raise ValueError("golden output_digest grid is not a finite 2-D grid of numbers")
        if not 0.0 < tolerance < 1.0:
            raise ValueError(f"golden tolerance {tolerance} is outside (0, 1)")
        return cls(tile=tile, output_digest=out, tolerance=tolerance)

    def model_input(self, card: ModelCard) -> NDArray[np.float32]:
        """``1 x H x W x C`` float32, exactly as the station feeds a tile of a frame."""
        unit = to_channels(to_unit_float(self.tile), card.channels)
        return np.ascontiguousarray(unit[None], dtype=np.float32)


def make_golden(
    engine: Engine,
    tile: NDArray,
    *,
    tolerance: float | None = None,
) -> dict[str, Any]:
    """The ``golden`` entry of ``engine.card`` for ``tile`` (uint8/uint16 at the input size).

    ``tolerance`` defaults to :data:`DEFAULT_TOLERANCE` for the card's precision.
    """
    card = engine.card
    tol = DEFAULT_TOLERANCE[card.precision] if tolerance is None else float(tolerance)
    check_tile(tile, card)
    entry: dict[str, Any] = {**encode_tile(tile), "tolerance": tol}
    parsed = Golden(tile=tile, output_digest={}, tolerance=tol)
    prob = engine.infer(parsed.model_input(card))[0]
    fault = output_fault(prob)
    if fault is not None:
        raise ModelLoadError(f"{card.name}: cannot record a golden self-test: {fault}")
    entry["output_digest"] = digest(prob)
    entry["recorded_with"] = f"{engine.backend} {card.precision}"
    return entry


def choose_tile(engine: Engine, image: NDArray) -> NDArray:
    """The input-size tile of ``image`` on which ``engine`` sees the most defect.

    ``image`` is a whole frame (uint8 / uint16, grey or BGR) as a camera or file gives it; it is
    scaled by the card's ``frame_scale`` and cut into the station's tile grid, each tile is
    rounded back to the frame's bit depth (what the card will store), and the tile with the
    highest mean probability wins, so the golden exercises the defect path, not a blank map.
    """
    from engines.predict import default_overlap
    from engines.preprocess import to_model_input
    from engines.tiling import extract_tiles, tile_grid

    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"a golden image is 8 or 16 bit, not {image.dtype}")
    card = engine.card
    th, tw = card.input_height, card.input_width
    x = to_model_input(image, card)
    positions = tile_grid(x.shape[0], x.shape[1], th, tw, default_overlap(th, tw))
    full = np.iinfo(image.dtype).max
    tiles = np.rint(extract_tiles(x, positions, th, tw) * full).astype(image.dtype)
    probs = engine.infer(to_unit_float(tiles).astype(np.float32))
    best = tiles[int(np.argmax(probs.mean(axis=(1, 2, 3))))]
    return best[:, :, 0] if best.shape[2] == 1 else best


def kernel_spread(path: str, card: ModelCard, tile: NDArray) -> float:
    """Largest fingerprint difference across ONNX Runtime CPU set-ups for ``tile``.

    1 and 2 intra-op threads, graph optimisation off and fully on: different kernels (NCHWc
    convolutions and fusions vs. plain ones; for INT8, fused QLinearConv vs. dequantize + float
    conv), which stands in for another CPU. Records why a tolerance is what it is.
    """
    import onnxruntime as ort

    from engines.options import ort_session_options

    batch = Golden(tile=tile, output_digest={}, tolerance=1.0).model_input(card)
    digests = []
    for threads in (1, 2):
        for level in (
            ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        ):
            options = ort_session_options(threads)
            options.graph_optimization_level = level
            session = ort.InferenceSession(
                path, sess_options=options, providers=["CPUExecutionProvider"]
            )
            out = session.run([card.output_name], {card.input_name: batch})[0]
            digests.append(digest(np.asarray(out, np.float32)[0]))
    return max(max(compare(digests[0], d).values()) for d in digests[1:])


def effective_tolerance(golden: Golden, engine: Engine) -> float:
    """The golden's tolerance, raised to :data:`GPU_TOLERANCE_FLOOR` on a GPU backend."""
    providers = getattr(engine, "providers", [])
    on_gpu = engine.backend == "tensorrt" or any(p != "CPUExecutionProvider" for p in providers)
    return max(golden.tolerance, GPU_TOLERANCE_FLOOR) if on_gpu else golden.tolerance


def check_engine(engine: Engine, where: str) -> dict[str, float] | None:
    """Run the card's golden self-test on a loaded engine; return the differences.

    Returns None (and logs a warning) when the card has no golden.

    Raises
    ------
    ModelLoadError
        Malformed golden, output not finite or outside [0, 1], or a fingerprint difference
        above the tolerance. The message starts with ``where`` and gives the figures.
    """
    card = engine.card
    try:
        golden = Golden.from_card(card)
    except ValueError as exc:
        raise ModelLoadError(f"{where}: {exc}") from None
    if golden is None:
        log.warning("%s: no golden self-test in card; the model is loaded unchecked", where)
        return None
    try:
        prob = engine.infer(golden.model_input(card))[0]
    except Exception as exc:
        raise ModelLoadError(f"{where}: golden self-test inference failed ({exc})") from None
    fault = output_fault(prob)
    if fault is not None:
        raise ModelLoadError(f"{where}: golden self-test failed: {fault}")
    diffs = compare(golden.output_digest, digest(prob))
    tolerance = effective_tolerance(golden, engine)
    worst = max(_FIGURES, key=lambda k: diffs[k])
    if not diffs[worst] <= tolerance:  # `not <=` so a NaN difference fails too
        figures = ", ".join(f"{k} {diffs[k]:.3g}" for k in _FIGURES)
        raise ModelLoadError(
            f"{where}: golden self-test failed: {_LABELS[worst]} {diffs[worst]:.3g} > tolerance "
            f"{tolerance:g} ({figures}; expected mean {golden.output_digest['mean']:.4g}, got "
            f"{float(np.mean(prob)):.4g}); the weights may be corrupt, or the engine was built "
            "for another GPU"
        )
    return diffs


def read_frame(path: str | os.PathLike[str]) -> NDArray:
    """An 8 or 16 bit image file, unchanged; :class:`ValueError` naming the file otherwise."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)  # fromfile + imdecode copes with any path
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the image ({exc.strerror or exc})") from None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{path}: {image.dtype} pixels (expected 8 or 16 bit)")
    return image


def record_golden(
    model: str | os.PathLike[str],
    frames: Iterable[NDArray],
    *,
    tolerance: float | None = None,
) -> dict[str, Any]:
    """(Re)write the golden of ``model``'s card from its current output, then load-check it.

    The tile is the one, over all ``frames``, on which the model sees the most defect. The
    tolerance defaults to the precision's :data:`DEFAULT_TOLERANCE`, raised to
    ``SPREAD_MARGIN`` x the spread measured across ONNX Runtime kernels (ONNX models); an
    explicit tolerance below twice that spread is refused, as it would refuse healthy machines.

    Raises
    ------
    ModelLoadError
        The model does not load or its output is not a probability map.
    ValueError
        No frame given, or a tolerance out of range or below the measured spread.
    """
    from engines import load_engine
    from engines.card import card_path_for

    path = str(model)
    engine = load_engine(path, check_golden=False)
    try:
        card = engine.card
        best: tuple[float, NDArray] | None = None
        for frame in frames:
            tile = choose_tile(engine, frame)
            score = float(engine.infer(Golden(tile, {}, 1.0).model_input(card)).mean())
            if best is None or score > best[0]:
                best = (score, tile)
        if best is None:
            raise ValueError(f"{path}: no frame to record a golden self-test from")
        tile = best[1]
        spread = kernel_spread(path, card, tile) if engine.backend == "onnxruntime" else 0.0
        spread = float(f"{spread:.2g}")  # the digests are rounded to 1e-7; so is this figure
        if tolerance is None:
            tolerance = max(DEFAULT_TOLERANCE[card.precision], SPREAD_MARGIN * spread)
        elif not 0.0 < tolerance < 1.0:
            raise ValueError(f"tolerance {tolerance} is outside (0, 1)")
        elif tolerance < 2.0 * spread:
            raise ValueError(
                f"tolerance {tolerance:g} is below twice the {spread:.3g} this model's output "
                "already varies by across ONNX Runtime thread counts and kernels"
            )
        golden = make_golden(engine, tile, tolerance=tolerance)
        golden["kernel_spread"] = spread
    finally:
        engine.close()
    card_path = card.with_updates(golden=golden).save(card_path_for(path))
    load_engine(path).close()  # the card as written must pass its own test
    return {
        "model": path,
        "card": str(card_path),
        "tile": "x".join(map(str, tile.shape)) + f" {tile.dtype}",
        "tolerance": tolerance,
        "kernel_spread": spread,
        "mean": golden["output_digest"]["mean"],
        "above_half": golden["output_digest"]["above_half"],
    }
