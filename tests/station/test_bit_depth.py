"""Bit depth as a recipe setting: 12-bit data in 16-bit words is scaled by 4095, not 65535."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.station.recipe import Recipe, RecipeError, SourceSettings, load_recipe, save_recipe
from app.station.recipe_check import range_warning
from app.station.sources.spec import SourceOptions, frame_metadata
from engines.preprocess import full_scale, to_unit_float


def test_recipe_round_trips_bit_depth(tmp_path: Path) -> None:
    r = Recipe(name="x", model=tmp_path / "m.onnx", source=SourceSettings(bit_depth=12))
    saved = save_recipe(r, tmp_path / "r.toml")
    assert "bit_depth = 12" in (tmp_path / "r.toml").read_text()
    assert load_recipe(saved.path).source.bit_depth == 12
    plain = save_recipe(Recipe(name="y", model=tmp_path / "m.onnx"), tmp_path / "p.toml")
    assert "bit_depth" not in (tmp_path / "p.toml").read_text()
    assert load_recipe(plain.path).source.bit_depth is None


def test_recipe_refuses_odd_bit_depth(tmp_path: Path) -> None:
    p = tmp_path / "r.toml"
    p.write_text('name = "x"\nmodel = "m.onnx"\n[source]\nbit_depth = 11\n')
    with pytest.raises(RecipeError, match="bit_depth.*one of 8, 10, 12, 14, 16"):
        load_recipe(p)


def test_source_options_stamp_the_frames() -> None:
    assert frame_metadata(SourceOptions(bit_depth=12)) == {"bit_depth": 12}
    assert frame_metadata(SourceOptions()) == {}
    with pytest.raises(ValueError, match="bit_depth"):
        SourceOptions(bit_depth=9)


def test_twelve_bit_scaling() -> None:
    frame = np.array([[0, 2048, 4095, 5000]], dtype=np.uint16)
    unit = to_unit_float(frame, 12)
    np.testing.assert_allclose(unit, [[0, 2048 / 4095, 1.0, 1.0]], rtol=1e-6)  # above: clipped
    np.testing.assert_allclose(to_unit_float(frame), frame / 65535, rtol=1e-6)
    assert full_scale(np.dtype(np.uint16), 10) == 1023 and full_scale(np.dtype(np.uint8)) == 255
    with pytest.raises(ValueError, match="8-bit .* declared bit depth is 12"):
        to_unit_float(np.zeros((2, 2), np.uint8), 12)


def test_range_warning() -> None:
    twelve_in_sixteen = np.array([[0, 4095]], dtype=np.uint16)
    msg = range_warning(twelve_in_sixteen)  # undeclared: 16-bit container
    assert msg is not None and "reach only 4095" in msg and "0..65535" in msg
    assert range_warning(twelve_in_sixteen, 12) is None
    over = range_warning(np.array([[70, 5000]], dtype=np.uint16), 12)
    assert over is not None and "reach 5000" in over and "ends at 4095" in over
    assert range_warning(np.full((4, 4), 200, np.uint8)) is None
    assert range_warning(np.full((4, 4), 0.5, np.float32)) is None
