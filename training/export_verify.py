"""Does the exported ONNX model decide what the trained Keras model decides?

Keras runs float32 convolutions on oneDNN, ONNX Runtime on MLAS: the same weights give slightly
different sums, so bit-equal outputs are not to be had and a per-pixel bound alone is either too
strict (a real 31-minute run was refused at max |Δ| 2.3e-4 against 1e-4) or says nothing about
what the station does with the map. Verification therefore has two parts:

1. **Per pixel, on real tiles** (cut as the station cuts them): max |Δ| <= ``tolerance``
   (5e-3) and mean |Δ| <= ``mean_tolerance`` (1e-4), for the defect probability and, for a
   multi-class model, for p(class) = p(defect) x share. A non-finite output or a wrong shape is
   a broken conversion, never overridable.
2. **Decisions, on real frames** run through the station's own tiling and stitching
   (:func:`engines.predict.predict_class_maps`) with each backend: at the card's threshold and
   minimum area, every frame's verdict (a blob >= min area), its number of defect blobs and the
   argmax classes of those blobs must be identical; pixels that change side of the threshold
   while lying farther than ``tolerance`` from it may be at most ``flip_rate`` of all pixels
   (1e-5); a pixel within the tolerance of the threshold may change side under any correct
   conversion and is only counted.

Measured (resources/models/dagm-class1.onnx rebuilt in Keras, 40 DAGM Class1 test frames,
10.5 M pixels): max |Δ| 4.3e-5, mean |Δ| 2.3e-8; at threshold 0.5 one pixel flips (its Keras
value lay within 1e-4 of 0.5), no verdict differs. Identical masks are thus not a criterion a
correct export always meets; identical verdicts and a bounded flip share are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engines.card import ModelCard

DEFAULT_TOLERANCE = 5e-3  # max |Δ| per pixel, probability units
DEFAULT_MEAN_TOLERANCE = 1e-4  # mean |Δ| per pixel
DEFAULT_FLIP_RATE = 1e-5  # share of frame pixels allowed to change side of the threshold

Maps = list[tuple[NDArray[np.float32], NDArray[np.float32] | None]]


class ExportError(RuntimeError):
    """The exported model is missing, unconvertible or disagrees with the Keras model."""


class VerificationError(ExportError):
    """The export converted, but does not decide as the trained model (``--force`` overrides).

    ``figures`` holds the measured numbers (written to the run's verification report)."""

    def __init__(self, message: str, figures: dict[str, Any]) -> None:
        super().__init__(message)
        self.figures = figures


def pixel_agreement(
    got_all: Sequence[NDArray[np.float32]],
    expected_all: Sequence[NDArray[np.float32]],
    tolerance: float = DEFAULT_TOLERANCE,
    mean_tolerance: float = DEFAULT_MEAN_TOLERANCE,
) -> tuple[dict[str, Any], list[str]]:
    """Per-pixel figures of ONNX (``got_all``) against Keras, and the limits they break.

    Raises :class:`ExportError` for a structural fault (output count, shape, non-finite values).
    """
    if len(got_all) != len(expected_all):
        raise ExportError(f"{len(got_all)} ONNX outputs, expected {len(expected_all)}")
    for got, expected in zip(got_all, expected_all, strict=True):
        if got.shape != expected.shape:
            raise ExportError(f"ONNX output shape {got.shape} != Keras {expected.shape}")
    got, expected = got_all[0], expected_all[0]
    diff = np.abs(got - expected)
    if not np.isfinite(diff).all():
        raise ExportError("the ONNX model gives non-finite probabilities (NaN or inf)")
    figures: dict[str, Any] = {
        "keras_max_abs_diff": float(diff.max()),
        "keras_mean_abs_diff": float(diff.mean()),
        "tolerance": tolerance,
        "mean_tolerance": mean_tolerance,
        "tiles": int(got.shape[0]),
    }
    problems = []
    n = got.shape[0]
    if diff.max() > tolerance or diff.mean() > mean_tolerance:
        problems.append(
            f"ONNX disagrees with the Keras model: max |Δ| {diff.max():.3g} (limit "
            f"{tolerance:g}), mean |Δ| {diff.mean():.3g} (limit {mean_tolerance:g}) on {n} real "
            "image tiles"
        )
    if len(got_all) > 1:
        # Class shares are compared as p(defect) x share = p(class), what the judge weighs: where
        # no defect is likely the share is a ratio of tiny numbers, ill-conditioned and unused.
        class_diff = np.abs(got * got_all[1] - expected * expected_all[1])
        if not np.isfinite(class_diff).all():
            raise ExportError("the ONNX model gives non-finite class probabilities")
        figures["class_max_abs_diff"] = float(class_diff.max())
        figures["class_mean_abs_diff"] = float(class_diff.mean())
        if class_diff.max() > tolerance or class_diff.mean() > mean_tolerance:
            problems.append(
                "ONNX class probabilities disagree with the Keras model: p(defect) x "
                f"p(class | defect) max |Δ| {class_diff.max():.3g}, mean |Δ| "
                f"{class_diff.mean():.3g} on {n} real image tiles"
            )
    return figures, problems


@dataclass
class _Backend:
    """The least an :mod:`engines.predict` engine needs: a card, ``infer``, ``infer_classes``."""

    card: ModelCard
    outputs: Any  # batch -> [probability] or [probability, class_probability]

    def infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        return self.outputs(batch)[0]

    def infer_classes(
        self, batch: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        out = self.outputs(batch)
        return out[0], out[1]


def frame_maps(card: ModelCard, outputs: Any, frames: Sequence[NDArray]) -> Maps:
    """``(defect map, class map | None)`` of each frame, as the station computes them, with the
    backend ``outputs(batch) -> list of outputs`` (Keras or ONNX Runtime)."""
    from engines.predict import predict_class_maps

    return predict_class_maps(_Backend(card, outputs), frames)  # type: ignore[arg-type]  # has what predict uses of Engine


def _defect_blobs(
    prob: NDArray[np.float32], cmap: NDArray[np.float32] | None, threshold: float, min_area: int
) -> tuple[NDArray[np.bool_], list[int]]:
    """The mask at ``threshold`` and the sorted class index of every blob >= ``min_area``
    (0 for a one-class model), the way the station's judge sees them."""
    from training.class_metrics import class_blobs

    labels, areas, index = class_blobs(prob, cmap, threshold)
    keep = np.flatnonzero(areas >= max(1, int(min_area)))
    keep = keep[keep > 0]
    return labels > 0, sorted(int(index[i]) for i in keep)


def compare_decisions(
    keras: Maps,
    onnx: Maps,
    threshold: float,
    min_area: int,
    names: Sequence[str] = (),
    flip_rate: float = DEFAULT_FLIP_RATE,
    tolerance: float = DEFAULT_TOLERANCE,
) -> tuple[dict[str, Any], list[str]]:
    """What the station decides from each backend's maps, frame by frame (module docstring).

    Flips are counted in two kinds: ``pixels_flipped``, pixels clearly on one side (farther
    than ``tolerance`` from the threshold), at most ``flip_rate`` of the pixels; and
    ``pixels_on_edge``, pixels within the tolerance, which may change side under any correct
    conversion: at most ``flip_rate`` of the pixels or one per frame, whichever is more (a
    synthetic run was refused for 1 such pixel of 65,536 on a one-frame check, at max |Δ|
    2.2e-4, when a share of 1e-5 allowed none). Many edge flips still mean the masks differ.
    """
    flips = pixels = edge = 0
    verdicts: list[str] = []
    blobs: list[str] = []
    diffs = []
    for i, ((kp, kc), (op, oc)) in enumerate(zip(keras, onnx, strict=True)):
        name = names[i] if i < len(names) else f"frame {i}"
        diffs.append(np.abs(kp - op))
        k_mask, k_blobs = _defect_blobs(kp, kc, threshold, min_area)
        o_mask, o_blobs = _defect_blobs(op, oc, threshold, min_area)
        changed = k_mask != o_mask
        near = np.abs(kp - np.float32(threshold)) <= tolerance
        edge += int(np.count_nonzero(changed & near))
        flips += int(np.count_nonzero(changed & ~near))
        pixels += k_mask.size
        if bool(k_blobs) != bool(o_blobs):
            verdicts.append(name)
        elif k_blobs != o_blobs:
            blobs.append(name)
    d = np.concatenate([x.ravel() for x in diffs]) if diffs else np.zeros(1, np.float32)
    figures: dict[str, Any] = {
        "frames": len(keras),
        "threshold": threshold,
        "min_area_px": int(min_area),
        "frame_max_abs_diff": float(d.max()),
        "frame_mean_abs_diff": float(d.mean()),
        "pixels": pixels,
        "pixels_flipped": flips,
        "pixels_on_edge": edge,
        "flip_rate_limit": flip_rate,
        "verdicts_differ": verdicts,
        "blobs_differ": blobs,
    }
    problems = []
    if not np.isfinite(d).all():
        raise ExportError("the ONNX model gives non-finite probabilities on real frames")
    if flips > flip_rate * max(pixels, 1):
        problems.append(
            f"{flips} of {pixels} pixels flip at threshold {threshold:g}, farther than "
            f"{tolerance:g} from it (limit {flip_rate:g} of the pixels)"
        )
    if edge > max(flip_rate * pixels, len(keras)):
        problems.append(
            f"{edge} of {pixels} pixels flip at threshold {threshold:g} from within {tolerance:g} "
            f"of it (limit {flip_rate:g} of the pixels or one per frame)"
        )
    if verdicts:
        problems.append(
            f"the verdict differs on {len(verdicts)} of {len(keras)} frames "
            f"({', '.join(verdicts[:3])}{', ...' if len(verdicts) > 3 else ''})"
        )
    if blobs:
        problems.append(
            f"the defect blobs (count or class) differ on {len(blobs)} of {len(keras)} frames "
            f"({', '.join(blobs[:3])}{', ...' if len(blobs) > 3 else ''})"
        )
    return figures, problems
