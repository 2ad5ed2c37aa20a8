"""Defect classes on screen: overlay colours and legend, class picker and class-index labels,
Pareto by class and the history class filter, on the two-class ONNX model of the station test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from app.station.inspection import FrameResult, Rules
from app.station.recipe import Recipe, SourceSettings
from app.station.session import InspectionSession
from app.station.settings import Settings
from engines.card import ModelCard, load_card_for
from tests.station.test_classes_end_to_end import two_class_model

pytestmark = pytest.mark.gui

RED, BLUE = (255, 0, 0), (0, 170, 255)  # the card's crack and stain colours


def _two_blob_frame(folder: Path) -> Path:
    """One frame with a crack (grey 200) on the left and a stain (grey 250) on the right."""
    folder.mkdir(parents=True, exist_ok=True)
    img = np.full((48, 64), 20, np.uint8)
    img[12:36, 6:26] = 200
    img[12:36, 38:58] = 250
    assert cv2.imwrite(str(folder / "both.png"), img)
    return folder


@pytest.fixture
def class_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return two_class_model(tmp_path_factory.mktemp("classes") / "two.onnx")


@pytest.fixture
def class_session(
    tmp_path: Path, class_model: Path, recipe: Recipe, settings: Settings
) -> Iterator[InspectionSession]:
    frames = _two_blob_frame(tmp_path / "class_frames")
    r = replace(
        recipe, model=class_model, rules=Rules(threshold=0.5, min_area_px=20, max_count=5),
        source=SourceSettings(spec=f"folder:{frames}"),
    )  # fmt: skip
    s = InspectionSession(r, settings=settings)
    yield s
    s.close()


def _judged(session: InspectionSession) -> FrameResult:
    result = session.step()
    assert result is not None and result.prob is not None
    assert "class_prob" in result.extra
    return result


def _pixel(panel: Any, x: float, y: float) -> tuple[int, int, int]:
    """The colour on screen at image point (x, y) of the live panel's picture."""
    from PySide6.QtCore import QPointF

    shot = panel.graphics.grab().toImage()
    scene = panel.view.mapViewToScene(QPointF(x, y))
    at = panel.graphics.mapFromScene(scene)
    c = shot.pixelColor(at.x(), at.y())
    return c.red(), c.green(), c.blue()


def _near(got: tuple[int, int, int], want: tuple[int, int, int], tol: int = 12) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(got, want, strict=True))


def test_overlay_colours_each_class_and_the_legend_names_them(
    qtbot: Any, class_session: InspectionSession
) -> None:
    from app.ui.live_panel import LivePanel

    panel = LivePanel()
    qtbot.addWidget(panel)
    panel.resize(640, 520)
    panel.show()
    panel.set_card(class_session.model_card)
    panel.opacity.setValue(100)
    result = _judged(class_session)
    panel.show_result(result)
    qtbot.wait(50)
    assert panel.legend.isVisible()
    assert panel.legend.texts() == ["crack", "stain"]
    crack, stain = _pixel(panel, 16, 24), _pixel(panel, 48, 24)
    assert _near(crack, RED), crack
    assert _near(stain, BLUE), stain
    labels = sorted(label.toPlainText() for label in panel._labels if label.isVisible())
    assert labels[0].startswith("crack 1.00 · ") and labels[1].startswith("stain 1.00 · ")


def test_a_one_class_model_looks_as_before(
    qtbot: Any, class_session: InspectionSession
) -> None:
    from app.ui.live_panel import LivePanel

    panel = LivePanel()
    qtbot.addWidget(panel)
    panel.resize(640, 520)
    panel.show()
    one = replace(class_session.model_card, class_output_name="", class_names=("defect",),
                  class_colors=())  # fmt: skip
    panel.set_card(one)
    panel.opacity.setValue(100)
    result = _judged(class_session)
    panel.show_result(result)
    qtbot.wait(50)
    assert not panel.legend.isVisible() and panel.colour.isVisible()
    red = (255, 40, 40)  # the one mask colour, on both blobs
    assert _near(_pixel(panel, 16, 24), red) and _near(_pixel(panel, 48, 24), red)
