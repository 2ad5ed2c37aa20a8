"""Arrays and training batches (numpy only): scaling as the station does, crops, augmentation.

Images are scaled with :mod:`engines.preprocess`, the code the station runs on every frame, so the
network is trained on exactly what it will be shown. Each batch holds a fixed share of defective
images: with about one defective image in eight, plain random batches are mostly defect-free and
the network learns to predict "nothing" first and defects late.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from engines.preprocess import resize, scaled_size, to_channels, to_unit_float
from training.data.loaders import Sample, read_image, read_mask


@dataclass
class Arrays:
    """Scaled float32 images (HxWxC in [0, 1]) and masks (HxW in {0, 1}) of some samples."""

    names: list[str]
    images: list[NDArray[np.float32]]
    masks: list[NDArray[np.float32]]
    defective: NDArray[np.bool_]


def load_arrays(
    samples: Sequence[Sample], *, channels: int, scale: float, soft: bool = False
) -> Arrays:
    """``soft``: a downscaled mask keeps each pixel's defect coverage (0..1) instead of
    coverage >= 0.5. Trained on coverage, the network's map says where the edge lies within a
    scaled pixel, and the station's linear upscale puts the 0.5 contour there: at a quarter of
    DAGM's resolution the hard masks cost the full-resolution Dice about 0.03."""
    images, masks = [], []
    for s in samples:
        raw = read_image(s.image_path)
        x = to_channels(to_unit_float(raw), channels)
        h, w = scaled_size(x.shape[0], x.shape[1], scale)
        x = resize(x, h, w)
        if s.mask_path is not None:
            m = read_mask(s.mask_path, raw.shape[:2]).astype(np.float32)
            m = np.clip(resize(m[:, :, None], h, w)[:, :, 0], 0.0, 1.0)
            m = m if soft else (m >= 0.5).astype(np.float32)
        else:
            m = np.zeros((h, w), np.float32)
        images.append(np.ascontiguousarray(x, np.float32))
        masks.append(m)
    flags = np.array([bool(m.any()) for m in masks], bool)
    return Arrays([s.name for s in samples], images, masks, flags)


def pad_to(
    x: NDArray[np.float32], m: NDArray[np.float32], h: int, w: int
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Reflect-pad an image smaller than the input (as engines.tiling does at inference)."""
    ph, pw = max(0, h - x.shape[0]), max(0, w - x.shape[1])
    if ph or pw:
        mode: Literal["reflect", "symmetric"] = (
            "reflect" if ph < x.shape[0] and pw < x.shape[1] else "symmetric"
        )
        x = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode=mode)
        m = np.pad(m, ((0, ph), (0, pw)), mode=mode)
    return x, m


class BatchSampler:
    """Random, augmented ``(x, y)`` batches of ``input_size`` crops with a fixed defect share."""

    def __init__(
        self,
        arrays: Arrays,
        *,
        input_size: tuple[int, int],
        batch_size: int,
        defect_share: float = 0.4,
        augment: bool = True,
    ) -> None:
        self.arrays = arrays
        self.h, self.w = input_size
        self.batch_size = batch_size
        self.augment = augment
        self.defect_idx = np.flatnonzero(arrays.defective)
        self.normal_idx = np.flatnonzero(~arrays.defective)
        share = defect_share if len(self.defect_idx) and len(self.normal_idx) else 0.0
        n_def = int(round(share * batch_size))
        if len(self.normal_idx) == 0:
            n_def = batch_size
        self.n_defective = n_def

    def _crop(
        self, rng: np.random.Generator, i: int
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        x, m = pad_to(self.arrays.images[i], self.arrays.masks[i], self.h, self.w)
        H, W = m.shape
        if self.arrays.defective[i] and rng.random() < 0.8:
            # Centre the crop near a defect pixel so large frames still yield defect crops.
            ys, xs = np.nonzero(m)
            j = rng.integers(len(ys))
            y0 = int(np.clip(ys[j] - rng.integers(self.h), 0, H - self.h))
            x0 = int(np.clip(xs[j] - rng.integers(self.w), 0, W - self.w))
        else:
            y0 = int(rng.integers(H - self.h + 1))
            x0 = int(rng.integers(W - self.w + 1))
        return x[y0 : y0 + self.h, x0 : x0 + self.w], m[y0 : y0 + self.h, x0 : x0 + self.w]

    def _augment(
        self, rng: np.random.Generator, x: NDArray[np.float32], m: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        if rng.random() < 0.5:
            x, m = x[:, ::-1], m[:, ::-1]
        if rng.random() < 0.5:
            x, m = x[::-1], m[::-1]
        if self.h == self.w:
            k = int(rng.integers(4))
            x, m = np.rot90(x, k), np.rot90(m, k)
        mean = float(x.mean())
        x = (x - mean) * rng.uniform(0.8, 1.25) + mean + rng.uniform(-0.1, 0.1)
        if rng.random() < 0.5:
            x = x + rng.normal(0.0, rng.uniform(0.0, 0.02), x.shape).astype(np.float32)
        return np.clip(x, 0.0, 1.0), m

    def batch(self, rng: np.random.Generator) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        picks = np.concatenate(
            [
                rng.choice(self.defect_idx, self.n_defective) if self.n_defective else [],
                rng.choice(self.normal_idx, self.batch_size - self.n_defective)
                if self.batch_size > self.n_defective
                else [],
            ]
        ).astype(int)
        xs, ys = [], []
        for i in picks:
            x, m = self._crop(rng, int(i))
            if self.augment:
                x, m = self._augment(rng, x, m)
            xs.append(x)
            ys.append(m)
        x_batch = np.ascontiguousarray(np.stack(xs), np.float32)
        y_batch = np.ascontiguousarray(np.stack(ys)[..., None], np.float32)
        return x_batch, y_batch
