"""The rules on hand-built probability maps: every expected defect is written out exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from app.station.inspection import Defect, Rules, Zone
from app.station.inspector import binary_mask, judge, point_in_zone


def square(x0: float, y0: float, x1: float, y1: float) -> tuple[tuple[float, float], ...]:
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


@pytest.fixture
def two_blobs() -> np.ndarray:
    """A 4x3 blob (12 px, one pixel at 1.0) and a 2x2 blob (4 px) on a 20x30 map."""
    p = np.zeros((20, 30), np.float32)
    p[2:5, 3:7] = 0.8
    p[3, 4] = 1.0
    p[10:12, 20:22] = 0.6
    return p


def test_exact_defects_sorted_largest_first(two_blobs: np.ndarray) -> None:
    ins = judge(two_blobs, Rules(threshold=0.5, max_count=5), frame_id=7, source="s", model_id="m")
    assert ins.verdict == "PASS"
    assert ins.reasons == ()
    big, small = ins.defects
    assert big.area_px == 12 and big.bbox == (3, 2, 4, 3)
    assert big.centroid == pytest.approx((4.5, 3.0))
    assert big.max_prob == pytest.approx(1.0)
    assert big.mean_prob == pytest.approx((11 * 0.8 + 1.0) / 12, abs=1e-6)
    assert big.area_mm2 is None and big.zone is None
    assert small == Defect(4, (20, 10, 2, 2), (20.5, 10.5), pytest.approx(0.6), pytest.approx(0.6))
    assert (ins.frame_id, ins.source, ins.model_id) == (7, "s", "m")
    assert "judge" in ins.timings_ms


def test_count_rule_reason(two_blobs: np.ndarray) -> None:
    ins = judge(two_blobs, Rules(threshold=0.5, max_count=0))
    assert ins.verdict == "NG"
    assert ins.reasons == ("2 defects > max 0",)
    assert judge(two_blobs, Rules(threshold=0.5, max_count=1)).reasons == ("2 defects > max 1",)
    assert judge(two_blobs, Rules(threshold=0.5, max_count=2)).verdict == "PASS"


def test_single_defect_reason_is_singular(two_blobs: np.ndarray) -> None:
    ins = judge(two_blobs, Rules(threshold=0.7))  # the 0.6 blob falls below the threshold
    assert [d.area_px for d in ins.defects] == [12]
    assert ins.reasons == ("1 defect > max 0",)


def test_min_area_drops_small_blobs(two_blobs: np.ndarray) -> None:
    ins = judge(two_blobs, Rules(threshold=0.5, min_area_px=5))
    assert [d.area_px for d in ins.defects] == [12]
    ins = judge(two_blobs, Rules(threshold=0.5, min_area_px=12))  # boundary: area == min counts
    assert [d.area_px for d in ins.defects] == [12]
    ins = judge(two_blobs, Rules(threshold=0.5, min_area_px=13))
    assert ins.defects == () and ins.verdict == "PASS"


def test_total_area_rule(two_blobs: np.ndarray) -> None:
    rules = Rules(threshold=0.5, max_count=10, max_total_area_px=15)
    ins = judge(two_blobs, rules)
    assert ins.reasons == ("total defect area 16 px > max 15 px",)
    assert judge(two_blobs, Rules(threshold=0.5, max_count=10, max_total_area_px=16)).verdict == (
        "PASS"
    )


def test_count_and_total_reasons_together(two_blobs: np.ndarray) -> None:
    ins = judge(two_blobs, Rules(threshold=0.5, max_count=1, max_total_area_px=10))
    assert ins.reasons == ("2 defects > max 1", "total defect area 16 px > max 10 px")


def test_threshold_boundary_is_inclusive() -> None:
    p = np.zeros((5, 5), np.float32)
    p[1, 1] = 0.5
    p[3, 3] = np.nextafter(np.float32(0.5), np.float32(0))
    ins = judge(p, Rules(threshold=0.5, max_count=9))
    assert [(d.bbox, d.area_px) for d in ins.defects] == [((1, 1, 1, 1), 1)]


def test_eight_connectivity_joins_diagonals() -> None:
    p = np.zeros((6, 6), np.float32)
    for i in range(4):
        p[i, i] = 0.9
    ins = judge(p, Rules(max_count=9))
    assert len(ins.defects) == 1
    assert ins.defects[0].area_px == 4 and ins.defects[0].bbox == (0, 0, 4, 4)
    assert ins.defects[0].centroid == pytest.approx((1.5, 1.5))


def test_pixel_size_gives_mm2(two_blobs: np.ndarray) -> None:
    ins = judge(two_blobs, Rules(max_count=9), pixel_size_mm=0.05)
    assert [d.area_mm2 for d in ins.defects] == pytest.approx([12 * 0.0025, 4 * 0.0025])


def test_empty_map_passes() -> None:
    ins = judge(np.zeros((16, 16), np.float32), Rules())
    assert ins.verdict == "PASS" and ins.defects == () and ins.reasons == ()


def test_all_ones_map_is_one_defect() -> None:
    ins = judge(np.ones((8, 10), np.float32), Rules(threshold=0.5, max_total_area_px=50))
    (d,) = ins.defects
    assert d.area_px == 80 and d.bbox == (0, 0, 10, 8)
    assert d.centroid == pytest.approx((4.5, 3.5))
    assert d.max_prob == 1.0 and d.mean_prob == pytest.approx(1.0)
    assert ins.reasons == ("1 defect > max 0", "total defect area 80 px > max 50 px")


def test_nan_counts_as_zero_without_crash() -> None:
    p = np.full((6, 6), np.nan, np.float32)
    assert judge(p, Rules()).defects == ()
    p[2:4, 2:4] = 0.9
    p[2, 2] = np.inf  # clipped to 1 in the statistics
    (d,) = judge(p, Rules()).defects
    assert d.area_px == 4 and d.max_prob == 1.0
    assert d.mean_prob == pytest.approx((1.0 + 3 * 0.9) / 4, abs=1e-6)
    assert binary_mask(p, Rules()).sum() == 4 * 255


def test_accepts_hxwx1_and_float64_and_rejects_3d() -> None:
    p = np.zeros((4, 4, 1), np.float64)
    p[1, 1, 0] = 0.9
    assert judge(p, Rules()).defects[0].bbox == (1, 1, 1, 1)
    with pytest.raises(ValueError, match="H x W"):
        judge(np.zeros((4, 4, 3)), Rules())


def test_exclude_zone_ignores_blob(two_blobs: np.ndarray) -> None:
    rules = Rules(max_count=9, zones=(Zone("fixture", "exclude", square(0, 0, 10, 10)),))
    assert [d.area_px for d in judge(two_blobs, rules).defects] == [4]


def test_include_zone_restricts(two_blobs: np.ndarray) -> None:
    rules = Rules(max_count=9, zones=(Zone("part", "include", square(15, 5, 29, 19)),))
    assert [d.area_px for d in judge(two_blobs, rules).defects] == [4]


def test_critical_zone_counts_small_blob_and_makes_ng(two_blobs: np.ndarray) -> None:
    seal = Zone("seal", "critical", square(18, 8, 24, 14), min_area_px=3)
    rules = Rules(threshold=0.5, min_area_px=10, max_count=5, zones=(seal,))
    ins = judge(two_blobs, rules)
    assert [(d.area_px, d.zone) for d in ins.defects] == [(12, None), (4, "seal")]
    assert ins.verdict == "NG"
    assert ins.reasons == ("defect of 4 px in critical zone 'seal'",)


def test_critical_zone_below_its_minimum(two_blobs: np.ndarray) -> None:
    seal = Zone("seal", "critical", square(18, 8, 24, 14), min_area_px=5)
    # Below both minimums: not a defect at all.
    ins = judge(two_blobs, Rules(min_area_px=10, max_count=5, zones=(seal,)))
    assert [d.area_px for d in ins.defects] == [12] and ins.verdict == "PASS"
    # A defect by the global rule, tagged with the zone, but not NG on its own.
    ins = judge(two_blobs, Rules(min_area_px=2, max_count=5, zones=(seal,)))
    assert [(d.area_px, d.zone) for d in ins.defects] == [(12, None), (4, "seal")]
    assert ins.verdict == "PASS"


def test_critical_zone_needs_no_include_zone(two_blobs: np.ndarray) -> None:
    zones = (
        Zone("part", "include", square(0, 0, 10, 10)),
        Zone("seal", "critical", square(18, 8, 24, 14)),
    )
    ins = judge(two_blobs, Rules(max_count=5, zones=zones))
    assert [(d.area_px, d.zone) for d in ins.defects] == [(12, None), (4, "seal")]
    assert ins.reasons == ("defect of 4 px in critical zone 'seal'",)


def test_exclude_wins_over_critical(two_blobs: np.ndarray) -> None:
    zones = (
        Zone("seal", "critical", square(18, 8, 24, 14)),
        Zone("clamp", "exclude", square(19, 9, 23, 13)),
    )
    assert [d.area_px for d in judge(two_blobs, Rules(max_count=5, zones=zones)).defects] == [12]


def test_centroid_on_polygon_edge_is_inside() -> None:
    zone = Zone("z", "critical", square(0, 0, 4, 4))
    assert point_in_zone(zone, 4.0, 2.0)
    assert point_in_zone(zone, 2.0, 2.0)
    assert not point_in_zone(zone, 4.5, 2.0)


def test_binary_mask_plain_and_defects_only(two_blobs: np.ndarray) -> None:
    rules = Rules(threshold=0.5, min_area_px=5)
    m = binary_mask(two_blobs, rules)
    assert m.dtype == np.uint8 and m.shape == two_blobs.shape
    assert set(np.unique(m)) == {0, 255} and int((m == 255).sum()) == 16
    d = binary_mask(two_blobs, rules, defects_only=True)
    assert int((d == 255).sum()) == 12 and d[10, 20] == 0


def test_rejudging_is_cheap_and_consistent(two_blobs: np.ndarray) -> None:
    big = np.tile(two_blobs, (50, 50))  # 1000 x 1500, 5000 blobs
    ins = judge(big, Rules(max_count=10_000))
    assert len(ins.defects) == 5000
    assert ins.timings_ms["judge"] < 2000  # generous: shared CI cores; typical ~50 ms


maps = arrays(
    np.float32,
    st.tuples(st.integers(1, 24), st.integers(1, 24)),
    elements=st.floats(0, 1, width=32),
)


@settings(max_examples=60, deadline=None)
@given(prob=maps, a=st.integers(0, 30), b=st.integers(0, 30))
def test_raising_min_area_never_adds_defects(prob: np.ndarray, a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    d_lo = judge(prob, Rules(min_area_px=lo)).defects
    d_hi = judge(prob, Rules(min_area_px=hi)).defects
    assert set(d_hi) <= set(d_lo)
    assert all(d.area_px >= hi for d in d_hi)


@settings(max_examples=60, deadline=None)
@given(prob=maps, t=st.floats(0.05, 0.95))
def test_defect_areas_add_up_to_mask(prob: np.ndarray, t: float) -> None:
    rules = Rules(threshold=t)
    ins = judge(prob, rules)
    assert sum(d.area_px for d in ins.defects) == int((binary_mask(prob, rules) > 0).sum())
    assert all(t - 1e-6 <= d.mean_prob <= d.max_prob <= 1.0 for d in ins.defects)
    assert (ins.verdict == "PASS") == (not ins.defects)
