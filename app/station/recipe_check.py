"""Recipes checked against reality: the first frame's size, the model card, the bit depth.

A recipe is valid TOML long before it meets a camera. These checks say, before the first verdict,
when its rules cannot work on the frames that actually arrive: a zone drawn for another camera
that covers no pixel, include zones that leave nothing inspected, a minimum area no defect can
reach, a bit depth the frames do not have. ``"error"`` problems mean the recipe cannot judge
these frames (the session turns them into a FAULT that stops before judging); ``"warning"``
problems are shown once and the line runs.

Zones are rasterised the way the rules see them: a defect counts for a zone when its centroid is
inside, so a zone "covers" the frame pixels whose centres lie inside its polygon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from app.station.inspection import Rules, Zone
from engines.card import ModelCard
from engines.preprocess import scaled_size

__all__ = ["FrameChecker", "Problem", "check_against_frame", "range_warning"]

Severity = Literal["error", "warning"]
# Frames whose brightest pixel stays below this share of the declared full scale are suspicious:
# a 12-bit camera declared as 16-bit (values up to 4095 of 65535 = 1/16), or a lens cap.
LOW_RANGE_FRACTION = 1 / 16


@dataclass(frozen=True)
class Problem:
    """One mismatch between a recipe and the frames; ``message`` names the key to fix."""

    severity: Severity
    message: str


def _zone_mask(zone: Zone, h: int, w: int) -> NDArray[np.uint8]:
    mask = np.zeros((h, w), dtype=np.uint8)
    pts = np.asarray(zone.polygon, dtype=np.float64).reshape(-1, 2)
    if len(pts) >= 3:
        # fillPoly on integer vertices fills boundary pixels too, like pointPolygonTest's edge rule;
        # 8 fractional bits keep sub-pixel vertices where they are.
        fixed = np.round(pts * 256).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(mask, [fixed], 1, lineType=cv2.LINE_8, shift=8)
    return mask


def _polygon_area(zone: Zone) -> float:
    pts = np.asarray(zone.polygon, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 3:
        return 0.0
    x, y = pts[:, 0], pts[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def _area_text(px: float, pixel_size_mm: float | None) -> str:
    text = f"{px:,.0f} px"
    if pixel_size_mm:
        text += f" = {px * pixel_size_mm**2:.4g} mm²"
    return text


def check_against_frame(
    rules: Rules,
    frame_height: int,
    frame_width: int,
    card: ModelCard | None = None,
    pixel_size_mm: float | None = None,
    *,
    channels: int | None = None,
    dtype: np.dtype | type | None = None,
    bit_depth: int | None = None,
) -> list[Problem]:
    """What in ``rules`` (and the recipe's model / bit depth) cannot work on these frames.

    Parameters
    ----------
    rules
        The recipe's rules and zones (polygons in frame pixels).
    frame_height, frame_width
        The first frame's size.
    card
        The model's card: channels and tile size after ``frame_scale`` are compared with the frame.
    pixel_size_mm
        The recipe's pixel size; areas are also reported in mm² when set.
    channels, dtype, bit_depth
        The frame's channels (1 grey, 3 colour), pixel dtype and the recipe's declared
        ``[source] bit_depth``; each check runs only when its inputs are given.

    Returns
    -------
    list of Problem
        Errors first, then warnings; empty when the recipe fits.
    """
    h, w = int(frame_height), int(frame_width)
    if h <= 0 or w <= 0:
        return [Problem("error", f"the frame is empty ({w} x {h} px): nothing can be judged")]
    problems: list[Problem] = []
    frame_px = h * w
    size = f"{w} x {h} px frame"
    frame_area = _area_text(frame_px, pixel_size_mm)

    if rules.min_area_px > frame_px:
        problems.append(
            Problem(
                "error",
                f"rules min_area_px {_area_text(rules.min_area_px, pixel_size_mm)} is larger than"
                f" the whole {size} ({frame_area}): no defect can ever be found",
            )
        )
    if rules.max_total_area_px is not None and rules.max_total_area_px >= frame_px:
        problems.append(
            Problem(
                "warning",
                f"rules max_total_area_px {rules.max_total_area_px:,} px is not smaller than the"
                f" {size} ({frame_px:,} px): the total-area rule can never fail a part",
            )
        )

    masks: dict[str, NDArray[np.uint8]] = {}
    for zone in rules.zones:
        mask = _zone_mask(zone, h, w)
        masks[zone.name] = mask
        covered = int(np.count_nonzero(mask))
        if covered == 0:
            problems.append(
                Problem(
                    "error",
                    f"{zone.kind} zone '{zone.name}' covers no pixel of the {size}"
                    " (drawn for another camera or image size?)",
                )
            )
            continue
        area = _polygon_area(zone)
        if covered < 0.9 * area:  # rasterising adds or drops at most a pixel row along edges
            problems.append(
                Problem(
                    "warning",
                    f"{zone.kind} zone '{zone.name}' lies partly outside the {size}: it covers"
                    f" {covered:,} of its {area:,.0f} px",
                )
            )
        if zone.kind == "critical":
            if zone.min_area_px > frame_px:
                problems.append(
                    Problem(
                        "error",
                        f"critical zone '{zone.name}' min_area_px"
                        f" {_area_text(zone.min_area_px, pixel_size_mm)} is larger than the whole"
                        f" {size} ({frame_area})",
                    )
                )
            elif zone.min_area_px > covered:
                problems.append(
                    Problem(
                        "warning",
                        f"critical zone '{zone.name}' min_area_px"
                        f" {_area_text(zone.min_area_px, pixel_size_mm)} is larger than the zone"
                        f" itself ({_area_text(covered, pixel_size_mm)} in the frame): only a"
                        " defect reaching far beyond the zone can trigger it",
                    )
                )
    problems.extend(_inspected_area(rules, masks, size))
    if card is not None:
        problems.extend(_against_card(card, h, w, channels))
    if dtype is not None:
        problems.extend(_bit_depth(np.dtype(dtype), bit_depth))
    return sorted(problems, key=lambda p: p.severity != "error")


def _inspected_area(rules: Rules, masks: dict[str, NDArray[np.uint8]], size: str) -> list[Problem]:
    """Error when include / exclude zones together leave no pixel where a defect would count."""
    if not rules.zones:
        return []
    shape = next(iter(masks.values())).shape
    includes = [z for z in rules.zones if z.kind in ("include", "critical")]
    has_include = any(z.kind == "include" for z in rules.zones)
    inspected = np.zeros(shape, dtype=bool)
    if has_include:
        for z in includes:
            inspected |= masks[z.name].astype(bool)
    else:
        inspected[:] = True
    for z in rules.zones:
        if z.kind == "exclude":
            inspected &= ~masks[z.name].astype(bool)
    if inspected.any():
        return []
    what = "the include zones minus the exclude zones" if has_include else "the exclude zones"
    return [
        Problem(
            "error",
            f"{what} leave no pixel of the {size} to inspect: every part would pass unseen",
        )
    ]


def _against_card(card: ModelCard, h: int, w: int, channels: int | None) -> list[Problem]:
    problems: list[Problem] = []
    if channels is not None and channels != card.channels:
        if card.channels == 1:
            problems.append(
                Problem(
                    "warning",
                    f"colour frames are converted to grey for the 1-channel model '{card.name}'",
                )
            )
        else:
            problems.append(
                Problem(
                    "warning",
                    f"grey frames are repeated into 3 channels for the colour model '{card.name}'"
                    " (it was trained on colour: check the camera's pixel format)",
                )
            )
    sh, sw = scaled_size(h, w, card.frame_scale)
    if sh < card.input_height or sw < card.input_width:
        scaled = f" ({sw} x {sh} after frame_scale {card.frame_scale:g})"
        problems.append(
            Problem(
                "warning",
                f"the {w} x {h} px frame{scaled if card.frame_scale != 1 else ''} is smaller"
                f" than the model input {card.input_width} x {card.input_height}: it is padded by"
                " mirroring, which the model never saw in training",
            )
        )
    return problems


def _bit_depth(dtype: np.dtype, bit_depth: int | None) -> list[Problem]:
    container = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(dtype)
    if container is None or bit_depth is None or bit_depth <= container:
        return []
    return [
        Problem(
            "error",
            f"[source] bit_depth = {bit_depth} but the frames are {container}-bit ({dtype}):"
            f" set bit_depth to at most {container} or change the camera's pixel format",
        )
    ]


def range_warning(image: NDArray, bit_depth: int | None = None) -> str | None:
    """A warning when the frame uses a tiny part of its declared range, or exceeds it.

    ``bit_depth`` None = the container's (uint8: 8, uint16: 16). Float frames are not checked.
    Returns None when the range looks right.
    """
    arr = np.asarray(image)
    container = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(arr.dtype)
    if container is None or arr.size == 0:
        return None
    depth = container if bit_depth is None else min(bit_depth, container)
    full = 2**depth - 1
    top = int(arr.max())
    declared = f"{depth}-bit" if bit_depth is not None else f"{depth}-bit ({arr.dtype})"
    if top > full:
        return (
            f"frame values reach {top} but the declared {declared} range ends at {full}:"
            " values above are clipped; check [source] bit_depth"
        )
    if top < full * LOW_RANGE_FRACTION:
        return (
            f"frame values reach only {top} of the declared {declared} range 0..{full}"
            f" ({100 * top / full:.2g} % of full scale): check [source] bit_depth, exposure,"
            " gain or the lighting"
        )
    return None


class FrameChecker:
    """Per-run checks: the full check whenever the frame geometry changes, the range once.

    ``check(image)`` is cheap for a frame of the same size, channels and dtype as the last one
    (no zone is rasterised again); the range warning is given once per run.
    """

    def __init__(
        self,
        rules: Rules,
        card: ModelCard | None = None,
        pixel_size_mm: float | None = None,
        bit_depth: int | None = None,
    ) -> None:
        self.rules, self.card = rules, card
        self.pixel_size_mm, self.bit_depth = pixel_size_mm, bit_depth
        self._last: tuple[int, int, int, str] | None = None
        self._range_warned = False

    def update(self, rules: Rules | None = None, card: ModelCard | None = None) -> None:
        """New rules (an engineer saved zones) or a new model: the next frame is checked again."""
        if rules is not None:
            self.rules = rules
        if card is not None:
            self.card = card
        self._last = None

    def check(self, image: NDArray) -> list[Problem]:
        """Problems new with this frame (empty when nothing changed since the last one)."""
        arr = np.asarray(image)
        if arr.ndim < 2:
            return [Problem("error", f"frame has shape {arr.shape}, not H x W (x C)")]
        h, w = arr.shape[:2]
        channels = 1 if arr.ndim == 2 else arr.shape[2]
        key = (h, w, channels, str(arr.dtype))
        problems: list[Problem] = []
        if key != self._last:
            if self._last is not None:
                old_h, old_w = self._last[:2]
                if (old_h, old_w) != (h, w):
                    problems.append(
                        Problem(
                            "warning",
                            f"frame size changed from {old_w} x {old_h} to {w} x {h} px",
                        )
                    )
            self._last = key
            problems.extend(
                check_against_frame(
                    self.rules,
                    h,
                    w,
                    self.card,
                    self.pixel_size_mm,
                    channels=channels,
                    dtype=arr.dtype,
                    bit_depth=self.bit_depth,
                )
            )
        if not self._range_warned:
            warning = range_warning(arr, self.bit_depth)
            if warning:
                self._range_warned = True
                problems.append(Problem("warning", warning))
        return problems
