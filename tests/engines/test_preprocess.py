"""8/16-bit normalisation, grey <-> colour, and frame_scale resizing follow the model card."""

from __future__ import annotations

import numpy as np
import pytest

from engines.card import ModelCard
from engines.preprocess import to_model_input

GREY = ModelCard(name="g", input_height=8, input_width=8, channels=1)
COLOUR = ModelCard(name="c", input_height=8, input_width=8, channels=3)


def test_uint8_and_uint16_map_to_unit_range() -> None:
    eight = np.array([[0, 51, 255]], dtype=np.uint8)
    sixteen = np.array([[0, 13107, 65535]], dtype=np.uint16)
    for image in (eight, sixteen):
        out = to_model_input(image, GREY)
        assert out.dtype == np.float32 and out.shape == (1, 3, 1)
        np.testing.assert_allclose(out[0, :, 0], [0.0, 0.2, 1.0], atol=1e-7)


def test_float_input_is_clipped_and_other_dtypes_rejected() -> None:
    out = to_model_input(np.array([[-0.5, 0.25, 2.0]], dtype=np.float64), GREY)
    np.testing.assert_allclose(out[0, :, 0], [0.0, 0.25, 1.0])
    with pytest.raises(ValueError, match="dtype"):
        to_model_input(np.zeros((2, 2), dtype=np.int32), GREY)
    with pytest.raises(ValueError, match="shape"):
        to_model_input(np.zeros((2, 2, 2), dtype=np.uint8), GREY)


def test_bgr_to_grey_uses_luma_weights() -> None:
    bgr = np.zeros((2, 2, 3), dtype=np.uint8)
    bgr[..., 0] = 255  # pure blue
    out = to_model_input(bgr, GREY)
    assert out.shape == (2, 2, 1)
    np.testing.assert_allclose(out, 0.114, atol=1e-3)  # ITU-R BT.601 blue weight
    bgr[..., 0], bgr[..., 2] = 0, 255  # pure red
    np.testing.assert_allclose(to_model_input(bgr, GREY), 0.299, atol=1e-3)


def test_grey_to_bgr_repeats_and_bgra_drops_alpha() -> None:
    grey = np.array([[10, 20]], dtype=np.uint8)
    out = to_model_input(grey, COLOUR)
    assert out.shape == (1, 2, 3)
    np.testing.assert_allclose(out[0, 1], [20 / 255] * 3, atol=1e-7)
    bgra = np.zeros((1, 1, 4), dtype=np.uint16)
    bgra[0, 0] = [65535, 0, 0, 65535]
    np.testing.assert_allclose(to_model_input(bgra, COLOUR)[0, 0], [1.0, 0.0, 0.0])
    assert to_model_input(grey[:, :, None], GREY).shape == (1, 2, 1)


def test_downscale_is_area_average_and_upscale_is_linear() -> None:
    half = GREY.with_updates(frame_scale=0.5)
    image = np.array([[0, 100, 200, 200], [100, 200, 200, 200]], dtype=np.uint8)
    out = to_model_input(image, half)
    assert out.shape == (1, 2, 1)
    np.testing.assert_allclose(out[0, :, 0], [100 / 255, 200 / 255], atol=1e-6)  # 2x2 means
    double = GREY.with_updates(frame_scale=2.0)
    up = to_model_input(np.array([[0, 255]], dtype=np.uint8), double)
    assert up.shape == (2, 4, 1)
    assert np.all(np.diff(up[0, :, 0]) >= 0) and 0 < up[0, 1, 0] < 1
    colour_half = COLOUR.with_updates(frame_scale=0.5)
    assert to_model_input(np.zeros((10, 7, 3), np.uint16), colour_half).shape == (5, 4, 3)


@pytest.mark.parametrize(
    ("scale", "shape"),
    [(0.5, (1100, 64)), (0.25, (1200, 40, 3)), (0.125, (2048, 16)), (0.5, (1101, 64))],
)
def test_banded_downscale_equals_whole_frame(scale: float, shape: tuple[int, ...]) -> None:
    from engines.preprocess import scaled_model_input

    card = ModelCard(name="s", input_height=16, input_width=16, frame_scale=scale)
    image = (np.random.default_rng(1).random(shape) * 65535).astype(np.uint16)
    banded = scaled_model_input(image, card, 16)  # > 512 rows: several bands (odd size: fallback)
    np.testing.assert_allclose(banded, to_model_input(image, card, 16), rtol=0, atol=1e-6)
