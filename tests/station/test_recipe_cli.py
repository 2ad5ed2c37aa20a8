"""``inspection-station new-recipe``: the card's operating point and the report's per-class
rules become a recipe the station loads; what does not fit is refused with exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.cli import main
from app.station.recipe import load_recipe
from engines.card import load_card_for

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "resources" / "models"


def test_the_cards_operating_point_becomes_the_rules(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "recipes").mkdir()
    for suffix in (".onnx", ".json"):
        shutil.copy(MODELS / f"dagm-class1-fast{suffix}", tmp_path / "models")
    model = tmp_path / "models" / "dagm-class1-fast.onnx"
    out = tmp_path / "recipes" / "fast.toml"
    assert main(["new-recipe", "--model", str(model), "--out", str(out),
                 "--source", "folder:images"]) == 0  # fmt: skip
    recipe = load_recipe(out)
    card = load_card_for(model)
    assert recipe.model == model.resolve()
    assert (recipe.rules.threshold, recipe.rules.min_area_px) == (card.threshold, card.min_area_px)
    assert recipe.rules.classes == ()  # one-class model: no per-class rules
    assert recipe.source.spec == f"folder:{tmp_path / 'recipes' / 'images'}"
    # as the bundled recipes: the model relative to the recipe, no machine path
    assert 'model = "../models/dagm-class1-fast.onnx"' in out.read_text()


@pytest.fixture()
def demo_copy(tmp_path: Path) -> Path:
    for suffix in (".onnx", ".json"):
        shutil.copy(MODELS / f"demo{suffix}", tmp_path / f"demo{suffix}")
    return tmp_path / "demo.onnx"


def test_separable_classes_of_the_report_get_their_minimum_area(demo_copy: Path) -> None:
    report = demo_copy.with_name("demo-report.json")  # found beside the model by default
    report.write_text(json.dumps({"suggested_class_rules": {
        "defect": {"min_area_px": 40, "separable": True, "normal_max_area": 12},
    }}))  # fmt: skip
    out = demo_copy.with_name("demo.toml")
    assert main(["new-recipe", "--model", str(demo_copy), "--out", str(out)]) == 0
    rules = load_recipe(out).rules
    assert [(c.name, c.min_area_px) for c in rules.classes] == [("defect", 40)]
    # a class that did not separate on validation keeps the global rule
    report.write_text(json.dumps({"suggested_class_rules": {
        "defect": {"normal_max_area": 90, "found_min_area": 30, "separable": False},
    }}))  # fmt: skip
    assert main(["new-recipe", "--model", str(demo_copy), "--out", str(out), "--force"]) == 0
    assert load_recipe(out).rules.classes == ()


def test_what_does_not_fit_is_refused(demo_copy: Path, caplog: pytest.LogCaptureFixture) -> None:
    report = demo_copy.with_name("other-report.json")
    report.write_text(
        json.dumps({"suggested_class_rules": {"crack": {"min_area_px": 9, "separable": True}}})
    )
    out = demo_copy.with_name("r.toml")
    argv = ["new-recipe", "--model", str(demo_copy), "--out", str(out), "--report", str(report)]
    assert main(argv) == 2 and not out.exists()
    assert "crack, which the model does not know" in caplog.text
    out.write_text("# mine\n")
    assert main(["new-recipe", "--model", str(demo_copy), "--out", str(out)]) == 2
    assert out.read_text() == "# mine\n" and "--force" in caplog.text
    assert main(["new-recipe", "--model", str(demo_copy.with_name("x.onnx")), "--out",
                 str(demo_copy.with_name("y.toml"))]) == 2  # fmt: skip
    assert "x.onnx: model not found" in caplog.text
