"""The last NG frames as thumbnails; clicking one opens that frame in the live view."""

from __future__ import annotations

from collections import deque
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import QListView, QListWidget, QListWidgetItem, QVBoxLayout, QWidget
from superqt.utils import qthrottled

from app.station.inspection import FrameResult

THUMB_HEIGHT = 84


def thumbnail(image: NDArray, height: int = THUMB_HEIGHT) -> QPixmap:
    """A small 8-bit copy of a frame (grey or BGR) as a pixmap."""
    h, w = image.shape[:2]
    width = max(1, round(w * height / h))
    # NDArray[Any]: OpenCV's stubs type every result as "integer or floating".
    small: NDArray[Any] = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    if small.dtype == np.uint16:
        small = (small >> 8).astype(np.uint8)  # display only: keep the high byte
    small = np.ascontiguousarray(small)
    fmt = QImage.Format.Format_BGR888 if small.ndim == 3 else QImage.Format.Format_Grayscale8
    qimage = QImage(small.data, width, height, small.strides[0], fmt)
    return QPixmap.fromImage(qimage.copy())  # copy: the numpy buffer dies with this function


class Filmstrip(QWidget):
    """Keeps the newest ``size`` NG results; thumbnails are made at most 4 times a second."""

    frame_clicked = Signal(object)  # FrameResult

    def __init__(self, size: int = 12, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._results: deque[FrameResult] = deque(maxlen=size)
        self._shown: list[FrameResult] = []
        self.list = QListWidget(self)
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setFlow(QListView.Flow.LeftToRight)
        self.list.setWrapping(False)
        self.list.setMovement(QListView.Movement.Static)
        self.list.setIconSize(QSize(THUMB_HEIGHT * 4 // 3, THUMB_HEIGHT))
        self.list.setFixedHeight(THUMB_HEIGHT + 42)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.list.setToolTip("Last NG frames; click one to inspect it")
        self.list.itemClicked.connect(self._on_clicked)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list)
        self._refresh_throttled = qthrottled(self._refresh, timeout=250, parent=self)

    def add_result(self, result: FrameResult) -> None:
        """Called for every result; only NG ones are kept."""
        if result.inspection.verdict == "NG" and result.frame.image.size:
            self._results.append(result)
            self._refresh_throttled()

    def results(self) -> list[FrameResult]:
        """The NG results shown, newest first."""
        return list(self._shown)

    def _refresh(self) -> None:
        newest_first = list(reversed(self._results))
        if [r.frame.frame_id for r in newest_first] == [r.frame.frame_id for r in self._shown]:
            return
        known = {id(r): self.list.item(i) for i, r in enumerate(self._shown)}
        icons = {key: item.icon() for key, item in known.items()}
        self.list.clear()
        for result in newest_first:
            # reuse thumbnails already made: only the new NG frames are resized
            icon = icons.get(id(result)) or QIcon(thumbnail(result.frame.image))
            insp = result.inspection
            item = QListWidgetItem(icon, f"#{insp.frame_id} · {len(insp.defects)} def.")
            item.setToolTip("\n".join(insp.reasons) or insp.verdict)
            self.list.addItem(item)
        self._shown = newest_first

    def _on_clicked(self, item: QListWidgetItem) -> None:
        row = self.list.row(item)
        if 0 <= row < len(self._shown):
            self.frame_clicked.emit(self._shown[row])
