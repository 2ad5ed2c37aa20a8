"""Tiny real ONNX models built with onnx.helper, each with its model card beside it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engines.card import ModelCard, card_path_for

OPSET = 17
TILE = 32


def _save(model: onnx.ModelProto, path: Path, card: ModelCard) -> Path:
    model.ir_version = 8  # readable by every onnxruntime >= 1.18 the project supports
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    card.save(card_path_for(path))
    return path


def make_mean_model(
    path: Path,
    *,
    h: int = TILE,
    w: int = TILE,
    c: int = 1,
    batch: int | str = "N",
    input_name: str = "image",
    output_name: str = "probability",
    out_channels: int = 1,
    card: ModelCard | None = None,
) -> Path:
    """output = mean over channels of the input (identity for one channel), NxHxWx1."""
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, h, w, c])
    y = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, h, w, out_channels])
    nodes = [helper.make_node("ReduceMean", [input_name], ["mean"], axes=[3], keepdims=1)]
    if out_channels == 1:
        nodes.append(helper.make_node("Identity", ["mean"], [output_name]))
    else:
        nodes.append(helper.make_node("Concat", ["mean"] * out_channels, [output_name], axis=3))
    graph = helper.make_graph(nodes, "mean", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    card = card or ModelCard(name="mean", input_height=h, input_width=w, channels=c)
    return _save(model, path, card)


def make_conv_model(path: Path, *, h: int = TILE, w: int = TILE, c: int = 1) -> Path:
    """3x3 box-filter conv (zero padding) + sigmoid: a minimal U-Net-shaped NHWC graph."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", h, w, c])
    y = helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", h, w, 1])
    weight = np.full((1, c, 3, 3), 4.0 / (9 * c), dtype=np.float32)
    bias = np.array([-2.0], dtype=np.float32)
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "W", "B"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["conv"], ["sig"]),
        helper.make_node("Transpose", ["sig"], ["probability"], perm=[0, 2, 3, 1]),
    ]
    inits = [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")]
    graph = helper.make_graph(nodes, "conv", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    return _save(model, path, ModelCard(name="conv", input_height=h, input_width=w, channels=c))


def conv_reference(tile: np.ndarray) -> np.ndarray:
    """What the conv model computes, in numpy (for checking any backend)."""
    n, h, w, c = tile.shape
    mean = tile.mean(axis=3)
    padded = np.pad(mean, ((0, 0), (1, 1), (1, 1)))
    acc = sum(padded[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3))
    return (1.0 / (1.0 + np.exp(-(acc * 4.0 / 9.0 - 2.0))))[..., None].astype(np.float32)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def mean_model(model_dir: Path) -> Path:
    return make_mean_model(model_dir / "mean.onnx")


@pytest.fixture(scope="session")
def conv_model(model_dir: Path) -> Path:
    return make_conv_model(model_dir / "conv.onnx")


@pytest.fixture
def model_factory(tmp_path: Path) -> Callable[..., Path]:
    """Build a mean model with custom settings in this test's tmp dir."""

    def factory(name: str = "m.onnx", **kwargs: object) -> Path:
        return make_mean_model(tmp_path / name, **kwargs)  # type: ignore[arg-type]

    return factory
