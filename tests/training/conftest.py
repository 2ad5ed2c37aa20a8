"""Small generated datasets shared by the training tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.data.synthetic import generate


@pytest.fixture(scope="session")
def synthetic_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 images of 64x80 in the images+masks layout, a quarter defective."""
    root = tmp_path_factory.mktemp("synthetic_folder")
    generate(root, 16, size=(64, 80), defect_ratio=0.25, seed=3)
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, synthetic_folder: Path) -> Path:
    """A run directory trained for two tiny epochs (no export), for export/quantize tests."""
    from training.progress import Progress
    from training.train import TrainConfig, train

    run = tmp_path_factory.mktemp("tiny_run")
    cfg = TrainConfig(
        data=str(synthetic_folder),
        out=str(run),
        epochs=2,
        steps_per_epoch=3,
        image_size=64,
        base_filters=4,
        batch_size=4,
        export=False,
        progress="none",
    )
    train(cfg, Progress("none"))
    return run
