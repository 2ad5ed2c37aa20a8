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


def test_a_one_class_model_looks_as_before(qtbot: Any, class_session: InspectionSession) -> None:
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


def test_a_painted_class_is_saved_class_index_and_discovery_reads_the_names(
    qtbot: Any, tmp_path: Path, class_session: InspectionSession
) -> None:
    from app.station.label_session import LabelSession
    from app.ui.label_panel import LabelPanel
    from training.data.discovery import discover

    dataset = tmp_path / "dataset"
    rules = class_session.rules
    panel = LabelPanel(LabelSession(lambda: dataset, lambda: rules))
    qtbot.addWidget(panel)
    panel.set_card(class_session.model_card)
    result = _judged(class_session)
    panel.edit(result)
    canvas = panel.canvas
    assert canvas.class_names == ("crack", "stain")
    start = canvas.mask()
    assert start[24, 16] == 1 and start[24, 48] == 2  # the model's blobs with their classes
    canvas.set_class(1)  # "stain"
    canvas.set_brush_size(5)
    canvas.paint_stroke([(30.0, 42.0), (34.0, 42.0)])
    assert canvas.mask()[42, 32] == 2
    with qtbot.waitSignal(panel.saved, timeout=10_000) as saved:
        panel.save()
    paths = saved.args[0]
    written = cv2.imread(str(paths.mask), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(written).tolist()) == {0, 1, 2}
    assert written[42, 32] == 2 and written[24, 16] == 1
    assert (dataset / "classes.txt").read_text(encoding="utf-8").split() == ["crack", "stain"]

    found = discover(dataset)
    assert found.classes == ["crack", "stain"]
    assert found.mask_kind == "class_index"
    (sample,) = found.samples
    assert sample.classes == ("crack", "stain")


def test_a_label_of_other_classes_is_refused_not_mixed(tmp_path: Path) -> None:
    from app.station import labels

    image = np.zeros((8, 8), np.uint8)
    mask = np.zeros((8, 8), np.uint8)
    mask[2:4, 2:4] = 2
    labels.save_label(tmp_path, image, mask, name="a", class_names=("crack", "stain"))
    with pytest.raises(ValueError, match="classes.txt lists classes"):
        labels.save_label(tmp_path, image, mask, name="b", class_names=("stain", "crack"))
    with pytest.raises(ValueError, match="not class ids"):
        labels.save_label(tmp_path, image, mask * 3, name="c", class_names=("crack", "stain"))
    assert labels.dataset_summary(tmp_path) == (1, 1, 0)
    with pytest.raises(ValueError, match="one-class label"):  # 255 would read as "crack"
        labels.save_label(tmp_path, image, mask, name="d")
    labels.save_label(tmp_path, image, None, name="e", kind="false_alarm")  # neutral in both

    binary = tmp_path / "binary"
    labels.save_label(binary, image, mask, name="old")  # a one-class label: 0 / 255
    with pytest.raises(ValueError, match="one-class masks"):
        labels.save_label(binary, image, mask, name="new", class_names=("crack", "stain"))
    assert not (binary / "classes.txt").exists()
    assert labels.dataset_summary(tmp_path) == (2, 1, 1)


@pytest.fixture
def stored_session(
    tmp_path: Path, class_model: Path, recipe: Recipe, settings: Settings
) -> Iterator[InspectionSession]:
    """Four judged frames in the store: crack, stain, crack + stain, crack."""
    frames = tmp_path / "mixed"
    frames.mkdir()
    for i, values in enumerate(((200,), (250,), (200, 250), (200,))):
        img = np.full((48, 64), 20, np.uint8)
        for j, v in enumerate(values):
            img[12:36, 6 + 32 * j : 26 + 32 * j] = v
        assert cv2.imwrite(str(frames / f"{i}.png"), img)
    r = replace(
        recipe, model=class_model, rules=Rules(threshold=0.5, min_area_px=20, max_count=5),
        source=SourceSettings(spec=f"folder:{frames}"),
    )  # fmt: skip
    s = InspectionSession(r, settings=settings)
    s.start()
    assert s.wait(30)
    s.stop()
    assert len(s.store.recent()) == 4
    yield s
    s.close()


def test_pareto_by_class_counts_each_class(qtbot: Any, stored_session: InspectionSession) -> None:
    from app.ui.stats_panel import StatsPanel

    panel = StatsPanel(lambda: stored_session.store)
    qtbot.addWidget(panel)
    assert panel.pareto_by.findText("class") < 0  # before the card says there are classes
    panel.set_card(stored_session.model_card)
    panel.pareto_by.setCurrentText("class")
    assert panel.pareto == [("crack", 3), ("stain", 2)]
    one = replace(stored_session.model_card, class_output_name="", class_names=("defect",),
                  class_colors=())  # fmt: skip
    panel.set_card(one)  # a one-class model: grouping by class is gone, the chart follows
    assert panel.pareto_by.findText("class") < 0
    assert panel.pareto_by.currentText() == "zone"
    assert panel.pareto == [("(no zone)", 5)]


def test_history_filters_by_class(qtbot: Any, stored_session: InspectionSession) -> None:
    from app.station.history_query import HistoryQuery
    from app.ui.bridge import SessionBridge
    from app.ui.history_panel import HistoryPanel

    bridge = SessionBridge(stored_session)
    try:
        panel = HistoryPanel(HistoryQuery(lambda: stored_session.store), bridge)
        qtbot.addWidget(panel)
        assert panel.class_filter.isHidden()  # nothing has told it about classes yet
        panel.show()
        panel.set_card(stored_session.model_card)
        assert panel.class_filter.isVisible()
        items = [panel.class_filter.itemText(i) for i in range(panel.class_filter.count())]
        assert items == ["all classes", "crack", "stain"]
        panel.class_filter.setCurrentText("stain")
        shown = [r.frame_id for r in panel.model.rows]
        assert len(shown) == 2
        assert all(any(d.class_name == "stain" for d in r.defects) for r in panel.model.rows)
        panel.class_filter.setCurrentText("crack")
        assert len(panel.model.rows) == 3
        panel.class_filter.setCurrentText("all classes")
        assert len(panel.model.rows) == 4
    finally:
        bridge.detach()


def test_the_window_hands_the_model_classes_to_every_panel(
    make_main_window: Any, tmp_path: Path, class_model: Path
) -> None:
    frames = _two_blob_frame(tmp_path / "window_frames")
    window = make_main_window(
        unlocked=True, model=class_model, source=SourceSettings(spec=f"folder:{frames}")
    )
    assert window.live_panel.legend.texts() == ["crack", "stain"]
    assert window.stats_panel.pareto_by.findText("class") >= 0
    assert window.label_panel.session.class_names == ("crack", "stain")
    assert window.history_panel.class_filter.findText("stain") >= 0
    # a swap to a one-class model (the bridge's "model" signal) takes the classes away again
    window.bridge.model.emit(load_card_for(class_model).with_updates(
        class_output_name="", class_names=("defect",), class_colors=()))  # fmt: skip
    assert not window.live_panel.legend.isVisible()
    assert window.stats_panel.pareto_by.findText("class") < 0
    assert window.label_panel.session.class_names == ()


def test_a_one_class_window_shows_no_class_controls(make_main_window: Any) -> None:
    window = make_main_window(unlocked=True)
    assert not window.live_panel.legend.isVisible()
    assert not window.live_panel.colour.isHidden()
    assert window.stats_panel.pareto_by.findText("class") < 0
    assert window.history_panel.class_filter.isHidden()
    assert window.label_panel.session.class_names == ()
    assert isinstance(window.session.model_card, ModelCard)
