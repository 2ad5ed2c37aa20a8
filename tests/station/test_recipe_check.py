"""Recipes checked against the first frame: zones, include sets, min areas, model card."""

from __future__ import annotations

import numpy as np
import pytest

from app.station.inspection import Rules, Zone
from app.station.recipe_check import FrameChecker, Problem, check_against_frame
from engines.card import ModelCard

H, W = 480, 640
CARD = ModelCard(name="grey128", input_height=128, input_width=128)


def rect(name: str, kind: str, x0: float, y0: float, x1: float, y1: float, **kw: int) -> Zone:
    return Zone(name, kind, ((x0, y0), (x1, y0), (x1, y1), (x0, y1)), **kw)  # type: ignore[arg-type]


def errors(problems: list[Problem]) -> list[str]:
    return [p.message for p in problems if p.severity == "error"]


def warnings(problems: list[Problem]) -> list[str]:
    return [p.message for p in problems if p.severity == "warning"]


def test_a_fitting_recipe_has_no_problem() -> None:
    rules = Rules(
        min_area_px=50,
        zones=(
            rect("part", "include", 10, 10, 600, 400),
            rect("label", "exclude", 20, 20, 80, 60),
            rect("seal", "critical", 100, 100, 200, 200, min_area_px=20),
        ),
    )
    assert check_against_frame(rules, H, W, CARD, 0.05, channels=1, dtype=np.uint8) == []


def test_zone_outside_the_frame_is_an_error() -> None:
    rules = Rules(zones=(rect("part", "include", 700, 500, 900, 700),))
    problems = check_against_frame(rules, H, W)
    msgs = errors(problems)
    assert any("include zone 'part' covers no pixel of the 640 x 480 px frame" in m for m in msgs)
    # and with it the inspected area is empty: the demo would pass everything
    assert any("leave no pixel of the 640 x 480 px frame to inspect" in m for m in msgs)


def test_zone_partly_outside_is_a_warning() -> None:
    rules = Rules(zones=(rect("part", "include", 320, 0, 960, 480),))
    problems = check_against_frame(rules, H, W)
    assert errors(problems) == []
    assert any("lies partly outside" in m for m in warnings(problems))


def test_excludes_covering_the_include_set() -> None:
    rules = Rules(
        zones=(
            rect("part", "include", 100, 100, 200, 200),
            rect("all", "exclude", 0, 0, 640, 480),
        )
    )
    assert any(
        "include zones minus the exclude zones" in m
        for m in errors(check_against_frame(rules, H, W))
    )
    only_exclude = Rules(zones=(rect("all", "exclude", -5, -5, 700, 500),))
    assert any(
        "the exclude zones leave no pixel" in m
        for m in errors(check_against_frame(only_exclude, H, W))
    )


def test_min_area_larger_than_the_frame() -> None:
    problems = check_against_frame(Rules(min_area_px=H * W + 1), H, W, pixel_size_mm=0.1)
    (msg,) = errors(problems)
    assert "307,201 px = 3072 mm²" in msg and "larger than the whole 640 x 480 px frame" in msg
    assert errors(check_against_frame(Rules(min_area_px=H * W), H, W)) == []


def test_critical_zone_minimum_against_its_zone_and_the_frame() -> None:
    small = rect("seal", "critical", 0, 0, 9, 9, min_area_px=500)
    assert any(
        "larger than the zone itself" in m
        for m in warnings(check_against_frame(Rules(zones=(small,)), H, W))
    )
    huge = rect("seal", "critical", 0, 0, 9, 9, min_area_px=10**6)
    assert any(
        "critical zone 'seal' min_area_px" in m
        for m in errors(check_against_frame(Rules(zones=(huge,)), H, W))
    )


def test_model_card_against_the_frame() -> None:
    colour = check_against_frame(Rules(), H, W, CARD, channels=3)
    assert warnings(colour) == [
        "colour frames are converted to grey for the 1-channel model 'grey128'"
    ]
    half = ModelCard(name="half", input_height=256, input_width=256, frame_scale=0.5)
    small = warnings(check_against_frame(Rules(), 300, 400, half, channels=1))
    assert len(small) == 1 and "(200 x 150 after frame_scale 0.5)" in small[0]
    assert errors(check_against_frame(Rules(), 300, 400, half)) == []


def test_declared_bit_depth_beyond_the_container_is_an_error() -> None:
    (msg,) = errors(check_against_frame(Rules(), H, W, dtype=np.uint8, bit_depth=12))
    assert "bit_depth = 12 but the frames are 8-bit" in msg
    assert check_against_frame(Rules(), H, W, dtype=np.uint16, bit_depth=12) == []


@pytest.mark.parametrize("size", [(0, 10), (10, 0)])
def test_empty_frame(size: tuple[int, int]) -> None:
    assert errors(check_against_frame(Rules(), *size))


def test_frame_checker_rechecks_only_on_change() -> None:
    rules = Rules(zones=(rect("part", "include", 0, 0, 300, 300),))
    checker = FrameChecker(rules, CARD)
    frame = np.full((H, W), 128, np.uint8)
    assert checker.check(frame) == []
    assert checker.check(frame) == []
    smaller = np.full((100, 100), 128, np.uint8)
    problems = checker.check(smaller)
    assert any("frame size changed from 640 x 480 to 100 x 100 px" in m for m in warnings(problems))
    assert any("smaller than the model input" in m for m in warnings(problems))
    dark = np.full((100, 100), 3, np.uint8)
    (msg,) = warnings(checker.check(dark))
    assert "reach only 3" in msg
    assert checker.check(dark) == []  # the range warning comes once per run


def test_frame_checker_checks_new_rules_on_the_next_frame() -> None:
    checker = FrameChecker(Rules())
    frame = np.full((H, W), 128, np.uint8)
    assert checker.check(frame) == []
    checker.update(rules=Rules(zones=(rect("far", "include", 2000, 2000, 2100, 2100),)))
    assert any("covers no pixel" in m for m in errors(checker.check(frame)))
