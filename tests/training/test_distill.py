"""Teacher targets (training/distill.py): the label mixed with what a larger model sees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.data.batches import load_arrays
from training.data.discovery import discover
from training.distill import distill_targets

ROOT = Path(__file__).resolve().parents[2]
TEACHER = ROOT / "resources" / "models" / "demo.onnx"


def test_targets_mix_the_label_and_the_teachers_map(synthetic_folder: Path) -> None:
    from engines import load_engine, predict_maps
    from engines.preprocess import resize
    from training.data.loaders import read_image

    samples = discover(synthetic_folder).samples[:4]
    arrays = load_arrays(samples, channels=1, scale=0.5, soft=True)
    mixed = distill_targets(arrays, samples, str(TEACHER), 0.25)
    assert mixed.defective.tolist() == arrays.defective.tolist()  # the sampler still uses labels
    engine = load_engine(TEACHER)
    full = predict_maps(engine, [read_image(samples[0].image_path)])[0]
    engine.close()
    t = np.clip(resize(full[:, :, None].astype(np.float32), *arrays.masks[0].shape)[:, :, 0], 0, 1)
    np.testing.assert_allclose(mixed.masks[0], 0.75 * arrays.masks[0] + 0.25 * t, atol=1e-6)
    assert all(0.0 <= m.min() and m.max() <= 1.0 for m in mixed.masks)
    with pytest.raises(ValueError, match="teacher-weight"):
        distill_targets(arrays, samples, str(TEACHER), 0.0)
