"""Validation panel: threshold table and PR curve computed off the GUI thread; the operating
point follows the rules sliders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.ui.conftest import write_frames

pytestmark = pytest.mark.gui


@pytest.fixture
def validation_dir(tmp_path: Path) -> Path:
    # 16 images, half with a blob (bright 0.75 -> p 0.95, or faint 0.6 -> p 0.77), masks beside
    return write_frames(tmp_path / "validation", 16, seed=3, masks=True)


def _compute(qtbot: Any, p: Any, folder: Path) -> Any:
    panel = p["validation"]
    with qtbot.waitSignal(panel.computed, timeout=60_000) as blocker:
        panel.compute(folder)
        assert panel.is_computing()  # runs on its thread, the GUI goes on
    qtbot.waitUntil(lambda: not panel.is_computing(), timeout=5_000)
    return blocker.args[0]


def test_table_and_operating_point_follow_the_sliders(
    qtbot: Any, make_panels: Any, validation_dir: Path
) -> None:
    p = make_panels()
    panel, rules = p["validation"], p["rules"]
    vs = _compute(qtbot, p, validation_dir)
    assert len(vs) == 16 and vs.n_defective == 8

    model = panel.model
    assert model.rowCount() == 9
    assert model.columnCount() == 8
    rows = model.rows()
    assert [r.threshold for r in rows] == pytest.approx([0.1 * i for i in range(1, 10)])
    assert all(r.tp + r.tn + r.fp + r.fn == 16 for r in rows)
    assert model.data(model.index(4, 0)) == "0.50"
    # at 0.5 every blob is found; at 0.9 the faint blobs (p ~0.77) are missed
    assert rows[4].recall == pytest.approx(1.0)
    assert rows[8].recall == pytest.approx(0.5)

    x, y = panel.point.getData()
    assert (x[0], y[0]) == pytest.approx((1.0, 1.0))
    curve_x, _ = panel.curve.getData()
    assert len(curve_x) >= 2

    rules.threshold.spin.setValue(0.9)
    rules.flush()
    panel.flush()
    x, y = panel.point.getData()
    assert x[0] == pytest.approx(0.5)  # recall dropped: the operating point moved
    assert panel.model._marked == 8
    assert "threshold 0.90" in panel.summary.text()

    rules.threshold.spin.setValue(0.5)
    rules.min_area.spin.setValue(100_000)  # no blob is that large
    rules.flush()
    panel.flush()
    x, _ = panel.point.getData()
    assert x[0] == pytest.approx(0.0)
    assert all(r.tp == 0 for r in panel.model.rows())


def test_bad_folder_and_cancel(qtbot: Any, make_panels: Any, tmp_path: Path) -> None:
    panel = make_panels()["validation"]
    errors: list[str] = []
    panel.error.connect(errors.append)
    panel.compute(tmp_path / "missing")
    assert errors and "does not exist" in errors[0]
    assert not panel.is_computing()

    folder = write_frames(tmp_path / "big", 40, masks=True)
    panel.compute(folder)
    assert panel.cancel_button.isEnabled() and not panel.compute_button.isEnabled()
    panel.cancel()  # before the model is even loaded: checked before the first chunk
    qtbot.waitUntil(lambda: not panel.is_computing(), timeout=60_000)
    assert panel.validation is None
    assert "cancelled" in panel.summary.text()
    assert panel.compute_button.isEnabled() and not panel.progress.isVisible()
