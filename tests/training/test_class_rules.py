"""Per-class minimum areas chosen on validation (training/class_rules.py)."""

from __future__ import annotations

import numpy as np

from training.class_rules import flag_with_class_rules, suggest_class_rules

CLASSES = ["crack", "stain"]


def _frame(blob_px: int, cls: int, truth_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 40x40 map with one blob of ``blob_px`` pixels (a row run) given class ``cls``, and a
    truth mask holding ``truth_id`` under the blob (0 = a defect-free frame)."""
    prob = np.zeros((40, 40), np.float32)
    cmap = np.zeros((40, 40, 2), np.float32)
    ys, xs = np.divmod(np.arange(blob_px), 40)
    prob[ys + 5, xs] = 0.9
    cmap[ys + 5, xs, cls] = 0.8
    cmap[ys + 5, xs, 1 - cls] = 0.2
    truth = np.zeros((40, 40), np.uint8)
    truth[ys + 5, xs] = truth_id
    return prob, cmap, truth


def test_a_class_that_separates_gets_the_midpoint_and_one_that_does_not_keeps_the_global() -> None:
    frames = [
        _frame(10, 0, 0),  # a good part with a 10 px "crack"
        _frame(30, 0, 1),  # a 30 px true crack
        _frame(5, 1, 2),  # a 5 px true stain
        _frame(8, 1, 0),  # a good part with an 8 px "stain": stains do not separate
    ]
    probs, maps, truths = (list(x) for x in zip(*frames, strict=True))
    rules = suggest_class_rules(probs, maps, truths, CLASSES, CLASSES, 0.5)
    assert rules["crack"] == {"normal_max_area": 10, "found_min_area": 30, "separable": True,
                              "min_area_px": 20}  # fmt: skip
    assert rules["stain"]["separable"] is False and "min_area_px" not in rules["stain"]
    flagged = flag_with_class_rules(probs, maps, 0.5, 6, rules, CLASSES)
    assert flagged.tolist() == [False, True, False, True]  # stains judged at the global 6 px


def test_a_one_class_model_gets_no_class_rules() -> None:
    prob, _, truth = _frame(10, 0, 1)
    assert suggest_class_rules([prob], [None], [truth], ["defect"], ["defect"], 0.5) == {}
