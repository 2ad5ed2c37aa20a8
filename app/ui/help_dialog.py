"""Help → Keyboard: the shortcuts, from the same table the menus use."""

from __future__ import annotations

from html import escape

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget

from app.ui._keys import KEYS

INTRO = (
    "The <b>Run</b> screen is the operator's: the live image, the verdict banner and the "
    "counters. The other workspaces (left rail) are for engineers and technicians; the ones "
    "that change the recipe or the model need the engineer PIN (Engineer → Unlock). A frame "
    "you opened from the filmstrip or the history, or a single step, is shown in "
    "<span style='color:#1565c0'><b>REVIEW</b></span> (blue) — never as the live line."
)


def keyboard_html() -> str:
    rows = "".join(
        f"<tr><td><b>{escape(' / '.join(k.keys))}</b></td><td>{escape(k.what)}</td></tr>"
        for k in KEYS
    )
    return f"<p>{INTRO}</p><table cellpadding='4'>{rows}</table>"


class KeyboardHelp(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard")
        self.text = QLabel(keyboard_html(), self)
        self.text.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
        self.resize(560, 420)
