"""Re-measure the committed DAGM Class1 model on the test split recorded with it.

Reads the real images from ../shared/data (skips with the reason when they are absent) and
checks the targets of issue 3 at the card's operating point.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.training, pytest.mark.dagm]


# The recipe's model must meet the targets; every committed DAGM model's card must report what
# the model does on its test split (the fast 8-filter one reports that it misses the Dice target).
MODELS = (
    "dagm-class1", "dagm-class1-int8", "dagm-class1-fp16", "dagm-class1-fast", "dagm-class1-fast-int8",
)  # fmt: skip


def test_dagm_class1_model_meets_its_targets(
    dagm_class1: Path, resources_dir: Path, tmp_path: Path
) -> None:
    from app.station.recipe import load_recipe
    from training.evaluate import evaluate_model

    model = load_recipe(resources_dir / "recipes" / "dagm-class1.toml").model  # what the line runs
    if not model.is_file():
        pytest.skip(f"{model} is not there (train and export it as docs/training.md says)")
    report = evaluate_model(model, dagm_class1, split="test", out_dir=tmp_path, examples=0)
    assert report["split"]["name"] == "test" and report["split"]["images"] == 115
    assert report["split"]["defective"] == 14
    op = report["operating_point"]
    assert (op["recall"], op["fp"]) == (1.0, 0), op
    assert report["ap"] == pytest.approx(1.0)
    assert report["pixel"]["dice"] >= 0.85, report["pixel"]
    assert report["pixel"]["dice_unet_industrial"] >= 0.97, report["pixel"]


@pytest.mark.parametrize("stem", MODELS)
def test_each_dagm_card_reports_what_its_model_does(
    stem: str, dagm_class1: Path, resources_dir: Path, tmp_path: Path
) -> None:
    from engines.card import load_card_for
    from training.evaluate import evaluate_model

    model = resources_dir / "models" / f"{stem}.onnx"
    if not model.is_file():
        pytest.skip(f"{model} is not there")
    card = load_card_for(model).metrics
    report = evaluate_model(model, dagm_class1, split="test", out_dir=tmp_path, examples=0)
    assert card["split"] == "test"
    for key in ("tp", "fp", "tn", "fn"):
        assert report["operating_point"][key] == card["operating_point"][key], key
    assert report["pixel"]["dice"] == pytest.approx(card["dice"], abs=2e-3)
    assert report["pixel"]["dice_unet_industrial"] == pytest.approx(
        card["dice_unet_industrial"], abs=2e-3
    )
