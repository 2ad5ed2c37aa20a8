"""Validation set on a tiny real ONNX model: exact confusion counts, PR curve, layouts, cancel."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from app.station.validation import ValidationCancelled, ValidationSet, find_pairs
from engines import load_engine
from engines.scoring import threshold_table
from tests.tiny_models import sigmoid_model

TILE = 32
K = 12.0  # p = sigmoid(K * (x - 0.5)): grey 51 -> 0.027, 153 -> 0.77, 255 -> 0.998


def build_model(path: Path) -> Path:
    return sigmoid_model(path, tile=TILE, gain=K)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - an Engine
    eng = load_engine(build_model(tmp_path_factory.mktemp("model") / "tiny.onnx"), threads=1)
    yield eng
    eng.close()


def frame(square: tuple[int, int, int, int, int] | None = None) -> np.ndarray:
    """A 48x64 grey (51) frame with an optional square (x, y, size, value)."""
    img = np.full((48, 64), 51, np.uint8)
    if square is not None:
        x, y, s, v = square
        img[y : y + s, x : x + s] = v
    return img


# name, image, defect mask (None = no mask file)
CASES = [
    ("a_defect", frame((10, 10, 8, 255)), (10, 10, 8)),  # strong: 64 px blob
    ("b_faint", frame((40, 20, 6, 153)), (40, 20, 6)),  # faint: 36 px at t <= 0.7 only
    ("c_clean", frame(), None),
    ("d_speck", frame((30, 30, 2, 255)), None),  # false alarm of 4 px
    ("e_zero_mask", frame(), "zero"),  # all-zero mask: defect-free
]
LABELS = [True, True, False, False, False]


def mask_for(spec: object) -> np.ndarray:
    m = np.zeros((48, 64), np.uint8)
    if isinstance(spec, tuple):
        x, y, s = spec
        m[y : y + s, x : x + s] = 255
    return m


def write_images_masks(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name, img, spec in CASES:
        cv2.imwrite(str(root / "images" / f"{name}.png"), img)
        if spec is not None:
            cv2.imwrite(str(root / "masks" / f"{name}.png"), mask_for(spec))
    return root


@pytest.fixture(scope="module")
def vs(engine, tmp_path_factory: pytest.TempPathFactory) -> ValidationSet:  # noqa: ANN001
    return ValidationSet.compute(engine, write_images_masks(tmp_path_factory.mktemp("val")))


def test_compute_loads_labels_and_maps(vs: ValidationSet) -> None:
    assert [p.stem for p in vs.paths] == [c[0] for c in CASES]
    assert vs.labels.tolist() == LABELS and vs.n_defective == 2 and len(vs) == 5
    assert vs.model_id == "tiny-sigmoid" and vs.skipped == []
    assert all(m.dtype == np.uint8 and m.shape == (48, 64) for m in vs.maps)
    p = vs.prob_map(0)
    assert p[12, 12] == pytest.approx(1 / (1 + np.exp(-6.0)), abs=1 / 255)
    assert p[0, 0] == pytest.approx(1 / (1 + np.exp(3.6)), abs=1 / 255)


def test_exact_operating_points(vs: ValidationSet) -> None:
    r = vs.point(0.5, 0)
    assert (r.tp, r.fp, r.tn, r.fn) == (2, 1, 2, 0)
    assert r.precision == pytest.approx(2 / 3) and r.recall == 1.0 and r.fpr == pytest.approx(1 / 3)
    r = vs.point(0.5, 5)  # the 4 px speck no longer counts
    assert (r.tp, r.fp, r.tn, r.fn) == (2, 0, 3, 0) and r.precision == 1.0
    r = vs.point(0.8, 5)  # the faint defect (p 0.77) is missed
    assert (r.tp, r.fp, r.tn, r.fn) == (1, 0, 3, 1) and r.recall == 0.5
    r = vs.point(0.5, 65)  # nothing is that large
    assert (r.tp, r.fp, r.tn, r.fn) == (0, 0, 3, 2) and r.precision == 1.0


def test_table_matches_engines_scoring(vs: ValidationSet) -> None:
    rows = vs.table(min_area=5)
    assert [r.threshold for r in rows] == pytest.approx([0.1 * i for i in range(1, 10)])
    expected = threshold_table([vs.prob_map(i) for i in range(len(vs))], vs.labels, min_area=5)
    assert [(r.tp, r.fp, r.tn, r.fn) for r in rows] == [(e.tp, e.fp, e.tn, e.fn) for e in expected]
    assert [(r.tp, r.fn) for r in rows[6:]] == [(2, 0), (1, 1), (1, 1)]  # 0.7 / 0.8 / 0.9


def test_pr_curve_is_swept_over_min_area(vs: ValidationSet) -> None:
    precision, recall = vs.pr_curve(0.5)
    # scores (largest blob): 64, 36, 0, 4, 0 -> cuts at 0, 4, 36, 64, then the (1, 0) end point
    np.testing.assert_allclose(precision, [2 / 5, 2 / 3, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(recall, [1.0, 1.0, 1.0, 0.5, 0.0])
    for min_area in (1, 4, 5, 36, 37, 64, 65):
        p = vs.point(0.5, min_area)
        assert any(
            np.isclose(p.precision, a) and np.isclose(p.recall, b)
            for a, b in zip(precision, recall, strict=True)
        )


def test_levels_are_cached(vs: ValidationSet) -> None:
    first = vs.largest_blobs(0.55)
    assert vs.largest_blobs(0.55) is first
    assert vs.largest_blobs(0.5).tolist() == [64, 36, 0, 4, 0]
    with pytest.raises(ValueError):
        vs.point(0.0, 1)


def test_progress_chunks_and_cancel(engine, tmp_path: Path) -> None:  # noqa: ANN001
    root = write_images_masks(tmp_path / "val")
    calls: list[tuple[int, int]] = []
    vs = ValidationSet.compute(engine, root, progress=lambda d, t: calls.append((d, t)), chunk=2)
    assert calls == [(0, 5), (2, 5), (4, 5), (5, 5)] and len(vs) == 5
    checks = iter([False, True])
    with pytest.raises(ValidationCancelled):
        ValidationSet.compute(engine, root, cancel=lambda: next(checks), chunk=2)


def test_unreadable_inputs_are_skipped(engine, tmp_path: Path) -> None:  # noqa: ANN001
    root = write_images_masks(tmp_path / "val")
    (root / "images" / "z_broken.png").write_bytes(b"not a png")
    cv2.imwrite(str(root / "images" / "y_badmask.png"), frame())
    (root / "masks" / "y_badmask.png").write_bytes(b"junk")
    vs = ValidationSet.compute(engine, root)
    assert len(vs) == 5
    assert sorted(p.name for p, _ in vs.skipped) == ["y_badmask.png", "z_broken.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no readable validation image"):
        ValidationSet.compute(engine, empty)
    with pytest.raises(FileNotFoundError):
        ValidationSet.compute(engine, tmp_path / "missing")


def test_dagm_layout(engine, tmp_path: Path) -> None:  # noqa: ANN001
    (tmp_path / "Label").mkdir()
    for i, (_name, img, spec) in enumerate(CASES):
        cv2.imwrite(str(tmp_path / f"{i:04d}.PNG"), img)
        if isinstance(spec, tuple):
            cv2.imwrite(str(tmp_path / "Label" / f"{i:04d}_label.PNG"), mask_for(spec))
    (tmp_path / "Label" / "Labels.txt").write_text("not an image\n")
    pairs = find_pairs(tmp_path)
    assert [(p.name, m.name if m else None) for p, m in pairs] == [
        ("0000.PNG", "0000_label.PNG"),
        ("0001.PNG", "0001_label.PNG"),
        ("0002.PNG", None),
        ("0003.PNG", None),
        ("0004.PNG", None),
    ]
    vs = ValidationSet.compute(engine, tmp_path)
    assert vs.labels.tolist() == LABELS
    assert (vs.point(0.5, 5).tp, vs.point(0.5, 5).fp) == (2, 0)


def test_plain_layout_and_masks_dir(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("p1", "p2", "p3"):
        cv2.imwrite(str(plain / f"{name}.png"), frame())
    cv2.imwrite(str(plain / "p1_label.png"), mask_for((1, 1, 2)))
    cv2.imwrite(str(plain / "p3_mask.bmp"), mask_for(None))
    assert [(p.name, m.name if m else None) for p, m in find_pairs(plain)] == [
        ("p1.png", "p1_label.png"),
        ("p2.png", None),
        ("p3.png", "p3_mask.bmp"),
    ]
    masks = tmp_path / "elsewhere"
    masks.mkdir()
    cv2.imwrite(str(masks / "p2.png"), mask_for((1, 1, 2)))
    pairs = find_pairs(plain, masks)
    assert [(p.name, m.name if m else None) for p, m in pairs][:2] == [
        ("p1.png", None),
        ("p2.png", "p2.png"),
    ]
