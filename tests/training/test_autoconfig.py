"""Settings derived from the data (training/autoconfig.py): what a new dataset gets untuned."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.autoconfig import BUDGET_EPOCHS, DERIVABLE, apply, derive, measure
from training.data.discovery import discover
from training.train import TrainConfig


def _dataset(root: Path, *, n: int, size: tuple[int, int], radius: int, defective: int) -> Path:
    """``n`` grey images with a ``_mask`` beside each; the first ``defective`` hold a disc."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    h, w = size
    for i in range(n):
        img = rng.integers(90, 160, (h, w), dtype=np.uint8)
        mask = np.zeros((h, w), np.uint8)
        if i < defective:
            cv2.circle(mask, (w // 2, h // 2), radius, 255, -1)
            img[mask > 0] = 30
        cv2.imwrite(str(root / f"p{i:02d}.png"), img)
        cv2.imwrite(str(root / f"p{i:02d}_mask.png"), mask)
    return root


def test_large_defects_are_trained_downscaled_small_ones_at_full_resolution(tmp_path: Path) -> None:
    big = discover(_dataset(tmp_path / "big", n=8, size=(512, 512), radius=40, defective=4))
    small = discover(_dataset(tmp_path / "small", n=8, size=(300, 260), radius=6, defective=4))
    facts_big, facts_small = measure(big.samples), measure(small.samples)
    assert facts_big.defective == 4 and len(facts_big.defect_sides) == 4
    side, thick = facts_big.small_defect()
    assert 65 < side < 75 and thick > 50  # a disc of radius 40: sqrt(area) ~ 71
    values, why = derive(facts_big, 40.0)
    assert values["frame_scale"] == 0.25 and "71 px across" in why["frame_scale"]
    assert values["image_size"] == 128  # 512 * 0.25 = 128 px: one small tile
    assert values["crop_size"] == 128 and values["batch_size"] == 16
    values, _ = derive(facts_small, 40.0)
    assert values["frame_scale"] == 1.0
    assert values["image_size"] == 256 and values["crop_size"] == 128
    assert values["defect_share"] == 0.5  # 4 of 8: balanced already, yet never below a half


def test_thin_defects_keep_their_thickness(tmp_path: Path) -> None:
    """A long crack 3 px wide is large by area but would vanish at a quarter of its size."""
    root = tmp_path / "cracks"
    root.mkdir()
    for i in range(4):
        img = np.full((512, 512), 128, np.uint8)
        mask = np.zeros_like(img)
        cv2.line(mask, (40, 60 + 50 * i), (470, 80 + 50 * i), 255, 3)
        cv2.imwrite(str(root / f"c{i}.png"), img)
        cv2.imwrite(str(root / f"c{i}_mask.png"), mask)
    values, why = derive(measure(discover(root).samples), 40.0)
    assert values["frame_scale"] == 1.0, why["frame_scale"]


def test_given_values_win_and_the_rest_follow_them(tmp_path: Path) -> None:
    ds = discover(_dataset(tmp_path / "d", n=8, size=(512, 512), radius=40, defective=4))
    cfg = TrainConfig(data="d", out="r", image_size=256, max_minutes=10.0)
    derived = apply(cfg, ds.samples, [n for n in DERIVABLE if n != "image_size"])
    assert cfg.image_size == 256 and "image_size" not in derived
    assert cfg.frame_scale == 0.25 and cfg.crop_size == 128  # half of the given tile
    assert cfg.epochs == BUDGET_EPOCHS and "10 min" in derived["epochs"]
    cfg = TrainConfig(data="d", out="r", max_minutes=0.0)
    apply(cfg, ds.samples, ["epochs"])
    assert cfg.epochs == 60  # no budget: a fixed length


def test_no_defects_to_measure_means_full_resolution(tmp_path: Path) -> None:
    ds = discover(_dataset(tmp_path / "d", n=4, size=(200, 200), radius=5, defective=0))
    values, why = derive(measure(ds.samples), 0.0)
    assert values["frame_scale"] == 1.0 and "no defect" in why["frame_scale"]


@pytest.mark.slow
def test_untuned_cli_run_records_what_it_derived_and_anneals_on_the_budget(
    tmp_path: Path,
) -> None:
    """``train --data --out`` plus a budget: derived settings in config.json and the log, the
    run stopping on the budget (the schedule itself: the test below, on a fake clock)."""
    from training.cli import main

    data = _dataset(tmp_path / "d", n=12, size=(128, 128), radius=5, defective=6)
    run = tmp_path / "run"
    argv = ["train", "--data", str(data), "--out", str(run), "--max-minutes", "0.5", "--no-xla",
            "--base-filters", "4", "--steps-per-epoch", "1", "--no-export", "--progress", "none"]  # fmt: skip
    assert main(argv) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["lr_schedule"] == "budget" and cfg["epochs"] == BUDGET_EPOCHS
    assert set(cfg["derived"]) == set(DERIVABLE) - {"steps_per_epoch"}  # given: 1
    assert cfg["frame_scale"] == 1.0
    assert cfg["image_size"] == 128 and cfg["batch_size"] == 16
    history = json.loads((run / "history.json").read_text())
    assert history and all(h["lr"] <= 1.000001e-3 for h in history)  # float32 rates
    assert history[-1]["elapsed_s"] < 0.5 * 60 + 60  # stopped on the budget, not 10,000 epochs
    log = (run / "train.log").read_text()
    # It ends on the budget, or earlier by early stopping, which only starts after the first
    # halving (half the budget): never after 10,000 epochs.
    assert "time budget of 0.5 min reached" in log or (
        "early stop" in log and history[-1]["elapsed_s"] >= 0.5 * 60 / 2
    )
    assert "derived frame_scale = 1.0" in (run / "train.log").read_text()


def test_validation_keeps_every_defective_frame_and_as_many_good_ones() -> None:
    from training.autoconfig import validation_subset

    flags = [True] * 20 + [False] * 100
    keep = validation_subset(flags, 0)
    assert len(keep) == 40 and set(range(20)) <= set(keep)
    assert keep == validation_subset(flags, 0)  # seeded
    few = [True] * 2 + [False] * 10
    assert validation_subset(few, 0) == list(range(12))  # at least 16 good ones: all of them


def test_steps_per_epoch_follow_the_validation_cost() -> None:
    from training.autoconfig import MIN_STEPS, steps_per_epoch

    assert steps_per_epoch(1_000_000, 16, 128)[0] == MIN_STEPS  # cheap validation: the minimum
    steps, why = steps_per_epoch(50_000_000, 16, 128)
    assert steps == 128 and "50.0 M tile pixels" in why  # 50e6 / (0.5 * 3 * 16 * 128 * 128)


def test_the_learning_rate_follows_the_share_of_the_budget_used(tmp_path: Path) -> None:
    from training.keras_loop import Supervisor
    from training.progress import Progress

    cfg = TrainConfig(data="d", out=str(tmp_path), max_minutes=10.0, lr_schedule="budget")
    state = {"epoch": 0, "best_val_dice": -1.0, "best_val_loss": 1.0, "best_epoch": 0}
    sup = Supervisor(cfg, tmp_path, None, Progress("none"), state, 0.0)  # type: ignore[arg-type]  # no validation here

    class Optimizer:
        learning_rate = 0.0

    class Model:
        optimizer = Optimizer()

    sup._model = Model()  # what keras.callbacks.Callback.set_model stores
    for used, rate in ((0.1, 1e-3), (0.5, 5e-4), (0.8, 2.5e-4), (0.95, 1.25e-4)):
        sup._elapsed = lambda used=used: used * 600  # type: ignore[method-assign]  # a fake clock
        sup.on_epoch_begin(0)
        assert Model.optimizer.learning_rate == pytest.approx(rate), used
