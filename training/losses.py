"""BCE + soft Dice, and the hard Dice metric used to pick the best checkpoint.

Why this loss and not UNet_Industrial's ``adaptive_loss`` (cross-entropy until the Dice passes
0.3, then pure Sorensen Dice): the switch is a discontinuity in the objective chosen by a tuned
constant, and pure Dice gives no gradient on defect-free batches, which are most of the data.
Summing both terms from the start keeps a pixel-wise signal on every image (BCE) and directly
optimises the overlap that is reported (Dice), with nothing to tune. The Dice term is computed
over the whole batch, so batches whose crops happen to hold no defect do not divide by zero.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

_EPS = 1e-6
_SMOOTH = 1.0


@keras.saving.register_keras_serializable(package="training")
def soft_dice(y_true: Any, y_pred: Any) -> Any:
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    inter = ops.sum(y_true * y_pred)
    return (2.0 * inter + _SMOOTH) / (ops.sum(y_true) + ops.sum(y_pred) + _SMOOTH)


@keras.saving.register_keras_serializable(package="training")
def bce_dice_loss(y_true: Any, y_pred: Any) -> Any:
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.clip(ops.cast(y_pred, "float32"), _EPS, 1.0 - _EPS)
    bce = -ops.mean(y_true * ops.log(y_pred) + (1.0 - y_true) * ops.log(1.0 - y_pred))
    return bce + (1.0 - soft_dice(y_true, y_pred))


@keras.saving.register_keras_serializable(package="training")
def dice(y_true: Any, y_pred: Any) -> Any:
    """Hard Dice at 0.5 over the batch (a training-log metric; 1.0 when both are empty)."""
    y_true = ops.cast(y_true > 0.5, "float32")
    y_pred = ops.cast(y_pred > 0.5, "float32")
    inter = ops.sum(y_true * y_pred)
    return (2.0 * inter + _EPS) / (ops.sum(y_true) + ops.sum(y_pred) + _EPS)


# -- multi-class ----------------------------------------------------------------------------------
# y_true of a multi-class model holds class ids (N x H x W x 1, 0 = background, 1..K); y_pred the
# model's raw channels (see training.model.split_scores).


def _one_hot(y_true: Any, depth: int) -> Any:
    ids = ops.cast(ops.round(ops.squeeze(ops.cast(y_true, "float32"), axis=-1)), "int32")
    return ops.one_hot(ids, depth, dtype="float32")


def _defect(y_pred: Any, classes: int, head: str) -> Any:
    from training.model import split_scores

    return split_scores(ops.cast(y_pred, "float32"), classes, head)[0]  # type: ignore[arg-type]  # str; checked there


@keras.saving.register_keras_serializable(package="training")
class ClassLoss(keras.losses.Loss):
    """Cross-entropy + soft Dice of "any defect" + mean soft Dice per class present.

    The same three terms for both heads, so that the head is the only difference measured:
    ``softmax`` uses the categorical cross-entropy over background + K, ``sigmoid`` the mean
    binary cross-entropy of the K channels. The any-defect Dice keeps what the station decides
    on (the defect map) as good as a one-class model's; the per-class Dice, averaged over the
    classes, keeps a rare class from drowning in a frequent one. Only the classes present in the
    batch's masks are averaged: with several classes most batches lack most of them, and the
    Dice of an absent class (1 / (sum of its predictions + 1)) only rewards predicting nothing,
    which collapsed the first runs to all-background (bench/results/class_head.md).
    """

    def __init__(self, classes: int = 2, head: str = "softmax", **kwargs: Any) -> None:
        kwargs.setdefault("name", "class_loss")
        super().__init__(**kwargs)
        self.classes, self.head = int(classes), head

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_pred = ops.clip(ops.cast(y_pred, "float32"), _EPS, 1.0 - _EPS)
        onehot = _one_hot(y_true, self.classes + 1)
        fg_true = onehot[..., 1:]
        if self.head == "softmax":
            ce = -ops.mean(ops.sum(onehot * ops.log(y_pred), axis=-1))
            fg_pred = y_pred[..., 1:]
        else:
            ce = -ops.mean(fg_true * ops.log(y_pred) + (1.0 - fg_true) * ops.log(1.0 - y_pred))
            fg_pred = y_pred
        any_true = ops.sum(fg_true, axis=-1, keepdims=True)
        defect = _defect(y_pred, self.classes, self.head)
        per_class = ops.stack(
            [1.0 - soft_dice(fg_true[..., k], fg_pred[..., k]) for k in range(self.classes)]
        )
        present = ops.cast(ops.sum(fg_true, axis=(0, 1, 2)) > 0, "float32")
        class_term = ops.sum(present * per_class) / ops.maximum(ops.sum(present), 1.0)
        return ce + (1.0 - soft_dice(any_true, defect)) + class_term

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "classes": self.classes, "head": self.head}


@keras.saving.register_keras_serializable(package="training")
class DefectDice(keras.metrics.Metric):
    """:func:`dice` of the defect map (any class) of a multi-class model, batch mean."""

    def __init__(
        self, classes: int = 2, head: str = "softmax", name: str = "dice", **kwargs: Any
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.classes, self.head = int(classes), head
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        any_true = ops.cast(ops.cast(y_true, "float32") > 0.5, "float32")
        self.total.assign_add(dice(any_true, _defect(y_pred, self.classes, self.head)))
        self.count.assign_add(1.0)

    def result(self) -> Any:
        return self.total / ops.maximum(self.count, 1.0)

    def reset_state(self) -> None:
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "classes": self.classes, "head": self.head}
