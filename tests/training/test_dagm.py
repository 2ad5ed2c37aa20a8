"""Re-measure the committed DAGM Class1 model on the test split recorded with it.

Reads the real images from ../shared/data (skips with the reason when they are absent) and
checks the targets of issue 3 at the card's operating point.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.training, pytest.mark.dagm]


# The 16-filter model at half scale and the 8-filter one at quarter scale the recipe runs (FP32
# and the INT8 variant): each must meet the targets on the held-out split.
MODELS = ("dagm-class1", "dagm-class1-fast", "dagm-class1-fast-int8")


@pytest.mark.parametrize("stem", MODELS)
def test_dagm_class1_model_meets_its_targets(
    stem: str, dagm_class1: Path, resources_dir: Path, tmp_path: Path
) -> None:
    from training.evaluate import evaluate_model

    model = resources_dir / "models" / f"{stem}.onnx"
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
