"""Per-class evaluation: Dice / IoU per defect class, found / missed defects, class confusion.

Blobs are judged the way the station judges them: the prediction is thresholded, blobs below the
minimum area are dropped, and each remaining blob takes the class with the highest mean class
probability over its pixels (:func:`blob_class_index`, the same rule as
``app.station.inspector.blob_classes``; training may not import the station, a test keeps the two
in step). A pixel's predicted class is its blob's class, so the Dice of a class measures what the
station would paint and count.

* ``per_class[name]``: ``images`` (test images whose mask holds the class), ``dice`` / ``iou``
  (mean over those images of the overlap between that class's mask and the blobs predicted as
  that class; for a one-class model, every predicted blob), ``found`` / ``missed`` (connected
  true defects of the class that some predicted blob overlaps, or none does).
* ``class_confusion``: rows are the true classes plus ``"none"`` (predicted blobs on no true
  defect: false alarms), columns the predicted classes plus ``"missed"``; each true defect is
  counted once, under the class of the predicted blob that overlaps it most.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from engines import scoring

MISSED = "missed"
NONE = "none"


def blob_class_index(
    labels: NDArray[np.int32], n: int, class_map: NDArray[np.float32]
) -> NDArray[np.intp]:
    """Per label of ``labels`` (``n`` labels, 0 = background): the index of the class with the
    highest mean probability over the blob, -1 where the blob has no class probability at all."""
    on = labels > 0
    lab = labels[on]
    areas = np.bincount(lab, minlength=n).astype(np.float64)
    k = class_map.shape[2]
    means = np.zeros((n, k))
    for c in range(k):
        vals = np.clip(np.nan_to_num(class_map[:, :, c][on], nan=0.0), 0.0, 1.0)
        sums = np.bincount(lab, weights=vals.astype(np.float64), minlength=n)
        means[:, c] = np.divide(sums, areas, out=np.zeros(n), where=areas > 0)
    index = np.argmax(means, axis=1).astype(np.intp)
    index[means[np.arange(n), index] <= 0.0] = -1
    return index


def class_blobs(
    prob: NDArray[np.float32], cmap: NDArray[np.float32] | None, threshold: float
) -> tuple[NDArray[np.int32], NDArray[np.int64], NDArray[np.intp]]:
    """Labels, areas and class index (:func:`blob_class_index`; all 0 for a one-class model) of
    every 8-connected blob at ``threshold``; index 0 of the areas is the background."""
    n, raw, stats, _ = cv2.connectedComponentsWithStats(
        (prob >= np.float32(threshold)).astype(np.uint8), connectivity=8, ltype=cv2.CV_32S
    )
    lab: NDArray[np.int32] = np.asarray(raw, np.int32)
    areas = np.asarray(stats[:, cv2.CC_STAT_AREA], np.int64)
    index = np.zeros(n, np.intp) if cmap is None else blob_class_index(lab, n, cmap)
    return lab, areas, index


def _components(mask: NDArray[np.bool_]) -> tuple[int, NDArray[np.int32]]:
    n, lab = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    return int(n), np.asarray(lab, np.int32)


def class_report(
    probs: Sequence[NDArray[np.float32]],
    class_maps: Sequence[NDArray[np.float32] | None],
    truths: Sequence[NDArray[np.uint8]],
    data_classes: Sequence[str],
    model_classes: Sequence[str],
    threshold: float,
    min_area: int = 0,
) -> dict[str, Any]:
    """``{"per_class": ..., "class_confusion": ...}`` (see the module docstring).

    ``truths`` hold the data's class ids (0 = background, ``i + 1`` = ``data_classes[i]``);
    ``class_maps`` the model's H x W x K class probabilities (None for a one-class model, whose
    blobs all take ``model_classes[0]``).
    """
    from training.evaluate import remove_small

    model_classes = list(model_classes)
    dices: dict[str, list[float]] = {c: [] for c in data_classes}
    ious: dict[str, list[float]] = {c: [] for c in data_classes}
    found = dict.fromkeys(data_classes, 0)
    missed = dict.fromkeys(data_classes, 0)
    columns = [*model_classes, MISSED]
    confusion = {r: dict.fromkeys(columns, 0) for r in [*data_classes, NONE]}
    for prob, cmap, truth in zip(probs, class_maps, truths, strict=True):
        pred = remove_small(prob >= threshold, min_area)
        n, lab = _components(pred)
        if cmap is not None:
            index = blob_class_index(lab, n, cmap)
        else:
            index = np.zeros(n, np.intp)
        names = np.array([model_classes[i] if i >= 0 else NONE for i in index], dtype=object)
        for i, name in enumerate(data_classes, 1):
            t = truth == i
            if not t.any():
                continue
            p = pred if cmap is None else (lab > 0) & (names[lab] == name)
            dices[name].append(scoring.dice(p, t))
            ious[name].append(scoring.iou(p, t))
            tn, tlab = _components(t)
            for blob in range(1, tn):
                hits = lab[tlab == blob]
                hits = hits[hits > 0]
                if hits.size == 0:
                    missed[name] += 1
                    confusion[name][MISSED] += 1
                    continue
                found[name] += 1
                best = int(np.bincount(hits).argmax())
                column = str(names[best])
                confusion[name][column] = confusion[name].get(column, 0) + 1
        on_truth = np.unique(lab[truth > 0])
        for blob in set(range(1, n)) - {int(b) for b in on_truth}:
            column = str(names[blob])
            confusion[NONE][column] = confusion[NONE].get(column, 0) + 1
    nan = float("nan")
    per_class = {
        c: {
            "images": len(dices[c]),
            "dice": float(np.mean(dices[c])) if dices[c] else nan,
            "iou": float(np.mean(ious[c])) if ious[c] else nan,
            "found": found[c],
            "missed": missed[c],
        }
        for c in data_classes
    }
    return {"per_class": per_class, "class_confusion": confusion}
