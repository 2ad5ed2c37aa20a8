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
