"""Every interactive control of the full window says what it does: a tooltip or a visible label.

Walks the widget tree of the unlocked MainWindow (every workspace built) and lists each button,
slider, spin box, combo box, line edit, check box and tool button that has neither a tooltip nor a
text of its own nor a QLabel buddy.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.gui


def _offenders(window: Any) -> list[str]:
    from PySide6.QtWidgets import (
        QAbstractButton,
        QAbstractSlider,
        QAbstractSpinBox,
        QComboBox,
        QLabel,
        QLineEdit,
        QScrollBar,
        QTabBar,
        QWidget,
    )

    interactive = (QAbstractButton, QAbstractSlider, QAbstractSpinBox, QComboBox, QLineEdit)
    buddies = {id(label.buddy()) for label in window.findChildren(QLabel) if label.buddy()}
    bad: list[str] = []
    for widget in window.findChildren(QWidget):
        if not isinstance(widget, interactive) or isinstance(widget, QScrollBar):
            continue  # scroll bars belong to their scroll areas
        if isinstance(widget, QLineEdit) and isinstance(
            widget.parent(), (QComboBox, QAbstractSpinBox)
        ):
            continue  # the editor inside a combo / spin box: the outer control is checked
        if widget.toolTip().strip() or id(widget) in buddies:
            continue
        if isinstance(widget, QAbstractButton) and widget.text().replace("&", "").strip():
            continue  # a visible label of its own ("Save", "Mask")
        if widget.objectName().startswith("qt_") or isinstance(widget.parent(), QTabBar):
            continue  # Qt's own sub-controls (a tab bar's scroll arrows, ...)
        owner = widget.parent()
        while owner is not None and type(owner).__module__.startswith("PySide6"):
            owner = owner.parent()
        where = type(owner).__name__ if owner is not None else "?"
        bad.append(f"{where}: {type(widget).__name__} {widget.objectName() or ''}".strip())
    return bad


def test_every_control_has_a_tooltip_or_label(make_main_window: Any) -> None:
    window = make_main_window(unlocked=True)
    bad = _offenders(window)
    assert not bad, f"{len(bad)} controls without tooltip or label:\n" + "\n".join(sorted(bad))


def test_the_check_finds_a_bare_control(make_main_window: Any) -> None:
    from PySide6.QtWidgets import QSpinBox

    window = make_main_window()
    bare = QSpinBox(window.run_screen)
    bare.setObjectName("bare_spin")
    assert any("bare_spin" in line for line in _offenders(window))
