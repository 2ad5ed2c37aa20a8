"""Training: the loss goes down, the CLI speaks JSON lines, resume and mixed precision work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.data import find_samples
from training.data.batches import BatchSampler, load_arrays

pytestmark = pytest.mark.training

ROOT = Path(__file__).resolve().parents[2]
EPOCH_KEYS = {
    "event",
    "epoch",
    "epochs",
    "step",
    "steps",
    "loss",
    "val_loss",
    "dice",
    "val_dice",
    "eta_s",
}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_a_few_steps_at_64_lower_the_loss(synthetic_folder: Path) -> None:
    import keras

    from training.losses import bce_dice_loss, dice
    from training.model import build_model

    keras.utils.set_random_seed(0)
    arrays = load_arrays(find_samples(synthetic_folder), channels=1, scale=1.0)
    sampler = BatchSampler(arrays, input_size=(64, 64), batch_size=8, defect_share=0.5)
    x, y = sampler.batch(np.random.default_rng(0))
    model = build_model("tinyunet", base_filters=4)
    model.compile(keras.optimizers.Adam(5e-3), loss=bce_dice_loss, metrics=[dice])
    before = model.evaluate(x, y, verbose=0)[0]
    model.fit(x, y, batch_size=8, epochs=40, verbose=0)
    after = model.evaluate(x, y, verbose=0)[0]
    assert after < before - 0.15, (before, after)


def test_cli_json_progress_lines_and_exported_model(synthetic_folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _cli(
        "train", "--data", str(synthetic_folder), "--out", str(run), "--epochs", "2",
        "--steps-per-epoch", "2", "--image-size", "64", "--base-filters", "4",
        "--batch-size", "4", "--progress", "json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = [json.loads(line) for line in proc.stdout.splitlines()]  # every line parses
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "done" and kinds.count("epoch") == 2 and "step" in kinds
    for e in events:
        if e["event"] == "epoch":
            assert EPOCH_KEYS <= e.keys()
            assert e["epochs"] == 2 and e["steps"] == 2
    done = events[-1]
    assert done["model"] == str(run / "model.onnx") and Path(done["report"]).is_file()
    for name in ("split.json", "history.json", "train.log", "config.json", "model.json"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "best.keras").is_file()
    card = json.loads((run / "model.json").read_text())
    assert card["input_height"] == 64 and card["agreement"]["keras_max_abs_diff"] <= 1e-4
    report = json.loads(Path(done["report"]).read_text())
    assert {"pixel", "image_level", "ap", "split", "model", "suggested"} <= report.keys()
    assert {"dice", "iou", "dice_unet_industrial"} <= report["pixel"].keys()
    assert len(report["image_level"]) == 9


def test_cli_error_is_one_json_line_and_nonzero_exit(tmp_path: Path) -> None:
    proc = _cli("train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r"),
                "--progress", "json")  # fmt: skip
    assert proc.returncode != 0
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last["event"] == "error" and "dataset folder not found" in last["message"]


def test_resume_continues_from_the_last_checkpoint(tiny_run: Path, tmp_path: Path) -> None:
    import shutil

    from training.progress import Progress
    from training.train import TrainConfig, train

    run = tmp_path / "resumed"
    shutil.copytree(tiny_run, run)
    cfg = json.loads((run / "config.json").read_text())
    cfg.update(out=str(run), epochs=3, resume=True)
    summary = train(TrainConfig(**cfg), Progress("none"))
    assert summary["epochs_run"] == 3
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]


def test_a_given_split_is_trained_on_as_is(tiny_run: Path, tmp_path: Path) -> None:
    """--split: another seed, the same images in train / val / test (models compared fairly)."""
    from training.progress import Progress
    from training.train import TrainConfig, train

    given = json.loads((tiny_run / "split.json").read_text())
    cfg = json.loads((tiny_run / "config.json").read_text())
    cfg.update(out=str(tmp_path / "again"), epochs=1, steps_per_epoch=1, seed=7,
               split_file=str(tiny_run / "split.json"))  # fmt: skip
    train(TrainConfig(**cfg), Progress("none"))
    got = json.loads((tmp_path / "again" / "split.json").read_text())
    assert [got[k] for k in ("train", "val", "test")] == [
        given[k] for k in ("train", "val", "test")
    ]
    assert got["info"]["split_from"] == str(tiny_run / "split.json")
    fresh = json.loads((tmp_path / "again" / "config.json").read_text())
    assert fresh["seed"] == 7


def test_mixed_precision_model_keeps_float32_output() -> None:
    import keras

    from training.model import build_model

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model("tinyunet", base_filters=4)
        out = model(np.zeros((1, 32, 32, 1), np.float32))
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
        assert model.get_layer("down1_conv1").compute_dtype == "float16"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_unet_industrial_layout_matches_nvidia_tinyunet() -> None:
    import keras

    from training.model import build_model

    model = build_model("unet_industrial")
    # NVIDIA's tinyUNet blocks as published add up to 1,850,305 (their comment says 1,824,945,
    # which their code does not produce); the Standardize layer adds nothing.
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == model.count_params() == 1_850_305
    assert not model.get_layer("standardize").weights
    assert sum(isinstance(layer, keras.layers.Conv2D) for layer in model.layers) == 23
    x = np.random.default_rng(0).random((1, 64, 64, 1), dtype=np.float32)
    out = np.asarray(model(x))
    assert out.shape == (1, 64, 64, 1)
    assert 0.0 <= out.min() and out.max() <= 1.0
