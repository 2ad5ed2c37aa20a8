"""At 1280 x 720 no workspace scrolls sideways; at 1920 x 1080 the image gets the room."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.gui


def _sideways(window: Any) -> list[str]:
    from PySide6.QtWidgets import QAbstractScrollArea, QApplication

    QApplication.processEvents()
    bad = []
    for area in window.findChildren(QAbstractScrollArea):
        if area is window.filmstrip.list:  # the NG filmstrip is a horizontal strip on purpose
            continue
        if area.isVisible() and area.horizontalScrollBar().isVisible():
            owner = area.parent()
            bad.append(f"{type(area).__name__} in {type(owner).__name__}")
    return bad


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)])
def test_no_workspace_scrolls_sideways(qtbot: Any, make_main_window: Any, size: Any) -> None:
    window = make_main_window(unlocked=True)
    window.resize(*size)
    qtbot.waitUntil(lambda: window.width() == size[0], timeout=2_000)
    failures = {}
    for key in window.workspaces.keys():
        assert window.show_workspace(key)
        qtbot.wait(50)
        bad = _sideways(window)
        if bad:
            failures[key] = bad
    assert not failures, f"horizontal scroll bars at {size}: {failures}"


def test_run_screen_gives_the_image_the_room(qtbot: Any, make_main_window: Any) -> None:
    window = make_main_window(unlocked=True)
    window.resize(1920, 1080)
    qtbot.waitUntil(lambda: window.width() == 1920, timeout=2_000)
    window.show_workspace("run")
    qtbot.wait(50)
    image, side = window.split.sizes()
    assert image > 2 * side  # the operator's picture is the largest thing on the Run screen
    window.show_workspace("rules")
    qtbot.wait(50)
    image, side = window.split.sizes()
    assert side > image  # a tool gets the main area beside the image
    assert window.live_panel.isVisible()
