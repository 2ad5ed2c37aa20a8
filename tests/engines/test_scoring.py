"""Blob decisions, the threshold table, PR/AP and Dice/IoU on hand-made maps with known answers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engines import scoring
from engines.scoring import (
    DEFAULT_THRESHOLDS,
    average_precision,
    blob_areas,
    decide,
    dice,
    image_score,
    image_scores,
    iou,
    pr_curve,
    threshold_table,
)


def blank(value: float = 0.0) -> np.ndarray:
    return np.full((20, 20), value, dtype=np.float32)


def with_blob(prob: float, size: int, at: tuple[int, int] = (2, 2)) -> np.ndarray:
    p = blank(0.05)
    y, x = at
    p[y : y + size, x : x + size] = prob
    return p


def test_blobs_are_eight_connected_and_threshold_is_inclusive() -> None:
    p = blank()
    p[1, 1] = p[2, 2] = p[3, 3] = 0.5  # a diagonal line: one blob under 8-connectivity
    p[10:12, 10:13] = 0.9  # 6 px
    assert sorted(blob_areas(p, 0.5).tolist()) == [3, 6]
    assert image_score(p, 0.5) == 6
    assert image_score(p, 0.51) == 6 and blob_areas(p, 0.51).tolist() == [6]
    assert image_score(p, 0.95) == 0
    assert decide(p, 0.5, 6) and not decide(p, 0.5, 7)
    assert decide(p, 0.5, 0) and not decide(blank(), 0.5, 0)
    assert blob_areas(p[:, :, None], 0.5).size == 2
    q = blank()
    q[0, 0] = np.float32(0.7)  # below float64 0.7; compared as float32 it meets the threshold
    assert image_score(q, 0.7) == 1


def test_threshold_table_on_a_hand_made_set() -> None:
    probs = [
        with_blob(0.95, 4),  # defective, strong 16 px blob          -> TP at every threshold
        with_blob(0.55, 3),  # defective, weak 9 px blob             -> TP up to 0.5, FN above
        blank(0.05),  # defective but missed                  -> FN everywhere
        with_blob(0.75, 2),  # defect-free, 4 px false alarm  -> FP up to 0.7 (min_area 4)
        with_blob(0.95, 1),  # defect-free, 1 px speck        -> TN (below min_area)
        blank(0.05),  # defect-free, clean                    -> TN
    ]
    labels = [True, True, True, False, False, False]
    rows = {round(r.threshold, 1): r for r in threshold_table(probs, labels, min_area=4)}
    assert list(rows) == list(DEFAULT_THRESHOLDS)
    r = rows[0.5]
    assert (r.tp, r.fn, r.fp, r.tn) == (2, 1, 1, 2)
    assert r.precision == pytest.approx(2 / 3) and r.recall == pytest.approx(2 / 3)
    assert r.fpr == pytest.approx(1 / 3)
    r = rows[0.8]
    assert (r.tp, r.fn, r.fp, r.tn) == (1, 2, 0, 3)
    assert r.precision == 1.0 and r.fpr == 0.0
    assert rows[0.1].as_dict() == {
        "threshold": 0.1, "tp": 2, "tn": 2, "fp": 1, "fn": 1,
        "precision": pytest.approx(2 / 3), "recall": pytest.approx(2 / 3),
        "fpr": pytest.approx(1 / 3),
    }  # fmt: skip
    nothing = threshold_table([blank()], [True], thresholds=(0.5,))[0]
    assert (nothing.precision, nothing.recall) == (1.0, 0.0)  # no alarm raised: precision 1
    no_positives = threshold_table([blank()], [False], thresholds=(0.5,))[0]
    assert (no_positives.recall, no_positives.fpr) == (0.0, 0.0)
    with pytest.raises(ValueError):
        threshold_table([blank()], [True, False])


def test_pr_curve_and_ap_match_scikit_learn_reference_values() -> None:
    # scikit-learn's documented example for precision_recall_curve / average_precision_score
    precision, recall, thresholds = pr_curve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    np.testing.assert_allclose(precision, [0.5, 2 / 3, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(recall, [1.0, 1.0, 0.5, 0.5, 0.0])
    np.testing.assert_allclose(thresholds, [0.1, 0.35, 0.4, 0.8])
    assert average_precision([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.8333333)
    # ties collapse into one point; perfect ranking gives AP 1
    assert average_precision([5, 5, 0, 0], [1, 1, 0, 0]) == 1.0
    assert average_precision([1, 1, 1, 1], [1, 0, 1, 0]) == pytest.approx(0.5)
    assert average_precision([0.3, 0.2], [0, 0]) == 0.0
    with pytest.raises(ValueError):
        pr_curve([1.0], [1, 0])


def test_image_scores_are_selectable() -> None:
    probs = [with_blob(0.95, 4), with_blob(0.6, 5), blank(0.05)]
    np.testing.assert_array_equal(image_scores(probs, 0.5), [16, 25, 0])
    np.testing.assert_allclose(image_scores(probs, kind="max_prob"), [0.95, 0.6, 0.05], atol=1e-6)
    assert average_precision(image_scores(probs, 0.5), [True, True, False]) == 1.0
    with pytest.raises(ValueError):
        image_scores(probs, kind="mean")  # type: ignore[arg-type]


def test_dice_and_iou_conventions() -> None:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert dice(a, b) == 1.0 and iou(a, b) == 1.0  # both empty: perfect agreement
    a[0, :2] = True
    assert dice(a, b) == 0.0 and iou(a, b) == 0.0
    b[0, 1:3] = True  # overlap 1 px, |A| = |B| = 2
    assert dice(a, b) == pytest.approx(0.5) and iou(a, b) == pytest.approx(1 / 3)
    assert dice(np.zeros((2, 2)), np.zeros((2, 2)), eps=1e-5) == 1.0
    assert dice(a.astype(np.uint8) * 255, b) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        dice(a, b[:2])


@pytest.mark.parametrize("seed", range(6))
def test_components_on_the_bounding_box_equal_opencv_on_the_frame(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = np.zeros((97, 131), np.uint8)
    if seed:  # seed 0: an empty frame
        y, x = rng.integers(0, 60, 2)
        mask[y : y + 30, x : x + 50] = rng.random((30, 50)) > 0.6  # many small blobs
        mask[0, 130] = seed % 2  # a corner pixel stretches the box on odd seeds
    n, labels, stats, centroids = scoring.components(mask)
    ref = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)
    assert n == ref[0]
    assert np.array_equal(labels, ref[1])
    assert np.array_equal(stats, ref[2])
    assert np.allclose(centroids, ref[3])
