"""Image-level and pixel-level scores of probability maps (numpy + OpenCV only).

Shared by ``training/evaluate`` and the station's QC validation panel so that the numbers a QC
engineer sees while moving a slider are the numbers the training report printed.

Conventions (every function below follows them):

- A pixel is "defect" at threshold ``t`` when ``prob >= t``.
- Blobs are 8-connected components of the defect pixels.
- An image is judged defective ("alarm") at ``(t, min_area)`` when it has at least one blob with
  ``area >= min_area`` (``min_area <= 1`` means: any defect pixel at all).
- Labels are per image: True = the image truly contains a defect (the positive class).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

ScoreKind = Literal["largest_blob", "max_prob"]


def _components_in_box(
    mask: NDArray[np.uint8],
) -> tuple[int, NDArray[np.int32], NDArray[np.int32], NDArray[np.float64], tuple[int, int]]:
    """Components of ``mask`` labelled on the bounding box of its non-zero pixels: ``(n, box
    labels, stats, centroids, (x, y) of the box)``, stats and centroids in frame coordinates."""
    h, w = mask.shape
    x, y, bw, bh = cv2.boundingRect(mask)
    if bw == 0 or bh == 0:
        stats = np.array([[0, 0, w, h, h * w]], np.int32)
        centre = np.array([[(w - 1) / 2.0, (h - 1) / 2.0]])
        return 1, np.zeros((0, 0), np.int32), stats, centre, (0, 0)
    # OpenCV scans 2 x 2 blocks: an even origin keeps its blocks, hence its label numbering.
    bw, bh, x, y = bw + x % 2, bh + y % 2, x - x % 2, y - y % 2
    n, box_labels, box_stats, box_centroids = cv2.connectedComponentsWithStats(
        mask[y : y + bh, x : x + bw], connectivity=8, ltype=cv2.CV_32S
    )
    stats = np.asarray(box_stats, np.int32).copy()
    stats[1:, cv2.CC_STAT_LEFT] += x
    stats[1:, cv2.CC_STAT_TOP] += y
    centroids = np.asarray(box_centroids, np.float64) + (x, y)
    areas = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    background = h * w - int(areas.sum())
    stats[0] = (0, 0, w, h, background)
    if background > 0:  # the frame's centroid, less the blobs' share
        whole = np.array([(w - 1) / 2.0, (h - 1) / 2.0]) * (h * w)
        centroids[0] = (whole - (centroids[1:] * areas[:, None]).sum(axis=0)) / background
    return n, np.asarray(box_labels, np.int32), stats, centroids, (x, y)


def components(
    mask: NDArray[np.uint8],
) -> tuple[int, NDArray[np.int32], NDArray[np.int32], NDArray[np.float64]]:
    """``cv2.connectedComponentsWithStats(mask, 8)`` (labels, stats, centroids), same results,
    computed on the bounding box of the mask's non-zero pixels only.

    Defects cover a small part of a frame and most frames have none; labelling the whole frame
    cost ~1.4 ms per 512 x 512 frame here, the bounding box a few microseconds to find. Row 0
    (the background) still describes the whole frame.
    """
    n, box_labels, stats, centroids, (x, y) = _components_in_box(mask)
    labels = np.zeros(mask.shape, np.int32)
    bh, bw = box_labels.shape
    labels[y : y + bh, x : x + bw] = box_labels
    return n, labels, stats, centroids


def blob_areas(prob: NDArray, threshold: float) -> NDArray[np.int64]:
    """Areas (pixels) of the 8-connected blobs of ``prob >= threshold``, in label order.

    Parameters
    ----------
    prob
        HxW probability map (HxWx1 accepted).
    threshold
        Pixel threshold.

    Returns
    -------
    ndarray of int64
        One area per blob; empty when nothing reaches the threshold.
    """
    p = np.asarray(prob)
    if p.ndim == 3 and p.shape[2] == 1:
        p = p[:, :, 0]
    if p.ndim != 2:
        raise ValueError(f"probability map must be HxW, got shape {p.shape}")
    # Compare in the map's own float type (as the station's inspector does): float32(0.7) is just
    # below the float64 0.7, and a pixel saturated at exactly the threshold must count.
    thr = p.dtype.type(threshold) if p.dtype.kind == "f" else threshold
    mask = (p >= thr).view(np.uint8)
    stats = _components_in_box(mask)[2]  # areas only: no frame-sized label image
    return stats[1:, cv2.CC_STAT_AREA].astype(np.int64)  # row 0 is the background


def image_score(prob: NDArray, threshold: float) -> int:
    """Area of the largest blob at ``threshold`` (0 when there is none)."""
    areas = blob_areas(prob, threshold)
    return int(areas.max()) if areas.size else 0


def decide(prob: NDArray, threshold: float, min_area: int) -> bool:
    """True (defective / NG) when any blob at ``threshold`` has ``area >= min_area``."""
    return image_score(prob, threshold) >= max(1, int(min_area))


def image_scores(
    probs: Sequence[NDArray], threshold: float = 0.5, *, kind: ScoreKind = "largest_blob"
) -> NDArray[np.float64]:
    """One ranking score per image, for :func:`pr_curve` / :func:`average_precision`.

    Parameters
    ----------
    probs
        Probability maps.
    threshold
        Pixel threshold (used by ``"largest_blob"`` only).
    kind
        ``"largest_blob"``: area of the largest blob at ``threshold`` (ranks images the way the
        station decides them); ``"max_prob"``: the map's maximum probability.
    """
    scorers: dict[str, Callable[[NDArray], float]] = {
        "largest_blob": lambda p: float(image_score(p, threshold)),
        "max_prob": lambda p: float(np.max(p)) if np.size(p) else 0.0,
    }
    if kind not in scorers:
        raise ValueError(f"score kind {kind!r} is not one of {sorted(scorers)}")
    return np.array([scorers[kind](p) for p in probs], dtype=np.float64)


@dataclass(frozen=True)
class ThresholdRow:
    """Image-level confusion counts and rates at one pixel threshold.

    ``precision = tp / (tp + fp)``, defined as 1.0 when nothing was flagged (no alarm raised, so
    no false alarm); ``recall = tp / (tp + fn)``, 0.0 when the set has no defective image;
    ``fpr = fp / (fp + tn)``, 0.0 when the set has no defect-free image.
    """

    threshold: float
    tp: int
    tn: int
    fp: int
    fn: int
    precision: float
    recall: float
    fpr: float

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready), keys as in ``report.json``'s ``image_level`` rows."""
        return asdict(self)


def confusion_row(threshold: float, predicted: ArrayLike, labels: ArrayLike) -> ThresholdRow:
    """Build a :class:`ThresholdRow` from per-image decisions and true labels."""
    pred = np.asarray(predicted, dtype=bool)
    true = np.asarray(labels, dtype=bool)
    if pred.shape != true.shape:
        raise ValueError(f"{pred.size} decisions but {true.size} labels")
    tp = int(np.sum(pred & true))
    tn = int(np.sum(~pred & ~true))
    fp = int(np.sum(pred & ~true))
    fn = int(np.sum(~pred & true))
    return ThresholdRow(
        threshold=float(threshold),
        tp=tp,
        tn=tn,
        fp=fp,
        fn=fn,
        precision=tp / (tp + fp) if tp + fp else 1.0,
        recall=tp / (tp + fn) if tp + fn else 0.0,
        fpr=fp / (fp + tn) if fp + tn else 0.0,
    )


def threshold_table(
    probs: Sequence[NDArray],
    labels: Sequence[bool] | ArrayLike,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    min_area: int = 0,
) -> list[ThresholdRow]:
    """The seed's image-level table: one :class:`ThresholdRow` per threshold.

    Parameters
    ----------
    probs
        Probability maps, one per image (any sizes).
    labels
        True where the image truly contains a defect.
    thresholds
        Pixel thresholds, default 0.1 ... 0.9.
    min_area
        Minimum blob area (pixels of the map) for an image to be flagged.
    """
    true = np.asarray(labels, dtype=bool).reshape(-1)
    if len(probs) != true.size:
        raise ValueError(f"{len(probs)} probability maps but {true.size} labels")
    need = max(1, int(min_area))
    rows = []
    for t in thresholds:
        flagged = [image_score(p, t) >= need for p in probs]
        rows.append(confusion_row(t, flagged, true))
    return rows


def pr_curve(
    scores: ArrayLike, labels: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Precision-recall curve, with scikit-learn's ``precision_recall_curve`` definition.

    Parameters
    ----------
    scores
        Per-image scores; higher = more likely defective (see :func:`image_scores`).
    labels
        True for defective images.

    Returns
    -------
    precision, recall, thresholds
        ``thresholds`` are the distinct scores, ascending; ``precision[i]`` / ``recall[i]`` are
        for "flag when score >= thresholds[i]"; a final point (precision 1, recall 0) is
        appended, so precision and recall are one longer than thresholds. A threshold flagging
        nothing would have precision 0/0; as in scikit-learn it is never listed. With no positive
        label at all, recall is 1.0 everywhere (scikit-learn's convention).
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=bool).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    if s.size == 0:
        raise ValueError("pr_curve needs at least one score")
    order = np.argsort(s, kind="mergesort")[::-1]
    s, y = s[order], y[order]
    # last index of each run of equal scores (descending): one curve point per distinct score
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(y)[last].astype(np.float64)
    fps = (last + 1) - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1] if tps[-1] > 0 else np.ones_like(tps)
    rev = slice(None, None, -1)
    return np.r_[precision[rev], 1.0], np.r_[recall[rev], 0.0], s[last][rev]


def average_precision(scores: ArrayLike, labels: ArrayLike) -> float:
    """Step-wise average precision, ``sum_n (R_n - R_{n-1}) P_n`` (scikit-learn's definition).

    No interpolation (unlike the 11-point VOC AP). Returns 0.0 when there is no positive label
    (AP is undefined there; scikit-learn warns and returns a meaningless value).
    """
    y = np.asarray(labels, dtype=bool).reshape(-1)
    if not y.any():
        return 0.0
    precision, recall, _ = pr_curve(scores, y)
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def _as_bool(mask: ArrayLike) -> NDArray[np.bool_]:
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[:, :, 0]
    return m.astype(bool)


def dice(pred_mask: ArrayLike, true_mask: ArrayLike, *, eps: float = 0.0) -> float:
    """Dice coefficient ``(2|A∩B| + eps) / (|A| + |B| + eps)`` of two binary masks.

    Masks are boolean or numeric (nonzero = defect); threshold probability maps first. With the
    default ``eps = 0``, two empty masks score 1.0 (perfect agreement on "no defect").
    ``eps=1e-5`` reproduces UNet_Industrial's per-image metric.
    """
    a, b = _as_bool(pred_mask), _as_bool(true_mask)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    inter = float(np.count_nonzero(a & b))
    total = float(np.count_nonzero(a) + np.count_nonzero(b))
    if total + eps == 0.0:
        return 1.0
    return (2.0 * inter + eps) / (total + eps)


def iou(pred_mask: ArrayLike, true_mask: ArrayLike) -> float:
    """Intersection over union ``|A∩B| / |A∪B|``; two empty masks score 1.0 (as in :func:`dice`)."""
    a, b = _as_bool(pred_mask), _as_bool(true_mask)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    union = np.count_nonzero(a | b)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(a & b)) / float(union)


def recall_at_fpr(scores: ArrayLike, labels: ArrayLike, max_fpr: float) -> float:
    """Best recall over the score cut-offs whose false-alarm rate is at most ``max_fpr``.

    The figure a line asks for ("find 95 % of the defects, stop at most 2 % of good parts"),
    read off the ranking alone; flagging is ``score >= cut``. 0.0 when no cut-off qualifies or
    there is no defective image.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=bool).reshape(-1)
    if not y.any():
        return 0.0
    negatives = max(1, int((~y).sum()))
    best = 0.0
    for cut in np.unique(s):
        flagged = s >= cut
        if cut <= 0 and not (s > 0).all():
            continue  # "flag everything with no blob" is not a cut-off the station can make
        if (flagged & ~y).sum() / negatives <= max_fpr:
            best = max(best, float((flagged & y).sum() / y.sum()))
    return best
