"""GenICam pixel formats -> frame layout, for the formats the Viky simulator can't produce.

The component objects carry exactly what harvesters' ``Component2DImage`` exposes after its own
unpacking (``data_format``, ``width``, ``height`` and the flat ``data`` array).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from app.station.sources import SourceError
from app.station.sources.genicam import convert_component


def component(fmt: str, data: np.ndarray, width: int, height: int) -> SimpleNamespace:
    return SimpleNamespace(data_format=fmt, width=width, height=height, data=data.ravel())


def test_mono12_scaled_to_full_16_bit_range() -> None:
    raw = np.array([[0, 4095], [2048, 1]], np.uint16)
    image, meta = convert_component(component("Mono12", raw, 2, 2))
    assert image.dtype == np.uint16 and image.shape == (2, 2)
    assert image.tolist() == [[0, 65520], [32768, 16]]
    # shifted into 16 bits, so preprocessing scales by 65535; the camera's depth is kept aside
    assert meta == {"pixel_format": "Mono12", "bit_depth": 16, "camera_bits": 12}
    assert not np.shares_memory(image, raw)


def test_mono16_and_mono8_kept() -> None:
    raw16 = np.array([[1, 65535]], np.uint16)
    assert convert_component(component("Mono16", raw16, 2, 1))[0].tolist() == [[1, 65535]]
    raw8 = np.arange(6, dtype=np.uint8)
    image, _ = convert_component(component("Mono8", raw8, 3, 2))
    assert image.tolist() == [[0, 1, 2], [3, 4, 5]] and not np.shares_memory(image, raw8)


@pytest.mark.parametrize(
    ("fmt", "pixel", "bgr"),
    [
        ("RGB8", [10, 20, 30], [30, 20, 10]),
        ("BGR8", [10, 20, 30], [10, 20, 30]),
        ("RGBa8", [10, 20, 30, 255], [30, 20, 10]),
        ("BGRa8", [10, 20, 30, 255], [10, 20, 30]),
    ],
)
def test_colour_formats_become_bgr(fmt: str, pixel: list[int], bgr: list[int]) -> None:
    raw = np.tile(np.array(pixel, np.uint8), (2, 3, 1))  # 2 rows x 3 pixels
    image, _ = convert_component(component(fmt, raw, 3, 2))
    assert image.shape == (2, 3, 3) and image.dtype == np.uint8 and image.flags.c_contiguous
    assert image[1, 2].tolist() == bgr and not np.shares_memory(image, raw)


def test_line_padding_removed() -> None:
    raw = np.array([[1, 2, 3, 0], [4, 5, 6, 0]], np.uint8)  # 3 pixels + 1 padding byte per row
    image, _ = convert_component(component("Mono8", raw, 3, 2))
    assert image.tolist() == [[1, 2, 3], [4, 5, 6]] and image.flags.c_contiguous


def test_unsupported_format_named() -> None:
    with pytest.raises(SourceError, match="BayerRG8 is not supported .*Mono8"):
        convert_component(component("BayerRG8", np.zeros(4, np.uint8), 2, 2))
