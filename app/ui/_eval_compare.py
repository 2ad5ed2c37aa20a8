"""The new model beside the running one: metrics table, PR curves and the deploy guard's verdict.

Shows a ``Comparison`` (app/station/_deploy_guard.py) built by the training workflow from two
evaluation reports on the same held-out split, so every row compares like with like.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.station.training_workflow import Comparison

WORSE_STYLE = "color: white; background: #c62828; padding: 4px; font-weight: bold;"
OK_STYLE = "color: #2e7d32; padding: 4px;"


class ComparisonView(QWidget):
    """Table ``metric | current model | new model``, both image-level PR curves, the verdict."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.verdict = QLabel("", self)
        self.verdict.setWordWrap(True)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["metric", "current model", "new model"])
        self.table.verticalHeader().setVisible(False)
        self.table.setToolTip("Both models measured on the new run's held-out images")
        self.pr_plot = pg.PlotWidget(title="Precision / recall (image level, t = 0.1 … 0.9)")
        self.pr_plot.setToolTip("Image-level precision against recall per threshold")
        self.pr_plot.addLegend()
        self.pr_plot.setLabel("bottom", "recall")
        self.pr_plot.setLabel("left", "precision")
        self.pr_plot.setRange(xRange=(0, 1), yRange=(0, 1.05))
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.table, 1)
        row.addWidget(self.pr_plot, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.verdict)
        lay.addLayout(row, 1)
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.verdict.hide()

    def clear(self) -> None:
        self.table.setRowCount(0)
        for item in self.curves.values():
            self.pr_plot.removeItem(item)
        self.curves.clear()
        self.verdict.hide()

    def show_comparison(self, comparison: Comparison) -> None:
        self.clear()
        self.table.setRowCount(len(comparison.rows))
        for r, values in enumerate(comparison.rows):
            for c, value in enumerate(values):
                self.table.setItem(r, c, QTableWidgetItem(value))
        self.table.resizeColumnsToContents()
        for which, colour in (("current", "#888888"), ("new", "#d62728")):
            recall, precision = comparison.pr[which]
            self.curves[which] = self.pr_plot.plot(
                recall,
                precision,
                name=f"{which} model",
                pen=pg.mkPen(colour, width=2),
                symbol="o",
                symbolSize=6,
                symbolBrush=colour,
            )
        if comparison.worse:
            self.verdict.setText(
                "The new model is WORSE than the running one at the station's threshold "
                f"{comparison.threshold:.2f}: " + "; ".join(comparison.reasons)
            )
            self.verdict.setStyleSheet(WORSE_STYLE)
        else:
            self.verdict.setText(
                f"The new model is at least as good at the station's threshold "
                f"{comparison.threshold:.2f} (recall and false alarms)."
            )
            self.verdict.setStyleSheet(OK_STYLE)
        self.verdict.show()

    def cell(self, row: int, column: int) -> str:
        item = self.table.item(row, column)
        return "" if item is None else item.text()
