"""A small legend of defect classes: a colour swatch and the class name, one row per class.

Shown beside the live image and the label painter only when the model knows several classes;
for a one-class model it stays hidden, so those screens look as they always did.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

__all__ = ["ClassCard", "ClassLegend", "card_classes"]


class ClassCard(Protocol):
    """What the GUI reads of a model card (engines.card.ModelCard; the GUI imports no engines)."""

    @property
    def multiclass(self) -> bool: ...

    @property
    def class_names(self) -> tuple[str, ...]: ...

    def color_of(self, index: int) -> str: ...


def card_classes(card: ClassCard | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(names, colours)`` of a multi-class model; ``((), ())`` for one class or no card."""
    if card is None or not card.multiclass:
        return (), ()
    names = tuple(card.class_names)
    return names, tuple(card.color_of(i) for i in range(len(names)))


class ClassLegend(QWidget):
    """Rows of ``[swatch] name``; ``set_classes(())`` hides it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows = QVBoxLayout(self)
        self._rows.setContentsMargins(4, 4, 4, 4)
        self._rows.setSpacing(2)
        self.names: tuple[str, ...] = ()
        self.colours: tuple[str, ...] = ()
        self._texts: list[QLabel] = []
        self.setToolTip("Defect classes of the model: the overlay colour of each class")
        self.setVisible(False)

    def set_classes(self, names: Sequence[str], colours: Sequence[str]) -> None:
        """One row per class (``colours[k]`` is ``#rrggbb`` of ``names[k]``); empty hides it."""
        names, colours = tuple(names), tuple(colours)
        if (names, colours) == (self.names, self.colours):
            return
        self.names, self.colours = names, colours
        while self._rows.count():
            item = self._rows.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        self._texts = []
        for name, colour in zip(names, colours, strict=True):
            row = QWidget(self)
            lay = QHBoxLayout(row)
            lay.setContentsMargins(0, 0, 0, 0)
            swatch = QLabel(row)
            swatch.setFixedSize(14, 14)
            swatch.setStyleSheet(f"background:{colour}; border:1px solid #202020;")
            text = QLabel(name, row)
            self._texts.append(text)
            lay.addWidget(swatch)
            lay.addWidget(text, 1)
            self._rows.addWidget(row)
        self._rows.addStretch(1)
        self.setVisible(bool(names))

    def texts(self) -> list[str]:
        """The class names as shown (for tests and screenshots)."""
        return [label.text() for label in self._texts]
