"""Datasets without TensorFlow: discovery of every layout, mask decoding, splits, the generator.

Nothing here imports TensorFlow (the station imports :mod:`training.data.discovery`).
"""

from __future__ import annotations

from training.data.discovery import Dataset, discover, find_samples
from training.data.loaders import Problem, Sample
from training.data.masks import DatasetError, read_image, read_labels, read_mask
from training.data.split import Split, given_split, load_split, make_split, save_split
from training.data.summary_text import format_summary

__all__ = [
    "Dataset",
    "DatasetError",
    "Problem",
    "Sample",
    "Split",
    "discover",
    "find_samples",
    "format_summary",
    "given_split",
    "load_split",
    "make_split",
    "read_image",
    "read_labels",
    "read_mask",
    "save_split",
]
