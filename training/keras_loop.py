"""The Keras side of training: strategy, precision, compile, callbacks, checkpoints, resume."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from training.data.batches import Arrays
from training.losses import ClassLoss, DefectDice, bce_dice_loss, dice
from training.model import build_model, describe
from training.progress import Progress
from training.train import TrainConfig, make_sampler, pick_strategy, save_json, validate

log = logging.getLogger("training")
BUDGET_DECAY_AT = (0.5, 0.75, 0.9)  # shares of the time budget where the learning rate halves


class Batches(keras.utils.PyDataset):
    """``steps_per_epoch`` random batches per epoch; batch ``i`` of epoch ``e`` is reproducible."""

    def __init__(self, cfg: TrainConfig, arrays: Arrays, first_epoch: int) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.sampler = make_sampler(cfg, arrays)
        self.steps = cfg.steps_per_epoch
        self.seed = cfg.seed
        self.epoch = first_epoch

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return self.sampler.batch(rng)

    def on_epoch_end(self) -> None:
        self.epoch += 1


class Supervisor(keras.callbacks.Callback):
    """Validation, best/last checkpoints, history, early stop, time budget and progress events.

    One callback, run before Keras' own progress bar, so the bar and the JSON lines both show the
    validation metrics it adds to ``logs``.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        run: Path,
        val: Arrays,
        progress: Progress,
        state: dict[str, Any],
        t_start: float,
    ) -> None:
        super().__init__()
        self.cfg, self.run, self.val, self.progress = cfg, run, val, progress
        self.state = state
        self.t_start = t_start
        self.t_epoch = time.monotonic()
        self.epoch_times: list[float] = []
        self.history: list[dict[str, Any]] = state.get("history", [])
        self.last_step_emit = 0.0

    def _elapsed(self) -> float:
        return self.state.get("elapsed_before_s", 0.0) + time.monotonic() - self.t_start

    def _over_budget(self) -> bool:
        return self.cfg.max_minutes > 0 and self._elapsed() > self.cfg.max_minutes * 60

    def _budget_used(self) -> float:
        return self._elapsed() / (self.cfg.max_minutes * 60) if self.cfg.max_minutes > 0 else 0.0

    def _planned(self) -> int:
        """The epochs shown: the configured ones, or in budget mode those that fit the budget."""
        if self.cfg.lr_schedule != "budget" or not self.epoch_times:
            return self.cfg.epochs
        left = max(0.0, self.cfg.max_minutes * 60 - self._elapsed())
        done = self.state["epoch"]
        return min(self.cfg.epochs, done + math.ceil(left / float(np.mean(self.epoch_times[-5:]))))

    def _eta(self, epoch: int, step: int = 0) -> float:
        per_epoch = np.mean(self.epoch_times[-5:]) if self.epoch_times else float("nan")
        left = (self._planned() - epoch - 1) * per_epoch
        if self.epoch_times and step:
            left += (1 - step / self.cfg.steps_per_epoch) * per_epoch
        if self.cfg.max_minutes > 0:
            left = min(left, max(0.0, self.cfg.max_minutes * 60 - self._elapsed()))
        return float(left)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.t_epoch = time.monotonic()
        if self.cfg.lr_schedule == "budget":
            # Epochs from the budget: the learning rate follows the share of the time used
            # (halved at 50 / 75 / 90 %), so the run anneals whatever the speed of the machine.
            steps = sum(self._budget_used() >= f for f in BUDGET_DECAY_AT)
            self.model.optimizer.learning_rate = self.cfg.learning_rate * self.cfg.lr_decay**steps

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        now = time.monotonic()
        if self.progress.mode == "json" and now - self.last_step_emit >= 1.0:
            self.last_step_emit = now
            self.progress.emit(
                "step",
                epoch=self.state["epoch"] + 1,
                epochs=self._planned(),
                step=batch + 1,
                steps=self.cfg.steps_per_epoch,
                loss=float(logs.get("loss", float("nan"))),
                dice=float(logs.get("dice", float("nan"))),
                eta_s=self._eta(self.state["epoch"], batch + 1),
            )
        if self._over_budget():
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs if logs is not None else {}
        self.epoch_times.append(time.monotonic() - self.t_epoch)
        k = len(self.cfg.class_names)
        logs.update(validate(self.model, self.val, self.cfg.image_size, k, self.cfg.class_head))
        val_dice = logs["val_dice"]
        score = -1.0 if math.isnan(val_dice) else val_dice
        improved = score > self.state["best_val_dice"] or (
            score == self.state["best_val_dice"] and logs["val_loss"] < self.state["best_val_loss"]
        )
        ckpt = self.run / "checkpoints"
        if improved:
            self.state.update(
                best_val_dice=score, best_val_loss=logs["val_loss"], best_epoch=epoch + 1
            )
            self.model.save(ckpt / "best.keras")
        self.model.save(ckpt / "last.keras")
        entry = {
            "epoch": epoch + 1,
            "elapsed_s": round(self._elapsed(), 1),
            "lr": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            **{k: float(v) for k, v in logs.items()},
        }
        self.history.append(entry)
        self.state.update(epoch=epoch + 1, elapsed_s=self._elapsed(), history=self.history)
        save_json(self.run / "history.json", self.history)
        save_json(self.run / "state.json", {k: v for k, v in self.state.items() if k != "history"})
        log.info(
            "epoch %d/%d loss %.4f dice %.3f val_loss %.4f val_dice %.3f false-alarm images %d%s",
            epoch + 1,
            self._planned(),
            logs.get("loss", float("nan")),
            logs.get("dice", float("nan")),
            logs["val_loss"],
            val_dice,
            logs["val_false_alarm_images"],
            "  (best)" if improved else "",
        )
        self.progress.emit(
            "epoch",
            epoch=epoch + 1,
            epochs=self._planned(),
            step=self.cfg.steps_per_epoch,
            steps=self.cfg.steps_per_epoch,
            loss=float(logs.get("loss", float("nan"))),
            dice=float(logs.get("dice", float("nan"))),
            val_loss=logs["val_loss"],
            val_dice=val_dice,
            val_false_alarm_images=int(logs["val_false_alarm_images"]),
            **({"val_class_dice": logs["val_class_dice"]} if "val_class_dice" in logs else {}),
            best_val_dice=self.state["best_val_dice"],
            best_epoch=self.state["best_epoch"],
            elapsed_s=self._elapsed(),
            eta_s=self._eta(epoch),
        )
        annealing = self.cfg.lr_schedule != "budget" or self._budget_used() >= BUDGET_DECAY_AT[0]
        if annealing and epoch + 1 - self.state["best_epoch"] >= self.cfg.patience:
            # In budget mode the first half runs at the full rate whatever the validation does.
            log.info("early stop: no better validation Dice for %d epochs", self.cfg.patience)
            self.model.stop_training = True
        if self._over_budget():
            log.info("time budget of %.1f min reached", self.cfg.max_minutes)
            self.model.stop_training = True


def defect_pixel_share(arrays: Arrays) -> float:
    """The share of defect pixels in the training frames (the output bias starts there)."""
    total = sum(m.size for m in arrays.masks)
    return float(sum(np.count_nonzero(m) for m in arrays.masks)) / max(1, total)


def _optimizer(cfg: TrainConfig) -> keras.optimizers.Optimizer:
    schedule: Any = cfg.learning_rate  # budget mode: set per epoch by the Supervisor
    if cfg.lr_schedule != "budget":
        schedule = keras.optimizers.schedules.ExponentialDecay(
            cfg.learning_rate,
            decay_steps=cfg.lr_decay_epochs * cfg.steps_per_epoch,
            decay_rate=cfg.lr_decay,
            staircase=True,
        )
    # Gradient clipping: one outlier batch (a near-flat crop, a saturated BCE pixel) otherwise
    # produced a step large enough to kill the ReLUs, after which the network predicts nothing.
    if cfg.optimizer == "rmsprop":  # UNet_Industrial's choice (centred, momentum 0.8)
        return keras.optimizers.RMSprop(
            schedule, rho=0.9, momentum=0.8, centered=True, global_clipnorm=cfg.clipnorm
        )
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(schedule, global_clipnorm=cfg.clipnorm)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r} (adam or rmsprop)")


def fit(
    cfg: TrainConfig,
    run: Path,
    train_arr: Arrays,
    val_arr: Arrays,
    progress: Progress,
    t_start: float,
) -> dict[str, Any]:
    if cfg.amp:
        # float16 compute, float32 variables; the model's head is pinned to float32 outputs and
        # Keras wraps the optimizer in a LossScaleOptimizer when compiling under this policy.
        keras.mixed_precision.set_global_policy("mixed_float16")
    keras.utils.set_random_seed(cfg.seed)
    strategy = pick_strategy(tf)
    ckpt = run / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {
        "epoch": 0,
        "best_val_dice": -1.0,
        "best_val_loss": float("inf"),
        "best_epoch": 0,
        "elapsed_before_s": 0.0,
    }
    resumed = cfg.resume and (ckpt / "last.keras").is_file()
    with strategy.scope():
        if resumed:
            saved = json.loads((run / "state.json").read_text(encoding="utf-8"))
            state.update(saved)
            state["elapsed_before_s"] = saved.get("elapsed_s", 0.0)
            history_path = run / "history.json"
            if history_path.is_file():
                state["history"] = json.loads(history_path.read_text(encoding="utf-8"))
            model = keras.models.load_model(ckpt / "last.keras", compile=True)
            log.info("resumed %s at epoch %d", ckpt / "last.keras", state["epoch"])
        else:
            model = build_model(
                cfg.architecture,  # type: ignore[arg-type]  # str; build_model refuses others
                channels=cfg.channels,
                base_filters=cfg.base_filters,
                weight_decay=cfg.weight_decay,
                classes=len(cfg.class_names),
                class_head=cfg.class_head,  # type: ignore[arg-type]  # str; build_model refuses others
                prior=defect_pixel_share(train_arr),
            )
            if cfg.init_from:
                # Weights only: the new run gets a fresh optimizer and schedule (fine-tuning).
                start = keras.models.load_model(cfg.init_from, compile=False)
                model.set_weights(start.get_weights())
                log.info("initial weights from %s", cfg.init_from)
            k = len(cfg.class_names)
            model.compile(
                optimizer=_optimizer(cfg),
                loss=ClassLoss(k, cfg.class_head) if k > 1 else bce_dice_loss,
                metrics=[DefectDice(k, cfg.class_head) if k > 1 else dice],
                jit_compile=cfg.xla,
            )
    log.info("model %s, strategy %s", describe(model), type(strategy).__name__)
    progress.emit(
        "info",
        model=describe(model),
        train_images=len(train_arr.names),
        val_images=len(val_arr.names),
        resumed_epoch=state["epoch"],
    )
    supervisor = Supervisor(cfg, run, val_arr, progress, state, t_start)
    verbose: int | str = 0
    if cfg.progress == "human":
        verbose = 1 if sys.stdout.isatty() else 2
    if state["epoch"] < cfg.epochs:
        model.fit(
            Batches(cfg, train_arr, state["epoch"]),
            epochs=cfg.epochs,
            initial_epoch=state["epoch"],
            callbacks=[keras.callbacks.TerminateOnNaN(), supervisor],
            verbose=verbose,
        )
    return {
        "epochs_run": state["epoch"],
        "best_epoch": state["best_epoch"],
        "best_val_dice": state["best_val_dice"],
        "training_time_s": round(supervisor._elapsed(), 1),
        "checkpoint": str(ckpt / "best.keras"),
        "parameters": int(model.count_params()),
    }
