"""The threshold table, the operating point and the pixel metrics on a hand-made set."""

from __future__ import annotations

import numpy as np
import pytest

from engines import scoring
from training.evaluate import pixel_metrics, remove_small, suggest_operating_point

pytestmark = pytest.mark.training


def _map(blobs: list[tuple[int, int, int, float]], size: int = 64) -> np.ndarray:
    """A probability map with square blobs (y, x, side, probability)."""
    p = np.zeros((size, size), np.float32)
    for y, x, side, prob in blobs:
        p[y : y + side, x : x + side] = prob
    return p


@pytest.fixture()
def handmade() -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
    probs = [
        _map([(5, 5, 10, 0.95)]),  # defective, big and sure: area 100
        _map([(30, 30, 5, 0.45)]),  # defective, faint: area 25 at t <= 0.4
        _map([(40, 40, 3, 0.75)]),  # normal, a small false blob: area 9 at t <= 0.7
        _map([]),  # normal, clean
    ]
    labels = np.array([True, True, False, False])
    masks = [p > 0 for p in probs[:2]] + [np.zeros((64, 64), bool)] * 2
    return probs, labels, masks


def test_threshold_table_counts(handmade: tuple) -> None:
    probs, labels, _ = handmade
    rows = {r.threshold: r for r in scoring.threshold_table(probs, labels, min_area=0)}
    assert (rows[0.4].tp, rows[0.4].fn, rows[0.4].fp, rows[0.4].tn) == (2, 0, 1, 1)
    assert (rows[0.5].tp, rows[0.5].fn, rows[0.5].fp, rows[0.5].tn) == (1, 1, 1, 1)
    assert (rows[0.8].tp, rows[0.8].fn, rows[0.8].fp, rows[0.8].tn) == (1, 1, 0, 2)
    assert rows[0.5].precision == pytest.approx(0.5) and rows[0.5].fpr == pytest.approx(0.5)
    # a minimum area above the false blob (9) but below the faint defect (25) separates at 0.4
    row = scoring.threshold_table(probs, labels, thresholds=(0.4,), min_area=17)[0]
    assert (row.tp, row.fp, row.fn, row.tn) == (2, 0, 0, 2)
    assert row.as_dict().keys() == {
        "threshold",
        "tp",
        "tn",
        "fp",
        "fn",
        "precision",
        "recall",
        "fpr",
    }


def test_operating_point_is_the_midpoint(handmade: tuple) -> None:
    probs, labels, _ = handmade
    op = suggest_operating_point(probs, labels, thresholds=(0.3, 0.4, 0.5, 0.8))
    # at 0.3 / 0.4: normal_max 9, defect_min 25 -> ratio 2.8; at 0.8: defect 2 has no blob
    assert op["separable"] and op["threshold"] == pytest.approx(0.4)
    assert op["normal_max_area"] == 9 and op["defect_min_area"] == 25
    assert op["min_area_px"] == 17  # the midpoint of 9 and 25 (rounded up)
    flagged = scoring.image_scores(probs, op["threshold"]) >= op["min_area_px"]
    assert flagged.tolist() == labels.tolist()


def test_operating_point_when_nothing_separates() -> None:
    probs = [_map([(0, 0, 4, 0.9)]), _map([(0, 0, 6, 0.9)])]
    op = suggest_operating_point(probs, np.array([True, False]), thresholds=(0.5,))
    assert not op["separable"] and op["min_area_px"] >= 1


def test_without_separation_the_best_recall_within_the_false_alarm_rate_wins() -> None:
    # defects of 3, 4, 6, 7 px side; one of 50 good images carries a 5 px false blob
    defects = [_map([(0, 0, side, 0.9)]) for side in (3, 4, 6, 7)]
    goods = [_map([(0, 0, 5, 0.9)])] + [_map([]) for _ in range(49)]
    labels = np.array([True] * 4 + [False] * 50)
    probs = defects + goods
    op = suggest_operating_point(probs, labels, thresholds=(0.5,))
    # 1 false alarm in 50 = 2 %: every defect is found at the smallest defect's area
    assert not op["separable"] and op["min_area_px"] == 9
    assert op["recall"] == 1.0 and op["false_alarm_rate"] == pytest.approx(0.02)
    # no false alarm allowed: only the two defects larger than the false blob
    strict = suggest_operating_point(probs, labels, thresholds=(0.5,), max_false_alarm_rate=0.0)
    assert strict["min_area_px"] == 36 and strict["recall"] == 0.5
    assert strict["false_alarm_rate"] == 0.0


def test_without_separation_ties_go_to_the_better_segmentation() -> None:
    # the same images are flagged at 0.6 and 0.3; the defect's faint rim (0.4) belongs to it
    truth = _map([(10, 10, 12, 1.0)]) > 0
    defect = _map([(10, 10, 12, 0.4), (13, 13, 6, 0.9)])
    goods = [_map([(40, 40, 13, 0.9)])] + [_map([]) for _ in range(9)]  # larger: no separation
    probs, labels = [defect, *goods], np.array([True] + [False] * 10)
    masks = [truth] + [np.zeros_like(truth)] * 10
    op = suggest_operating_point(probs, labels, masks=masks, thresholds=(0.6, 0.3),
                                 max_false_alarm_rate=0.1)  # fmt: skip
    assert not op["separable"] and op["recall"] == 1.0 and op["false_alarm_rate"] == 0.1
    assert op["threshold"] == pytest.approx(0.3) and op["val_dice"] == pytest.approx(1.0)


def test_pixel_metrics_honest_and_unet_industrial(handmade: tuple) -> None:
    probs, _, masks = handmade
    m = pixel_metrics(probs, masks, threshold=0.5)
    # defective: image 0 perfect (1.0), image 1 missed (0.0) -> honest dice 0.5
    assert m["dice"] == pytest.approx(0.5) and m["iou"] == pytest.approx(0.5)
    # all images, eps 1e-5: 1.0, ~0, ~0 (false blob), 1.0 (empty == empty)
    assert m["dice_unet_industrial"] == pytest.approx(0.5, abs=1e-4)
    after = pixel_metrics(probs, masks, threshold=0.5, min_area=17)
    assert after["dice_unet_industrial"] == pytest.approx(0.75, abs=1e-4)


def test_remove_small_keeps_large_blobs() -> None:
    binary = _map([(0, 0, 2, 1.0), (10, 10, 5, 1.0)]) > 0
    kept = remove_small(binary, 5)
    assert kept.sum() == 25 and not kept[0, 0]


def test_operating_point_prefers_better_dice_when_safely_separable() -> None:
    truth = _map([(10, 10, 20, 1.0)]) > 0
    # the defect map is sure in its core (0.9) and fainter at its rim (0.35): 0.3 segments it all
    defect = _map([(10, 10, 20, 0.35), (14, 14, 12, 0.9)])
    probs = [defect, _map([])]
    labels = np.array([True, False])
    op = suggest_operating_point(probs, labels, masks=[truth, np.zeros_like(truth)],
                                 thresholds=(0.3, 0.5))  # fmt: skip
    assert op["threshold"] == pytest.approx(0.3) and op["val_dice"] == pytest.approx(1.0)
    assert op["min_area_px"] == 200  # ceil((0 + 400) / 2)


def test_recall_at_false_alarm_rate_reads_the_ranking() -> None:
    from engines.scoring import recall_at_fpr

    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], bool)
    scores = np.array([9, 8, 5, 0, 7, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], float)
    assert recall_at_fpr(scores, labels, 0.0) == 0.5  # cut at 8: two found, no false alarm
    assert recall_at_fpr(scores, labels, 1 / 16) == 0.75  # cut at 5 lets one good part through
    # the image without a blob (score 0) is never found: no cut-off flags "nothing"
    assert recall_at_fpr(scores, labels, 1.0) == 0.75
    assert recall_at_fpr(scores, np.zeros(20, bool), 0.5) == 0.0
