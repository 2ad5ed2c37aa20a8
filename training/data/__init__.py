"""Datasets without TensorFlow: DAGM 2007 and images+masks loaders, splits, the synthetic generator."""

from __future__ import annotations

from training.data.loaders import (
    DatasetError,
    Sample,
    find_samples,
    read_image,
    read_mask,
)
from training.data.split import Split, load_split, make_split, save_split

__all__ = [
    "DatasetError",
    "Sample",
    "Split",
    "find_samples",
    "load_split",
    "make_split",
    "read_image",
    "read_mask",
    "save_split",
]
