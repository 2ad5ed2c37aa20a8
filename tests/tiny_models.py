"""A tiny real ONNX model for the station's tests: ``probability = sigmoid(gain * (x - 0.5))``.

One channel in, one out, N x tile x tile: bright pixels are defects, and the probability rises
smoothly with brightness, so moving a threshold really changes which blobs count. Built with
onnx.helper and saved with its ModelCard, it runs through exactly the same load_engine / predict
path as a trained model.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from engines.card import ModelCard


def sigmoid_model(
    path: Path, *, tile: int = 32, gain: float = 12.0, model_id: str = "tiny-sigmoid"
) -> Path:
    """Write the model to ``path`` and its card beside it; return ``path``."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", tile, tile, 1])
    y = helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", tile, tile, 1])
    graph = helper.make_graph(
        [
            helper.make_node("Sub", ["image", "half"], ["centred"]),
            helper.make_node("Mul", ["centred", "gain"], ["logits"]),
            helper.make_node("Sigmoid", ["logits"], ["probability"]),
        ],
        "tiny",
        [x],
        [y],
        initializer=[
            helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
            helper.make_tensor("gain", TensorProto.FLOAT, [], [gain]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # what onnxruntime releases of the last two years all read
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    ModelCard(
        name=model_id,
        input_height=tile,
        input_width=tile,
        model_id=model_id,
        architecture=f"sigmoid({gain}*(x-0.5))",
    ).save(path.with_suffix(".json"))
    return path
