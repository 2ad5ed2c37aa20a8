"""Train/val/test splits, saved as JSON beside each run: the data's own, or seeded and stratified.

A split given by the data (``train/ val/ test/`` folders, recorded on each sample by discovery) is
used as is; when it has no validation part, one is carved from train (seeded, stratified).
Otherwise the split is seeded and stratified by defect class: defect-free images outnumber
defective ones (about 7:1 on DAGM), so an unstratified split of a few hundred images can leave a
validation set with almost no defects (or none of a rare class); each stratum is therefore
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


def given_split(samples: Sequence[Sample]) -> bool:
    """True when the data's folders split every sample, with a train part and at least one other."""
    parts = {s.split for s in samples}
    return bool(samples) and None not in parts and "train" in parts and len(parts) >= 2


def _stratum(sample: Sample) -> tuple[int, str]:
    # Defective strata first, then defect-free: for one-class data this is the order (and so the
    # seeded result) of the earlier defect/no-defect stratification.
    if sample.classes:
        return (0, sample.classes[0])
    return (0, "defect") if sample.defective else (1, "")


def _cut(
    samples: Sequence[Sample],
    rng: np.random.Generator,
    fractions: tuple[float, float, float],
) -> dict[str, list[str]]:
    parts: dict[str, list[str]] = {k: [] for k in SPLIT_NAMES}
    strata: dict[tuple[int, str], list[str]] = {}
    for s in samples:
        strata.setdefault(_stratum(s), []).append(s.name)
    for key in sorted(strata):
        names = sorted(strata[key])
        order = [names[i] for i in rng.permutation(len(names))]
        n_train = int(round(fractions[0] * len(order)))
        n_val = int(round(fractions[1] * len(order)))
        if len(order) >= 3 and all(f > 0 for f in fractions):
            n_val = max(1, n_val)
            n_train = min(max(1, n_train), len(order) - n_val - 1)
        elif fractions[2] == 0 and len(order) >= 2:  # carving val out of train: one at least
            n_val = max(1, n_val)
            n_train = len(order) - n_val
        parts["train"] += order[:n_train]
        parts["val"] += order[n_train : n_train + n_val]
        parts["test"] += order[n_train + n_val :]
    return parts


def make_split(
    samples: Sequence[Sample],
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
) -> Split:
    """The data's split if it gives one (see :func:`given_split`), else a seeded stratified one.

    A seeded split gives every part at least one image of each stratum (defect class, or
    defect-free) that has three or more.
    """
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise DatasetError(f"split fractions {fractions} must be >= 0 and sum to 1")
    rng = np.random.default_rng(seed)
    if given_split(samples):
        parts = {k: sorted(s.name for s in samples if s.split == k) for k in SPLIT_NAMES}
        source = "data"
        if not parts["val"]:
            # Carve validation out of train with the same val:train ratio as a seeded split.
            train = [s for s in samples if s.split == "train"]
            share = fractions[1] / max(fractions[0] + fractions[1], 1e-9)
            val = set(_cut(train, rng, (1.0 - share, share, 0.0))["val"])
            parts["val"] = sorted(val)
            parts["train"] = [n for n in parts["train"] if n not in val]
            source = "data (validation carved from train, seeded)"
    else:
        parts = _cut(samples, rng, fractions)
        source = "seeded"
    by_name = {s.name: s for s in samples}
    info: dict[str, Any] = {"source": source}
    for k, names in parts.items():
        chosen = [by_name[n] for n in names]
        classes: dict[str, int] = {}
        for s in chosen:
            for c in s.classes:
                classes[c] = classes.get(c, 0) + 1
        info[k] = {
            "images": len(chosen),
            "defective": sum(1 for s in chosen if s.defective),
            "classes": classes,
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
