"""The new model beside the running one: metrics table and PR curves from two evaluation reports.

Both reports come from ``python -m training evaluate`` on the same held-out split, so every row
compares like with like. Shown by the training panel once both evaluations have finished.
"""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtWidgets import QHBoxLayout, QTableWidget, QTableWidgetItem, QWidget


class ComparisonView(QWidget):
    """Table ``metric | current model | new model`` and both image-level PR curves."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["metric", "current model", "new model"])
        self.table.verticalHeader().setVisible(False)
        self.pr_plot = pg.PlotWidget(title="Precision / recall (image level, t = 0.1 … 0.9)")
        self.pr_plot.addLegend()
        self.pr_plot.setLabel("bottom", "recall")
        self.pr_plot.setLabel("left", "precision")
        self.pr_plot.setRange(xRange=(0, 1), yRange=(0, 1.05))
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.pr_plot, 1)
        self.curves: dict[str, pg.PlotDataItem] = {}

    def clear(self) -> None:
        self.table.setRowCount(0)
        for item in self.curves.values():
            self.pr_plot.removeItem(item)
        self.curves.clear()

    def show_reports(self, current: dict[str, Any], new: dict[str, Any], threshold: float) -> None:
        self.clear()
        rows = comparison_rows(current, new, threshold)
        self.table.setRowCount(len(rows))
        for r, values in enumerate(rows):
            for c, value in enumerate(values):
                self.table.setItem(r, c, QTableWidgetItem(value))
        self.table.resizeColumnsToContents()
        for which, report, colour in (("current", current, "#888888"), ("new", new, "#d62728")):
            recall, precision = pr_points(report)
            self.curves[which] = self.pr_plot.plot(
                recall,
                precision,
                name=f"{which} model",
                pen=pg.mkPen(colour, width=2),
                symbol="o",
                symbolSize=6,
                symbolBrush=colour,
            )

    def cell(self, row: int, column: int) -> str:
        item = self.table.item(row, column)
        return "" if item is None else item.text()


def _nearest(rows: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    return min(rows, key=lambda r: abs(float(r["threshold"]) - threshold)) if rows else {}


def comparison_rows(
    current: dict[str, Any], new: dict[str, Any], threshold: float
) -> list[tuple[str, str, str]]:
    """``(metric, current, new)`` rows from two evaluation reports, as text."""

    def pick(report: dict[str, Any], key: str) -> Any:
        pixel = report.get("pixel") or {}
        op = report.get("operating_point") or {}
        at = _nearest(report.get("image_level") or [], threshold)
        return {
            "images": (report.get("split") or {}).get("images"),
            "dice": pixel.get("dice"),
            "iou": pixel.get("iou"),
            "ap": report.get("ap"),
            "precision": at.get("precision"),
            "recall": at.get("recall"),
            "fp": at.get("fp"),
            "fn": at.get("fn"),
            "op": f"t={_fmt(report.get('threshold'))}, min {report.get('min_area_px')} px",
            "op_precision": op.get("precision"),
            "op_recall": op.get("recall"),
            "op_fp": op.get("fp"),
        }[key]

    labels_ = (
        ("images", "test images"),
        ("dice", "Dice (defective images)"),
        ("iou", "IoU"),
        ("ap", "average precision"),
        ("precision", f"precision @ station threshold {threshold:.2f}"),
        ("recall", f"recall @ {threshold:.2f}"),
        ("fp", f"false alarms (FP) @ {threshold:.2f}"),
        ("fn", f"missed (FN) @ {threshold:.2f}"),
        ("op", "model's own operating point"),
        ("op_precision", "precision @ own point"),
        ("op_recall", "recall @ own point"),
        ("op_fp", "false alarms @ own point"),
    )
    return [(label, _fmt(pick(current, k)), _fmt(pick(new, k))) for k, label in labels_]


def pr_points(report: dict[str, Any]) -> tuple[list[float], list[float]]:
    """(recall, precision) of the report's threshold table (0.1 … 0.9), by recall."""
    rows = sorted(report.get("image_level") or [], key=lambda r: float(r["recall"]))
    return [float(r["recall"]) for r in rows], [float(r["precision"]) for r in rows]


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
