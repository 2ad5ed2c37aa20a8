"""The contract of app/ui/panels.py: the keys, one error signal each, tooltips everywhere,
no panel reaching into a window or importing engines."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import SignalInstance
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSpinBox,
    QComboBox,
    QGraphicsView,
    QHeaderView,
    QLineEdit,
    QPlainTextEdit,
    QSlider,
    QWidget,
)

from app.ui.panels import PANEL_KEYS

pytestmark = pytest.mark.gui

INTERACTIVE = (
    QAbstractButton, QLineEdit, QComboBox, QAbstractSpinBox, QSlider, QAbstractItemView,
    QGraphicsView, QPlainTextEdit,
)  # fmt: skip
PANEL_FILES = (
    "rules_panel.py", "zone_editor.py", "validation_panel.py", "label_panel.py", "train_panel.py",
    "history_panel.py", "stats_panel.py", "paint_canvas.py", "_eval_compare.py", "panels.py",
)  # fmt: skip
UI = Path(__file__).resolve().parents[2] / "app" / "ui"


def _qt_internal(w: QWidget) -> bool:
    """Parts Qt builds inside a control (a combo's popup list, a table's headers and corner)."""
    ancestors = []
    parent = w.parentWidget()
    while parent is not None and len(ancestors) < 2:
        ancestors.append(parent)
        parent = parent.parentWidget()
    return (
        isinstance(w, QHeaderView)
        or w.objectName() == "qt_tableview_cornerbutton"
        or any(isinstance(a, QAbstractSpinBox | QComboBox) for a in ancestors)
    )


def test_keys_error_signals_and_history_frame_requests(make_panels: Any) -> None:
    panels = make_panels().panels
    assert tuple(panels) == PANEL_KEYS
    for key, panel in panels.items():
        assert isinstance(getattr(panel, "error", None), SignalInstance), key
    assert isinstance(panels["history"].frame_requested, SignalInstance)
    assert isinstance(panels["rules"].rules_changed, SignalInstance)


def test_every_interactive_control_has_a_tooltip(make_panels: Any) -> None:
    missing = [
        f"{key}: {type(w).__name__} {getattr(w, 'text', lambda: '')()!r}"
        for key, panel in make_panels().panels.items()
        for w in panel.findChildren(QWidget)
        if isinstance(w, INTERACTIVE) and not _qt_internal(w) and not w.toolTip()
    ]
    assert missing == []


def test_no_panel_reaches_into_the_window_or_imports_engines() -> None:
    for name in PANEL_FILES:
        source = (UI / name).read_text(encoding="utf-8")
        assert "self.window()" not in source, name
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("engines"), name
                assert node.module != "app.ui.main_window", name
