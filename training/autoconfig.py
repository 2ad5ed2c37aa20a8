"""Training settings derived from the data, for the ones the user did not give.

``python -m training train --data DIR --out RUN`` has to work on a dataset nobody tuned for: the
frame scale, the network's tile, the crop, the batch, the defect share of a batch and the length
of the run follow from what the training split holds (:func:`measure`), each with the reason it
is logged with and recorded in ``config.json`` (``derived``). A value given on the command line
is always kept.

* **frame scale**: the largest downscale (1, 1/2, 1/4) that keeps the small defects (10th
  percentile of the connected defects) at least ``MIN_DEFECT_SIDE`` px across and
  ``MIN_DEFECT_THICKNESS`` px thick: a downscale is the cheapest speed-up there is (4x fewer
  pixels per halving) and it loses nothing while the defects stay that large. DAGM's ellipses
  (about 60 px across) come out at 1/2, Magnetic-tile's blowholes (about 11 px) at 1.
* **tile** (``image_size``, the exported network's input): 256, or 128 when most scaled images
  are shorter than 160 px (less padding).
* **crop**: half the tile from 256 up (4x the crops per step at the same cost; the 256-tile
  DAGM model was trained on 128 crops), else the tile; **batch** 16 crops of 128, else 8.
* **defect share**: 0.5 when fewer than half the images are defective (they are rarer on every
  line), else the data's own share.
* **epochs**: with a time budget, as many as fit (the run stops on the budget) and the learning
  rate halves at 50 %, 75 % and 90 % of it (:class:`training.keras_loop.BudgetSchedule`); with
  none, 60 epochs halving every 20 as before. The default budget when the epochs are not given
  is ``DEFAULT_MINUTES``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.data.loaders import Sample

SCALES = (1.0, 0.5, 0.25)
MIN_DEFECT_SIDE = 16.0  # px, sqrt(area) of a defect after scaling
MIN_DEFECT_THICKNESS = 4.0  # px, area / longest side of a defect after scaling
DEFAULT_MINUTES = 40.0
BUDGET_EPOCHS = 10_000  # "until the budget ends"
# Settings this module may derive; the CLI passes the ones the user left out as ``auto``.
DERIVABLE = (
    "frame_scale", "image_size", "crop_size", "batch_size", "defect_share", "epochs",
    "steps_per_epoch",
)  # fmt: skip
MIN_STEPS = 40
VALIDATION_SHARE = 0.5  # validation may cost at most this share of an epoch's training


@dataclass(frozen=True)
class DataFacts:
    """What the settings are derived from (training split, native resolution)."""

    images: int
    defective: int
    short_sides: tuple[int, ...]  # shorter image side of each image
    defect_sides: tuple[float, ...]  # sqrt(area) of each connected defect
    defect_thickness: tuple[float, ...]  # area / longer bounding-box side of each defect

    def small_defect(self) -> tuple[float, float]:
        """(side, thickness) of the small defects: the 10th percentiles."""
        if not self.defect_sides:
            return float("inf"), float("inf")
        return (
            float(np.percentile(self.defect_sides, 10)),
            float(np.percentile(self.defect_thickness, 10)),
        )


def measure(samples: Sequence[Sample]) -> DataFacts:
    """Image sides and connected-defect sizes of ``samples`` (their masks are read once)."""
    import cv2

    from training.data.loaders import read_image

    short, sides, thick = [], [], []
    defective = 0
    for s in samples:
        shape = s.shape or read_image(s.image_path).shape[:2]
        short.append(int(min(shape)))
        if not s.defective or s.mask_path is None:
            continue
        ids = s.labels(shape)
        if not ids.any():
            continue
        defective += 1
        n, _, stats, _ = cv2.connectedComponentsWithStats(
            (ids > 0).astype(np.uint8), connectivity=8
        )
        for area, w, h in stats[1:, [cv2.CC_STAT_AREA, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT]]:
            if area < 4:  # a speck of label noise is not a defect size
                continue
            sides.append(float(np.sqrt(area)))
            thick.append(float(area) / max(int(w), int(h)))
    return DataFacts(len(samples), defective, tuple(short), tuple(sides), tuple(thick))


def derive(
    facts: DataFacts, budget_minutes: float, given: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Every derivable setting and the reason for each (see the module docstring); ``given``
    holds the user's values, which the later settings build on (a given tile sets the crop)."""
    given = given or {}
    side, thickness = facts.small_defect()
    scale = 1.0
    for s in SCALES if np.isfinite(side) else ():
        if side * s >= MIN_DEFECT_SIDE and thickness * s >= MIN_DEFECT_THICKNESS:
            scale = s
    values: dict[str, Any] = {"frame_scale": scale}
    why: dict[str, str] = {}
    if np.isfinite(side):
        why["frame_scale"] = (
            f"small defects (10th percentile) {side:.0f} px across, {thickness:.1f} px thick: "
            f"{side * scale:.0f} / {thickness * scale:.1f} px after scaling by {scale:g} "
            f"(kept >= {MIN_DEFECT_SIDE:g} / {MIN_DEFECT_THICKNESS:g})"
        )
    else:
        why["frame_scale"] = "no defect in the training split to size: full resolution"
    scale = float(given.get("frame_scale", scale))
    median_short = float(np.median(facts.short_sides)) * scale if facts.short_sides else 256.0
    values["image_size"] = 128 if median_short < 160 else 256
    why["image_size"] = f"median shorter side {median_short:.0f} px after scaling"
    tile = int(given.get("image_size", values["image_size"]))
    crop = tile // 2 if tile >= 256 else tile
    values["crop_size"] = crop
    why["crop_size"] = f"{'half the tile' if crop < tile else 'the tile'}"
    crop = int(given.get("crop_size") or crop)
    values["batch_size"] = 16 if crop <= 128 else 8
    why["batch_size"] = f"{values['batch_size']} crops of {crop} px"
    share = facts.defective / max(1, facts.images)
    values["defect_share"] = 0.5 if share < 0.5 else round(share, 2)
    why["defect_share"] = f"{facts.defective} of {facts.images} training images defective"
    if budget_minutes > 0:
        values["epochs"] = BUDGET_EPOCHS
        why["epochs"] = (
            f"as many as fit in {budget_minutes:g} min; learning rate halved at 50/75/90 %"
        )
    else:
        values["epochs"] = 60
        why["epochs"] = "no time budget: 60 epochs, learning rate halved every 20"
    return values, why


def apply(cfg: Any, samples: Sequence[Sample], auto: Sequence[str]) -> dict[str, str]:
    """Fill the ``auto`` fields of ``cfg`` (a TrainConfig) from ``samples``; the reasons."""
    wanted = [name for name in auto if name in DERIVABLE]
    if not wanted:
        return {}
    given = {name: getattr(cfg, name) for name in DERIVABLE if name not in wanted}
    values, why = derive(measure(samples), cfg.max_minutes, given)
    wanted = [name for name in wanted if name in values]  # steps: once validation is loaded
    for name in wanted:
        setattr(cfg, name, values[name])
    if cfg.crop_size > cfg.image_size:
        cfg.crop_size = cfg.image_size
    return {name: f"{values[name]}: {why[name]}" for name in wanted}


def steps_per_epoch(val_pixels: int, batch_size: int, crop_size: int) -> tuple[int, str]:
    """Steps per epoch so that validating (a forward pass over ``val_pixels`` tile pixels) costs
    at most :data:`VALIDATION_SHARE` of training them (forward + backward ~ 3 forward passes per
    crop pixel); at least :data:`MIN_STEPS`. Magnetic-tile's 267 validation frames (1,300 tiles
    of 256 px) took 70 % of every 40-step epoch: twice the training in the same budget."""
    per_step = 3 * batch_size * crop_size * crop_size
    steps = max(MIN_STEPS, math.ceil(val_pixels / (VALIDATION_SHARE * per_step)))
    why = f"validation ({val_pixels / 1e6:.1f} M tile pixels) <= {VALIDATION_SHARE:.0%} of an epoch"
    return steps, why


def validation_subset(defective: Sequence[bool], seed: int) -> list[int]:
    """Indices of the validation frames to validate on every epoch: every defective one (the
    checkpoint is chosen on their Dice) and as many defect-free ones, at least 16, seeded (they
    only feed the false-alarm count of the log); all of them when there are not more."""
    flags = np.asarray(defective, bool)
    good = np.flatnonzero(~flags)
    keep = max(16, int(flags.sum()))
    if len(good) > keep:
        good = np.sort(np.random.default_rng(seed).choice(good, keep, replace=False))
    return sorted([*np.flatnonzero(flags).tolist(), *good.tolist()])
