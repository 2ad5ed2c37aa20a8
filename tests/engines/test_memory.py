"""Bounded memory: a large frame is tiled without full-size float copies, with the same result.

The old path (whole-frame float32 conversion, every tile stacked, float64 accumulator and weight
sum) is rebuilt here from the public helpers as the reference; the streaming path must match it.
Peak memory is measured in a child process from VmHWM (``ru_maxrss`` survives exec on Linux).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import engines
from engines.card import ModelCard, load_card_for
from engines.predict import default_overlap, predict_maps
from engines.preprocess import resize, to_model_input
from engines.tiling import extract_tiles, stitch, tile_grid
from tests.engines.conftest import make_mean_model

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "resources" / "models" / "demo.onnx"


def old_predict(
    engine: engines.Engine, image: np.ndarray, bit_depth: int | None = None
) -> np.ndarray:
    card = engine.card
    th, tw = card.input_height, card.input_width
    ov = default_overlap(th, tw)
    x = to_model_input(image, card, bit_depth)
    positions = tile_grid(x.shape[0], x.shape[1], th, tw, ov)
    tiles = extract_tiles(x, positions, th, tw)
    probs = np.concatenate([engine.infer(tiles[i : i + 16]) for i in range(0, len(tiles), 16)])
    stitched = stitch(probs[..., 0], positions, x.shape[0], x.shape[1], ov)
    return resize(stitched[:, :, None], *image.shape[:2])[:, :, 0]


def _frames() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    grey = (rng.random((300, 411)) * 255).astype(np.uint8)
    grey[100:140, 200:260] = 250  # a bright patch the demo model calls a defect
    colour = (rng.random((256, 200, 3)) * 255).astype(np.uint8)
    deep = (rng.random((260, 180)) * 4095).astype(np.uint16)
    small = (rng.random((60, 90)) * 255).astype(np.uint8)  # smaller than a tile
    return [grey, colour, deep, small]


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.75])
def test_streaming_equals_old_path(scale: float) -> None:
    card = dataclasses.replace(load_card_for(DEMO), frame_scale=scale)
    engine = engines.load_engine(DEMO, card=card)
    frames = _frames()
    depths = [None, None, 12, None]
    new = predict_maps(engine, frames, max_batch=5, bit_depths=depths)
    for frame, depth, got in zip(frames, depths, new, strict=True):
        want = old_predict(engine, frame, depth)
        assert got.shape == frame.shape[:2] and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
    assert max(float(m.max()) for m in new) > 0.5  # the patch is found: maps are not trivial


def test_twelve_bit_frames_use_the_declared_range(tmp_path: Path) -> None:
    engine = engines.load_engine(make_mean_model(tmp_path / "mean.onnx"))
    frame = np.full((40, 50), 4095, dtype=np.uint16)
    np.testing.assert_allclose(predict_maps(engine, [frame], bit_depths=12)[0], 1.0, atol=1e-6)
    np.testing.assert_allclose(
        predict_maps(engine, [frame])[0], 4095 / 65535, atol=1e-6
    )  # undeclared: the container's range


_CHILD = """
import json, sys
from pathlib import Path
import numpy as np
import engines
from engines.predict import predict_maps

def hwm():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

engine = engines.load_engine(sys.argv[1])
size = int(sys.argv[2])
frame = np.zeros((size, size), np.uint8)
frame[::7] = 200
frame[:, ::5] = 90
predict_maps(engine, [frame[:64, :64]])  # warm-up: ONNX Runtime's arena, first-call buffers
before = hwm()
(prob,) = predict_maps(engine, [frame])
print(json.dumps({"before": before, "peak": hwm(), "mean": float(prob.mean())}))
"""


def test_large_frame_peak_memory_is_bounded(tmp_path: Path) -> None:
    size = 4000
    card = ModelCard(name="mean128", input_height=128, input_width=128)
    model = make_mean_model(tmp_path / "mean128.onnx", h=128, w=128, card=card)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(model), str(size)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    frame_bytes, map_bytes = size * size, size * size * 4
    # The frame itself is already counted in `before`; the map is the one full-size float array.
    # The old path used ~10x the map (float copy, three tile stacks, float64 sums): 600+ MB here.
    growth = result["peak"] - result["before"]
    assert growth < map_bytes + 2 * frame_bytes + 48 * 2**20, f"grew {growth / 2**20:.0f} MiB"
    frame = np.zeros((size, size), np.uint8)
    frame[::7] = 200
    frame[:, ::5] = 90
    expected = float(frame.mean()) / 255  # the identity model returns the frame's mean
    assert abs(result["mean"] - expected) < 1e-5
