"""Seeded train/val/test splits stratified by "has a defect", saved as JSON beside each run.

Defect-free images outnumber defective ones (about 7:1 on DAGM), so an unstratified split of a
few hundred images can leave a validation set with almost no defects; each class is therefore
shuffled and cut separately.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.data.loaders import DatasetError, Sample

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    train: list[str]
    val: list[str]
    test: list[str]
    seed: int = 0
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    info: dict[str, Any] = field(default_factory=dict)

    def names(self, which: str) -> list[str]:
        if which not in SPLIT_NAMES:
            raise DatasetError(f"unknown split {which!r} (expected one of {SPLIT_NAMES})")
        return list(getattr(self, which))

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "fractions": list(self.fractions),
            "info": self.info,
            "train": self.train,
            "val": self.val,
            "test": self.test,
        }


def make_split(
    samples: Sequence[Sample],
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
) -> Split:
    """Stratified split; every part gets at least one defective image when there are three."""
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise DatasetError(f"split fractions {fractions} must be >= 0 and sum to 1")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[str]] = {k: [] for k in SPLIT_NAMES}
    for flag in (True, False):
        names = sorted(s.name for s in samples if s.defective == flag)
        order = [names[i] for i in rng.permutation(len(names))]
        n_train = int(round(fractions[0] * len(order)))
        n_val = int(round(fractions[1] * len(order)))
        if len(order) >= 3 and all(f > 0 for f in fractions):
            n_val = max(1, n_val)
            n_train = min(max(1, n_train), len(order) - n_val - 1)
        parts["train"] += order[:n_train]
        parts["val"] += order[n_train : n_train + n_val]
        parts["test"] += order[n_train + n_val :]
    info = {
        k: {"images": len(v), "defective": sum(1 for s in samples if s.defective and s.name in v)}
        for k, v in parts.items()
    }
    return Split(
        **{k: sorted(v) for k, v in parts.items()}, seed=seed, fractions=fractions, info=info
    )


def save_split(split: Split, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(split.to_dict(), indent=1) + "\n", encoding="utf-8")
    return path


def load_split(path: str | Path) -> Split:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Split(
            train=list(data["train"]),
            val=list(data["val"]),
            test=list(data["test"]),
            seed=int(data.get("seed", 0)),
            fractions=tuple(data.get("fractions", (0.6, 0.2, 0.2))),
            info=dict(data.get("info", {})),
        )
    except FileNotFoundError:
        raise DatasetError(f"{path}: split file not found") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path}: not a split file ({exc})") from None
