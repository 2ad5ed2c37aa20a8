"""Defect classes through the running station: a two-output ONNX model (defect map + class
map), the pipeline hands the class map to the judge, blobs get their class, per-class rules
decide, the store keeps the class, and a slider move re-judges with the classes kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper

from app.station.inspection import ClassRules, Rules
from app.station.recipe import Recipe, SourceSettings
from app.station.session import InspectionSession
from app.station.settings import Settings
from engines.card import ModelCard

TILE = 16


def two_class_model(path: Path) -> Path:
    """defect = sigmoid(20 (x - 0.5)); class "stain" where x > 0.9, else "crack"."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", TILE, TILE, 1])
    y = helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", TILE, TILE, 1])
    c = helper.make_tensor_value_info("class_probability", TensorProto.FLOAT, ["N", TILE, TILE, 2])
    nodes = [
        helper.make_node("Sub", ["image", "half"], ["centred"]),
        helper.make_node("Mul", ["centred", "gain"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["probability"]),
        helper.make_node("Sub", ["image", "cut"], ["above"]),
        helper.make_node("Mul", ["above", "steep"], ["stain_logit"]),
        helper.make_node("Sigmoid", ["stain_logit"], ["stain"]),
        helper.make_node("Sub", ["one", "stain"], ["crack"]),
        helper.make_node("Concat", ["crack", "stain"], ["class_probability"], axis=3),
    ]
    consts = {"half": 0.5, "gain": 20.0, "cut": 0.9, "steep": 200.0, "one": 1.0}
    graph = helper.make_graph(
        nodes, "two-class", [x], [y, c],
        initializer=[helper.make_tensor(k, TensorProto.FLOAT, [], [v]) for k, v in consts.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    ModelCard(
        name="two-class", input_height=TILE, input_width=TILE, model_id="two-class",
        class_names=("crack", "stain"), class_colors=("#ff0000", "#00aaff"),
        class_output_name="class_probability",
    ).save(path.with_suffix(".json"))  # fmt: skip
    return path


def test_classes_reach_the_rules_the_store_and_rejudging(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for name, value in (("0_clean", None), ("1_crack", 200), ("2_stain", 250)):
        img = np.full((32, 40), 20, np.uint8)
        if value is not None:
            img[8:20, 10:22] = value
        assert cv2.imwrite(str(frames / f"{name}.png"), img)
    rules = Rules(
        threshold=0.5, min_area_px=20, max_count=0,
        classes=(ClassRules("crack", max_count=3), ClassRules("stain", always_ng=True)),
    )  # fmt: skip
    recipe = Recipe(
        name="classes", model=two_class_model(tmp_path / "m.onnx"), rules=rules,
        source=SourceSettings(spec=f"folder:{frames}"),
    )  # fmt: skip
    settings = Settings.defaults(tmp_path / "data")
    with InspectionSession(recipe, settings=settings) as s:
        s.start()
        assert s.wait(30)
        s.stop()
        results = s.history()
        verdicts = [r.inspection.verdict for r in results]
        classes = [[d.class_name for d in r.inspection.defects] for r in results]
        assert verdicts == ["PASS", "PASS", "NG"]  # one crack is tolerated; a stain never
        assert classes == [[], ["crack"], ["stain"]]
        assert any("stain" in reason for reason in results[2].inspection.reasons)
        # a stricter crack rule re-judges the kept maps with their classes
        strict = Rules(
            threshold=0.5, min_area_px=20, max_count=0,
            classes=(ClassRules("crack", max_count=0), ClassRules("stain", always_ng=True)),
        )  # fmt: skip
        s.set_rules(strict)
        rejudged = [r.inspection for r in s.history()]
        assert [i.verdict for i in rejudged] == ["PASS", "NG", "NG"]
        assert rejudged[1].defects[0].class_name == "crack"
    with sqlite3.connect(settings.db_path) as conn:
        stored = sorted(n for (n,) in conn.execute("SELECT class_name FROM defects"))
    assert stored == ["crack", "stain"]
