"""Per-class minimum areas chosen on validation, and the image-level result they give.

A QC engineer's tolerance differs per defect type; the model's validation frames say where each
class separates good parts from bad ones. Per class, at the operating threshold:

* ``normal_max_area``: the largest blob the model gives the class on a defect-free frame;
* ``found_min_area``: the smallest blob of the class lying on a true defect of that class.

When ``found_min_area > normal_max_area`` the class separates on validation and its minimum area
is the midpoint (equal room both sides, as :func:`training.evaluate.suggest_operating_point` does
for the global rule); otherwise no per-class value is suggested and the global minimum area
stays. The result is written to ``report.json`` (``suggested_class_rules``) in the recipe's
``[rules.classes.<name>]`` terms, with the image-level confusion those rules give on the
evaluated split (``class_rules_operating_point``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engines import scoring
from training.class_metrics import class_blobs


def suggest_class_rules(
    probs: Sequence[NDArray[np.float32]],
    class_maps: Sequence[NDArray[np.float32] | None],
    truths: Sequence[NDArray[np.uint8]],
    data_classes: Sequence[str],
    model_classes: Sequence[str],
    threshold: float,
) -> dict[str, dict[str, Any]]:
    """``{class: {"min_area_px" (only when separable), "normal_max_area", "found_min_area",
    "separable"}}`` from validation frames (module docstring); {} for a one-class model."""
    if len(model_classes) < 2 or any(c is None for c in class_maps):
        return {}
    normal_max = dict.fromkeys(model_classes, 0)
    found_min: dict[str, int | None] = dict.fromkeys(model_classes, None)
    for prob, cmap, truth in zip(probs, class_maps, truths, strict=True):
        assert cmap is not None
        lab, areas, index = class_blobs(prob, cmap, threshold)
        good = not truth.any()
        for blob in range(1, len(areas)):
            if index[blob] < 0:
                continue
            name = model_classes[int(index[blob])]
            if good:
                normal_max[name] = max(normal_max[name], int(areas[blob]))
                continue
            ids = truth[lab == blob]
            true_ids = {int(i) for i in np.unique(ids[ids > 0])}
            if any(data_classes[i - 1] == name for i in true_ids if i <= len(data_classes)):
                prev = found_min[name]
                found_min[name] = int(areas[blob]) if prev is None else min(prev, int(areas[blob]))
    out: dict[str, dict[str, Any]] = {}
    for name in model_classes:
        lo, hi = normal_max[name], found_min[name]
        entry: dict[str, Any] = {
            "normal_max_area": lo,
            "found_min_area": hi,
            "separable": hi is not None and hi > lo,
        }
        if hi is not None and hi > lo:
            entry["min_area_px"] = int((lo + hi + 1) // 2)
        out[name] = entry
    return out


def flag_with_class_rules(
    probs: Sequence[NDArray[np.float32]],
    class_maps: Sequence[NDArray[np.float32] | None],
    threshold: float,
    min_area: int,
    rules: dict[str, dict[str, Any]],
    model_classes: Sequence[str],
) -> NDArray[np.bool_]:
    """Per frame: is there a blob at least its class's minimum area (the global one for a class
    without its own, and for unclassified blobs)? What the station's judge decides with those
    rules and no count limits."""
    flagged = []
    for prob, cmap in zip(probs, class_maps, strict=True):
        if cmap is None:
            flagged.append(scoring.decide(prob, threshold, min_area))
            continue
        _, areas, index = class_blobs(prob, cmap, threshold)
        hit = False
        for blob in range(1, len(areas)):
            name = model_classes[int(index[blob])] if index[blob] >= 0 else None
            need = rules.get(name or "", {}).get("min_area_px", min_area)
            hit = hit or int(areas[blob]) >= max(1, int(need))
        flagged.append(hit)
    return np.array(flagged, bool)
