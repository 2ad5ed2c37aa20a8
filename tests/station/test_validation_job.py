"""ValidationJob: owns engine loading, computes once, answers the rules from the kept maps."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from app.station.inspection import Rules
from app.station.validation_job import ValidationCancelled, ValidationJob
from engines import load_engine
from tests.tiny_models import sigmoid_model


def labelled_folder(folder: Path, n: int = 8) -> Path:
    """``images/`` + ``masks/``: odd images carry a bright disc (radius 7) with its mask."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(n):
        img = np.full((64, 64), 50, np.uint8)
        if i % 2:
            cv2.circle(img, (32, 32), 7, 230, -1)
            cv2.imwrite(str(folder / "masks" / f"{i:03d}.png"), np.where(img > 120, 255, 0))
        cv2.imwrite(str(folder / "images" / f"{i:03d}.png"), img)
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sigmoid_model(tmp_path_factory.mktemp("m") / "tiny.onnx")


def test_compute_loads_its_own_engine_and_follows_the_rules(model: Path, tmp_path: Path) -> None:
    loaded: list[Any] = []

    def loader(path: Path) -> Any:
        engine = load_engine(path)
        loaded.append(engine)
        return engine

    job = ValidationJob(lambda: model, loader=loader)
    assert job.operating_point(Rules()) is None and job.table(Rules()) == []
    progress: list[tuple[int, int]] = []
    vs = job.compute(labelled_folder(tmp_path / "v"), lambda d, t: progress.append((d, t)))
    assert len(vs) == 8 and vs.n_defective == 4
    assert progress[0] == (0, 8) and progress[-1] == (8, 8)
    assert len(loaded) == 1 and not job.running  # one private engine, closed after

    point = job.operating_point(Rules(threshold=0.5, min_area_px=10))
    assert point is not None
    assert (point.row.recall, point.row.precision) == (1.0, 1.0)
    assert "threshold 0.50" in point.summary() and "8 images" in point.summary()
    assert [round(r.threshold, 1) for r in job.table(Rules())] == [
        round(0.1 * i, 1) for i in range(1, 10)
    ]
    big = job.operating_point(Rules(threshold=0.5, min_area_px=10_000))  # no disc that large
    assert big is not None and big.row.recall == 0.0
    recall, precision = job.pr_curve(Rules(threshold=0.5))
    assert len(recall) == len(precision) >= 2


def test_bad_folders_get_clear_messages(model: Path, tmp_path: Path) -> None:
    job = ValidationJob(lambda: model)
    with pytest.raises(ValueError, match="choose a validation folder"):
        job.compute("  ")
    with pytest.raises(ValueError, match="does not exist"):
        job.compute(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image found"):
        job.compute(tmp_path / "empty")
    assert not job.running  # a refused folder leaves the job free


def test_cancel_before_the_worker_starts_is_kept(model: Path, tmp_path: Path) -> None:
    job = ValidationJob(lambda: model)
    folder = labelled_folder(tmp_path / "v")
    job.begin()  # on the GUI thread
    job.cancel()  # the user is quicker than the worker
    with pytest.raises(ValidationCancelled):
        job.run(folder)
    assert job.result is None and job.wait(1)
    job.compute(folder)  # the next computation is not cancelled by the old request
    assert job.result is not None


def test_one_computation_at_a_time_and_wait(model: Path, tmp_path: Path) -> None:
    gate = threading.Event()

    def slow_loader(path: Path) -> Any:
        gate.wait(5)
        return load_engine(path)

    job = ValidationJob(lambda: model, loader=slow_loader)
    folder = labelled_folder(tmp_path / "v")
    t = threading.Thread(target=job.compute, args=(folder,))
    t.start()
    while not job.running:
        pass
    with pytest.raises(RuntimeError, match="already running"):
        job.compute(folder)
    assert not job.wait(0.05)
    gate.set()
    assert job.wait(10)
    t.join()
    assert job.result is not None
