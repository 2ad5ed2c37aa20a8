"""Multi-class models: the card's class fields, the second ONNX output, class maps through tiling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from engines import load_engine
from engines.card import CLASS_OUTPUT_NAME, CardError, ModelCard, card_path_for
from engines.predict import predict_class_maps, predict_maps
from engines.protocol import ModelLoadError
from tests.engines.conftest import OPSET, TILE, make_mean_model

NAMES = ("crack", "stain", "spot")


def make_class_model(
    path: Path, *, card_classes: tuple[str, ...] = NAMES, batch: int | str = "N"
) -> Path:
    """probability = the input (identity); class_probability = (x, 1 - x, 0) / 1, i.e. three
    channels summing to 1, so stitched class maps can be checked exactly."""
    k = 3
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, TILE, TILE, 1])
    y = helper.make_tensor_value_info("probability", TensorProto.FLOAT, [batch, TILE, TILE, 1])
    z = helper.make_tensor_value_info(CLASS_OUTPUT_NAME, TensorProto.FLOAT, [batch, TILE, TILE, k])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    nodes = [
        helper.make_node("Identity", ["image"], ["probability"]),
        helper.make_node("Sub", ["one", "image"], ["rest"]),
        helper.make_node("Sub", ["image", "image"], ["zero"]),
        helper.make_node("Concat", ["image", "rest", "zero"], [CLASS_OUTPUT_NAME], axis=3),
    ]
    graph = helper.make_graph(nodes, "classes", [x], [y, z], [one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    card = ModelCard(
        name="classes",
        input_height=TILE,
        input_width=TILE,
        class_names=card_classes,
        class_output_name=CLASS_OUTPUT_NAME,
    )
    card.save(card_path_for(path))
    return path


def test_class_maps_through_tiling_and_scaling(tmp_path: Path) -> None:
    engine = load_engine(make_class_model(tmp_path / "c.onnx"))
    rng = np.random.default_rng(0)
    frame = rng.random((75, 90)).astype(np.float32)  # several overlapping tiles
    small = rng.random((20, 25)).astype(np.float32)  # padded up to one tile
    (p1, c1), (p2, c2) = predict_class_maps(engine, [frame, small], max_batch=3)
    np.testing.assert_allclose(p1, frame, atol=1e-6)
    assert c1 is not None and c1.shape == (75, 90, 3) and c2 is not None
    np.testing.assert_allclose(c1[..., 0], frame, atol=1e-6)
    np.testing.assert_allclose(c1[..., 1], 1 - frame, atol=1e-6)
    np.testing.assert_allclose(c2[..., 1], 1 - small, atol=1e-6)
    assert np.all(c1[..., 2] == 0)
    # The defect map is exactly predict_maps' (every one-class path reads it unchanged).
    (same,) = predict_maps(engine, [frame])
    np.testing.assert_array_equal(same, p1)

    scaled = engine.card.with_updates(frame_scale=0.5)
    engine.card = scaled
    ((p, c),) = predict_class_maps(engine, [frame])
    assert p.shape == (75, 90) and c is not None and c.shape == (75, 90, 3)
    np.testing.assert_allclose(c.sum(-1), 1.0, atol=1e-5)


def test_a_fixed_batch_class_model_is_chunked(tmp_path: Path) -> None:
    engine = load_engine(make_class_model(tmp_path / "f.onnx", batch=2))
    tiles = np.random.default_rng(1).random((5, TILE, TILE, 1)).astype(np.float32)
    prob, cls = engine.infer_classes(tiles)  # type: ignore[attr-defined]
    assert prob.shape == (5, TILE, TILE, 1) and cls.shape == (5, TILE, TILE, 3)
    np.testing.assert_allclose(cls[..., 1:2], 1 - tiles, atol=1e-6)


def test_one_class_models_give_no_class_map(tmp_path: Path) -> None:
    engine = load_engine(make_mean_model(tmp_path / "m.onnx"))
    ((prob, cls),) = predict_class_maps(engine, [np.zeros((40, 40), np.uint8)])
    assert cls is None and prob.shape == (40, 40)


def test_card_and_graph_must_agree_on_the_classes(tmp_path: Path) -> None:
    path = make_class_model(tmp_path / "c.onnx", card_classes=("a", "b"))
    with pytest.raises(ModelLoadError, match="expected NxHxWx2"):
        load_engine(path)
    card = ModelCard(
        name="m", input_height=TILE, input_width=TILE, class_names=("a", "b"),
        class_output_name=CLASS_OUTPUT_NAME,
    )  # fmt: skip
    with pytest.raises(ModelLoadError, match="no class output 'class_probability'"):
        load_engine(make_mean_model(tmp_path / "m.onnx", card=card))


def test_card_class_fields(tmp_path: Path) -> None:
    one = ModelCard(name="m", input_height=8, input_width=8)
    assert "class_colors" not in one.to_dict() and "class_output_name" not in one.to_dict()
    assert one.color_of(0) == "#e69f00" and not one.multiclass
    multi = one.with_updates(
        class_names=("a", "b"), class_colors=("#ff0000", "#00ff00"), class_output_name="cp"
    )
    saved = json.loads(multi.save(tmp_path / "m.json").read_text(encoding="utf-8"))
    assert saved["class_colors"] == ["#ff0000", "#00ff00"] and saved["class_output_name"] == "cp"
    assert ModelCard.load(tmp_path / "m.json") == multi and multi.color_of(1) == "#00ff00"
    with pytest.raises(CardError, match="1 class_colors for 2 class_names"):
        one.with_updates(class_names=("a", "b"), class_colors=("#ff0000",))
    with pytest.raises(CardError, match="not #rrggbb"):
        one.with_updates(class_colors=("red",))
    with pytest.raises(CardError, match="fewer than 2 classes"):
        one.with_updates(class_output_name="cp")
    with pytest.raises(CardError, match="repeat a name"):
        one.with_updates(class_names=("a", "a"))
