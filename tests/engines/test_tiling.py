"""Tiling covers every pixel and stitches back exactly; predict_map batches tiles of many frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engines
from engines.card import ModelCard
from engines.predict import predict_maps
from engines.tiling import Stitcher, extract_tiles, stitch, tile_grid, tile_weights


@st.composite
def frame_and_tile(draw: st.DrawFn) -> tuple[int, int, int, int, int]:
    th = draw(st.integers(2, 40))
    tw = draw(st.integers(2, 40))
    overlap = draw(st.integers(0, min(th, tw) - 1))
    # sizes below, equal to and well above the tile, independently per axis (non-square)
    h = draw(st.integers(1, 3 * th + 7))
    w = draw(st.integers(1, 3 * tw + 7))
    return h, w, th, tw, overlap


@settings(max_examples=150, deadline=None)
@given(frame_and_tile(), st.integers(0, 3))
def test_extract_then_stitch_is_identity(
    params: tuple[int, int, int, int, int], extra: int
) -> None:
    h, w, th, tw, overlap = params
    shape = (h, w) if extra == 0 else (h, w, extra)
    image = np.random.default_rng(h * 1000 + w).random(shape, dtype=np.float32)
    positions = tile_grid(h, w, th, tw, overlap)
    tiles = extract_tiles(image, positions, th, tw)
    assert tiles.shape[1:3] == (th, tw)
    out = stitch(tiles, positions, h, w, overlap)
    assert out.shape == image.shape
    np.testing.assert_allclose(out, image, rtol=0, atol=1e-6)


@settings(max_examples=100, deadline=None)
@given(frame_and_tile())
def test_streaming_stitcher_matches_stitch(params: tuple[int, int, int, int, int]) -> None:
    h, w, th, tw, overlap = params
    positions = tile_grid(h, w, th, tw, overlap)
    tiles = np.random.default_rng(h * 7 + w).random((len(positions), th, tw), dtype=np.float32)
    stitcher = Stitcher(h, w, th, tw, overlap, positions)
    for tile, position in zip(tiles[::-1], positions[::-1], strict=True):  # any order
        assert not stitcher.complete
        stitcher.add(tile, position)
    out = stitcher.result()
    assert out.shape == (h, w) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, stitch(tiles, positions, h, w, overlap), rtol=0, atol=1e-6)


def test_stitcher_refuses_an_incomplete_map() -> None:
    positions = tile_grid(20, 20, 8, 8, 2)
    stitcher = Stitcher(20, 20, 8, 8, 2, positions)
    stitcher.add(np.ones((8, 8), np.float32), positions[0])
    with pytest.raises(ValueError, match="1 of 9 tiles"):
        stitcher.result()


@settings(max_examples=100, deadline=None)
@given(frame_and_tile())
def test_grid_covers_frame_with_required_overlap(params: tuple[int, int, int, int, int]) -> None:
    h, w, th, tw, overlap = params
    positions = tile_grid(h, w, th, tw, overlap)
    covered = np.zeros((max(h, th), max(w, tw)), dtype=int)
    for y, x in positions:
        assert 0 <= y and y + th <= max(h, th) and 0 <= x and x + tw <= max(w, tw)
        covered[y : y + th, x : x + tw] += 1
    assert covered[:h, :w].min() >= 1
    ys = sorted({y for y, _ in positions})
    xs = sorted({x for _, x in positions})
    assert all(b - a <= th - overlap for a, b in zip(ys, ys[1:], strict=False))
    assert all(b - a <= tw - overlap for a, b in zip(xs, xs[1:], strict=False))


def test_small_frame_is_reflect_padded_not_zero_padded() -> None:
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    tiles = extract_tiles(image, tile_grid(3, 4, 6, 6, 1), 6, 6)
    assert tiles.shape == (1, 6, 6)
    np.testing.assert_array_equal(tiles[0, 3, :4], image[1])  # row 3 mirrors row 1
    np.testing.assert_array_equal(tiles[0, :3, 4], image[:, 2])  # column 4 mirrors column 2


def test_overlap_is_a_weighted_blend() -> None:
    # two tiles of constants 0 and 1 on an 8x12 strip; the blend rises monotonically between them
    positions = tile_grid(8, 12, 8, 8, 4)
    assert positions == [(0, 0), (0, 4)]
    tiles = np.stack([np.zeros((8, 8)), np.ones((8, 8))]).astype(np.float32)
    out = stitch(tiles, positions, 8, 12, 4)[3]
    assert np.all(out[:4] == 0) and np.all(out[8:] == 1)
    assert np.all(np.diff(out[3:9]) > 0) and 0 < out[5] < 1
    weights = tile_weights(32, 24, 4)  # interior at full weight, edges small but positive
    assert weights.min() > 0 and weights.max() == 1.0


@pytest.mark.parametrize("bad", [(0, 4, 0), (4, 4, 4), (4, 4, -1)])
def test_bad_tiling_arguments(bad: tuple[int, int, int]) -> None:
    th, tw, overlap = bad
    with pytest.raises(ValueError):
        tile_grid(10, 10, th, tw, overlap)


class CountingEngine:
    """Wraps an engine and records each batch size it was given."""

    def __init__(self, inner: engines.Engine) -> None:
        self.inner, self.card, self.backend = inner, inner.card, inner.backend
        self.batches: list[int] = []

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch.shape[0])
        return self.inner.infer(batch)

    def close(self) -> None:
        self.inner.close()


def test_identity_model_reproduces_frames_exactly(mean_model: Path) -> None:
    engine = CountingEngine(engines.load_engine(mean_model))
    rng = np.random.default_rng(3)
    frames = [
        (rng.random((100, 61)) * 255).astype(np.uint8),  # larger, non-square
        (rng.random((20, 9)) * 255).astype(np.uint8),  # smaller than a tile
        (rng.random((32, 32)) * 255).astype(np.uint8),  # exactly one tile
        (rng.random((33, 150)) * 65535).astype(np.uint16),
    ]
    maps = predict_maps(engine, (f for f in frames), max_batch=7)  # any iterable
    for frame, prob in zip(frames, maps, strict=True):
        assert prob.shape == frame.shape and prob.dtype == np.float32
        scale = 255.0 if frame.dtype == np.uint8 else 65535.0
        np.testing.assert_allclose(prob, frame / scale, atol=1e-6)
    assert max(engine.batches) == 7  # tiles of several frames share one infer call
    assert len(engine.batches) == -(-sum(engine.batches) // 7)


def test_frame_scale_maps_back_to_original_size(model_factory) -> None:  # noqa: ANN001
    card = ModelCard(name="half", input_height=32, input_width=32, frame_scale=0.5)
    engine = engines.load_engine(model_factory("half.onnx", card=card))
    frame = np.full((128, 90), 200, dtype=np.uint8)
    frame[:, 45:] = 50
    prob = engines.predict_map(engine, frame)
    assert prob.shape == (128, 90)
    np.testing.assert_allclose(prob[:, :40], 200 / 255, atol=1e-6)
    np.testing.assert_allclose(prob[:, 50:], 50 / 255, atol=1e-6)


def test_empty_list_and_bad_batch(mean_model: Path) -> None:
    engine = engines.load_engine(mean_model)
    assert predict_maps(engine, []) == []
    with pytest.raises(ValueError):
        predict_maps(engine, [np.zeros((4, 4), np.uint8)], max_batch=0)
