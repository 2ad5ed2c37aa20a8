"""The networks: TinyUNet (the station's default) and NVIDIA's UNet_Industrial layout.

Both take float32 ``N x H x W x C`` in [0, 1] (what :mod:`engines.preprocess` produces) and return
``N x H x W x 1`` sigmoid probabilities in float32, also under mixed precision. Per-image
standardisation is the first layer, so the exported ONNX carries it and no runtime has to know
the training statistics; it also makes the network indifferent to the line's overall brightness.
The spatial axes are left open: the same weights train on crops and validate on whole frames
(sides divisible by 2**depth); the ONNX export fixes them to the card's input size.

With ``classes`` K >= 2 the head is a multi-class one (``class_head``):

* ``"softmax"``: K + 1 channels, a softmax over background and the K classes;
* ``"sigmoid"``: K independent sigmoids, one per class.

The Keras model then returns those raw channels ("scores"); :func:`split_scores` turns them into
what the station reads: the defect probability (1 - p(background), resp. the largest class
sigmoid) and the class probabilities given a defect (K channels summing to 1). The export wraps
the model with it, so the ONNX graph has the outputs ``probability`` (N x H x W x 1, as a
one-class model) and ``class_probability`` (N x H x W x K).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import keras
from keras import layers, ops

Architecture = Literal["tinyunet", "unet_industrial"]
ARCHITECTURES: tuple[Architecture, ...] = ("tinyunet", "unet_industrial")
ClassHead = Literal["softmax", "sigmoid"]
SHARE_EPS = 1e-6  # see split_scores
CLASS_HEADS: tuple[ClassHead, ...] = ("softmax", "sigmoid")
# Smallest std used when standardising: a flat tile (std ~ 0) would otherwise turn sensor noise
# into full-scale input. 0.01 is ~2.5 grey levels of an 8-bit frame.
STD_FLOOR = 0.01


@keras.saving.register_keras_serializable(package="training")
class Standardize(layers.Layer):
    """``(x - mean) / sqrt(var + floor**2)`` per image, computed in float32."""

    def __init__(self, floor: float = STD_FLOOR, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.floor = floor

    def call(self, x: Any) -> Any:
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        var = ops.mean(ops.square(x - mean), axis=(1, 2, 3), keepdims=True)
        return (x - mean) / ops.sqrt(var + self.floor**2)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "floor": self.floor}


def _conv(filters: int, size: int, weight_decay: float, name: str) -> layers.Conv2D:
    return layers.Conv2D(
        filters,
        size,
        padding="same",
        activation="relu",
        kernel_initializer="he_uniform",
        kernel_regularizer=keras.regularizers.L2(weight_decay) if weight_decay else None,
        name=name,
    )


def _double(x: Any, filters: int, wd: float, name: str) -> Any:
    x = _conv(filters, 3, wd, f"{name}_conv1")(x)
    return _conv(filters, 3, wd, f"{name}_conv2")(x)


def _up(x: Any, filters: int, wd: float, name: str) -> Any:
    """Upsample x2, then a 2x2 'same' conv + ReLU: UNet_Industrial's ``deconv2d`` (not a transposed
    conv). Their nearest resize uses ``align_corners=True``, which at exactly 2x picks the same
    source pixels as plain repetition, so ``UpSampling2D`` reproduces it."""
    x = layers.UpSampling2D(2, name=f"{name}_upsample")(x)
    return _conv(filters, 2, wd, f"{name}_upconv")(x)


def prior_bias(prior: float | None, classes: int, class_head: ClassHead) -> list[float] | None:
    """Output biases that make the untrained network predict the defect pixel share ``prior``.

    RetinaNet's initialisation (Lin et al. 2017): with a zero bias every pixel starts at p = 0.5
    (or 1 / (K + 1)), the loss of the background (99.8 % of Magnetic-tile's pixels) swamps the
    first steps and drove the logits so far down that the ReLUs died and the network predicted
    nothing, for good (bench/results/class_head.md). Starting at the prior removes that first
    shock. None (or a prior outside (0, 1)): Keras' zero bias.
    """
    if prior is None or not 0.0 < prior < 1.0:
        return None
    p = min(max(prior, 1e-4), 0.5)
    if classes <= 1:
        return [float(math.log(p / (1 - p)))]
    if class_head == "softmax":  # background vs K equally likely classes sharing p
        return [float(math.log((1 - p) * classes / p))] + [0.0] * classes
    # sigmoid head: the defect map is the largest class sigmoid, so each starts at p
    return [float(math.log(p / (1 - p)))] * classes


def _head(
    x: Any, classes: int = 1, class_head: ClassHead = "softmax", prior: float | None = None
) -> Any:
    # float32 output even under mixed_float16: the sigmoid and the loss need the precision.
    bias = prior_bias(prior, classes, class_head)
    init: Any = keras.initializers.Constant(bias) if bias else "zeros"
    if classes <= 1:
        return layers.Conv2D(
            1, 1, activation="sigmoid", dtype="float32", name="probability", bias_initializer=init
        )(x)
    if class_head == "softmax":
        return layers.Conv2D(
            classes + 1, 1, activation="softmax", dtype="float32", name="class_scores",
            bias_initializer=init,
        )(x)  # fmt: skip
    if class_head == "sigmoid":
        return layers.Conv2D(
            classes, 1, activation="sigmoid", dtype="float32", name="class_scores",
            bias_initializer=init,
        )(x)  # fmt: skip
    raise ValueError(f"unknown class head {class_head!r} (expected one of {CLASS_HEADS})")


def score_channels(classes: int, class_head: ClassHead) -> int:
    """Channels of the Keras model's output for ``classes`` classes."""
    if classes <= 1:
        return 1
    return classes + 1 if class_head == "softmax" else classes


def split_scores(scores: Any, classes: int, class_head: ClassHead) -> tuple[Any, Any]:
    """``(defect probability N x H x W x 1, class probability N x H x W x K)`` from the model's
    output (Keras ops: runs on tensors and numpy arrays alike). One class: ``(scores, None)``."""
    if classes <= 1:
        return scores, None
    if class_head == "softmax":
        fg = scores[..., 1:]
        # 1 - p(background) computed as the sum of the class channels: the same number without
        # the cancellation of 1 - 0.9999...; p(class | defect) = p(class) / p(defect).
        defect = ops.sum(fg, axis=-1, keepdims=True)
    else:
        fg = scores
        defect = ops.max(fg, axis=-1, keepdims=True)
    # eps: where no class is likely (tiny or underflowing values) the bare ratio of tiny numbers
    # is noise that differs between Keras and ONNX Runtime (|diff| up to 1 was measured); with
    # it such pixels read "uniform", and on any pixel the station can threshold (p >= 0.01)
    # the shares move by < 1e-3.
    k = fg.shape[-1]
    share = (fg + SHARE_EPS) / (ops.sum(fg, axis=-1, keepdims=True) + k * SHARE_EPS)
    return defect, share


def tiny_unet(
    channels: int = 1,
    base_filters: int = 16,
    weight_decay: float = 1e-5,
    depth: int = 3,
    classes: int = 1,
    class_head: ClassHead = "softmax",
    prior: float | None = None,
) -> keras.Model:
    """3 down blocks (2 conv + max-pool), bottleneck, 3 up blocks (upsample + conv, skip, 2 conv)."""
    inp = keras.Input((None, None, channels), name="image")
    x = Standardize(name="standardize")(inp)
    skips = []
    for level in range(depth):
        x = _double(x, base_filters * 2**level, weight_decay, f"down{level + 1}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"down{level + 1}_pool")(x)
    x = _double(x, base_filters * 2**depth, weight_decay, "bottleneck")
    for level in reversed(range(depth)):
        f = base_filters * 2**level
        x = _up(x, f, weight_decay, f"up{level + 1}")
        x = layers.Concatenate(name=f"up{level + 1}_concat")([x, skips[level]])
        x = _double(x, f, weight_decay, f"up{level + 1}")
    out = _head(x, classes, class_head, prior)
    return keras.Model(inp, out, name=f"tinyunet_f{base_filters}")


def _industrial_up(x: Any, skip: Any, filters: int, wd: float, name: str) -> Any:
    """UNet_Industrial's ``upsample_unet_block``: concat, 3x3 conv, 3x3 conv halving, upsample.

    The second conv already halves the width and the upsample keeps it, so each decoder stage
    hands on half its nominal width (a textbook decoder would keep it; that cost us ~125 k extra
    parameters before).
    """
    # Their concat order is [upsampled, skip]; it only permutes kernel rows, but keeping it lets
    # their checkpoints be copied over weight for weight.
    x = layers.Concatenate(name=f"{name}_concat")([x, skip])
    x = _conv(filters, 3, wd, f"{name}_conv1")(x)
    x = _conv(filters // 2, 3, wd, f"{name}_conv2")(x)
    return _up(x, filters // 2, wd, name)


def unet_industrial(
    channels: int = 1,
    weight_decay: float = 1e-5,
    classes: int = 1,
    class_head: ClassHead = "softmax",
    prior: float | None = None,
) -> keras.Model:
    """NVIDIA UNet_Industrial's ``tinyUNet`` variant, layer for layer (1,850,305 parameters).

    Input block 32 and down blocks 32/64/128 (two 3x3 convs each, the skip taken before the 2x2
    max-pool: four poolings in all); bottleneck 256 (two 3x3 convs, then upsample to 128); three
    decoder stages of :func:`_industrial_up` (128, 64, 32 -> 64, 32, 16 channels out); output block
    (concat the input block's skip, two 3x3 convs of 32, 1x1 conv) and a sigmoid. Every conv has a
    bias and a ReLU except the 1x1. NVIDIA's source comments "Total Params: 1,824,945", but their
    blocks as published add up to 1,850,305 (their "original" variant's comment, 36,950,273, does
    not match its code either: 29,137,793), so we follow the code; at 512x512 it is 18.34 G
    multiply-adds, the ~36.7 GFLOP they quote. They pad inputs to 512x512; we take any side
    divisible by 16.
    """
    inp = keras.Input((None, None, channels), name="image")
    x = Standardize(name="standardize")(inp)
    skips = []
    for i, f in enumerate((32, 32, 64, 128)):
        x = _double(x, f, weight_decay, "input" if i == 0 else f"down{i}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = _double(x, 256, weight_decay, "bottleneck")
    x = _up(x, 128, weight_decay, "bottleneck")
    for i, f in zip((3, 2, 1), (128, 64, 32), strict=True):
        x = _industrial_up(x, skips[i], f, weight_decay, f"up{i}")
    x = layers.Concatenate(name="output_concat")([x, skips[0]])
    x = _double(x, 32, weight_decay, "output")
    return keras.Model(inp, _head(x, classes, class_head, prior), name="unet_industrial")


def build_model(
    architecture: Architecture,
    *,
    channels: int = 1,
    base_filters: int = 16,
    weight_decay: float = 1e-5,
    classes: int = 1,
    class_head: ClassHead = "softmax",
    prior: float | None = None,
) -> keras.Model:
    """The network; ``classes`` >= 2 gives a multi-class head (see the module docstring);
    ``prior`` the defect pixel share the output starts at (:func:`prior_bias`)."""
    if architecture == "tinyunet":
        return tiny_unet(
            channels, base_filters, weight_decay, classes=classes, class_head=class_head,
            prior=prior,
        )  # fmt: skip
    if architecture == "unet_industrial":
        return unet_industrial(
            channels, weight_decay, classes=classes, class_head=class_head, prior=prior
        )
    raise ValueError(f"unknown architecture {architecture!r} (expected one of {ARCHITECTURES})")


def describe(model: keras.Model) -> str:
    return f"{model.name} ({model.count_params():,} parameters)"
