"""Statistics: yield over time and a defect Pareto (by zone or size class), from the store.

With a multi-class model (``set_card``) the Pareto can also be grouped by defect class.

Both charts are pyqtgraph ``BarGraphItem``s filled by the store's aggregate queries
(``yield_series``, ``defect_pareto``), which return a handful of rows, so they run on the GUI
thread. They are redrawn every few seconds while the panel is visible, and on demand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.station.store import ResultsStore
from app.ui.class_legend import ClassCard

BUCKETS: tuple[tuple[str, float], ...] = (
    ("1 min", 60.0),
    ("10 min", 600.0),
    ("1 hour", 3600.0),
    ("1 day", 86400.0),
)
PERIODS: tuple[tuple[str, float | None], ...] = (
    ("last hour", 3600.0),
    ("last 24 h", 86400.0),
    ("last 7 days", 7 * 86400.0),
    ("all", None),
)
REFRESH_MS = 5000


class StatsPanel(QWidget):
    """Yield % per time bucket and defect counts per zone / size class, largest first."""

    error = Signal(str)

    def __init__(self, store: Callable[[], ResultsStore], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._store = store  # asked each time: the session may open another database
        self.bucket = QComboBox()
        self.bucket.setToolTip("Width of one yield bar")
        self.bucket.addItems([label for label, _ in BUCKETS])
        self.bucket.setCurrentText("10 min")
        self.period = QComboBox()
        self.period.addItems([label for label, _ in PERIODS])
        self.period.setCurrentText("last 24 h")
        self.period.setToolTip("How far back the charts look")
        self.pareto_by = QComboBox()
        self.pareto_by.addItems(["zone", "size"])
        self.pareto_by.setToolTip("Group defects by the zone they lie in, or by size class")
        refresh = QPushButton("Refresh")
        refresh.setToolTip("Query the results database again now")
        refresh.clicked.connect(self.refresh)
        for combo in (self.bucket, self.period, self.pareto_by):
            combo.currentTextChanged.connect(self.refresh)
        self._pareto_tip = self.pareto_by.toolTip()
        bar = QHBoxLayout()
        for label, w in (
            ("Bucket", self.bucket),
            ("Period", self.period),
            ("Pareto by", self.pareto_by),
        ):
            bar.addWidget(QLabel(label))
            bar.addWidget(w)
        bar.addStretch(1)
        bar.addWidget(refresh)

        self.yield_plot = pg.PlotWidget(
            title="Yield per time bucket", axisItems={"bottom": pg.DateAxisItem()}
        )
        self.yield_plot.setLabel("left", "yield", units="%")
        self.yield_plot.setYRange(0, 100)
        self.yield_bars = pg.BarGraphItem(x=[], height=[], width=1.0, brush="#2ca02c")
        self.yield_plot.addItem(self.yield_bars)

        self.yield_plot.setToolTip("Share of PASS per time bucket (drag / wheel to pan and zoom)")
        self.pareto_plot = pg.PlotWidget(title="Defect Pareto")
        self.pareto_plot.setToolTip(
            "Defects per zone, size class or defect class, largest first; % cumulative"
        )
        self.pareto_plot.setLabel("left", "defects")
        self.pareto_bars = pg.BarGraphItem(x=[], height=[], width=0.7, brush="#d62728")
        self.pareto_plot.addItem(self.pareto_bars)
        # The cumulative share on the same axis scale as the counts would dwarf small bars; it
        # is written under each bar's label instead.

        self.status = QLabel("")
        plots = QHBoxLayout()
        plots.addWidget(self.yield_plot, 3)
        plots.addWidget(self.pareto_plot, 2)
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addLayout(plots, 1)
        lay.addWidget(self.status)

        self.series: list[tuple[float, int, int]] = []
        self.pareto: list[tuple[str, int]] = []
        self._timer = QTimer(self, interval=REFRESH_MS)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    def set_card(self, card: ClassCard | None) -> None:
        """Offer "class" in *Pareto by* while the running model knows several defect classes."""
        has = self.pareto_by.findText("class") >= 0
        if card is not None and card.multiclass:
            if not has:
                self.pareto_by.addItem("class")
            self.pareto_by.setToolTip(
                "Group defects by the zone they lie in, by size class or by defect class"
            )
        elif has:
            # back to the default grouping; the combo's signal refreshes the chart
            if self.pareto_by.currentText() == "class":
                self.pareto_by.setCurrentText("zone")
            self.pareto_by.removeItem(self.pareto_by.findText("class"))
            self.pareto_by.setToolTip(self._pareto_tip)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802
        super().showEvent(event)
        self.refresh()

    def _tick(self) -> None:
        if self.isVisible():
            self.refresh()

    def _since(self) -> float | None:
        seconds = dict(PERIODS)[self.period.currentText()]
        return None if seconds is None else time.time() - seconds

    def refresh(self) -> None:
        bucket = dict(BUCKETS)[self.bucket.currentText()]
        since = self._since()
        try:
            store = self._store()
            series = store.yield_series(bucket, since=since)
            pareto = store.defect_pareto(self.pareto_by.currentText(), since=since)  # type: ignore[arg-type]  # the combo lists the Literal's values
        except Exception as exc:  # noqa: BLE001 - a locked / broken DB must not break the GUI
            self.status.setText(f"Statistics unavailable: {exc}")
            return
        self.series, self.pareto = series, pareto
        self._draw_yield(series, bucket)
        self._draw_pareto(pareto)
        judged = sum(n for _, n, _ in series)
        passed = sum(p for _, _, p in series)
        overall = f"{100.0 * passed / judged:.1f} %" if judged else "—"
        self.status.setText(
            f"{judged} inspections, yield {overall}; {sum(n for _, n in pareto)} defects"
        )

    def _draw_yield(self, series: list[tuple[float, int, int]], bucket: float) -> None:
        if not series:
            self.yield_bars.setOpts(x=[], height=[], width=bucket)
            return
        starts = np.array([t for t, _, _ in series], float)
        pct = np.array([100.0 * p / n if n else 0.0 for _, n, p in series])
        self.yield_bars.setOpts(x=starts + bucket / 2, height=pct, width=bucket * 0.9)
        self.yield_plot.setXRange(starts[0], starts[-1] + bucket, padding=0.02)

    def _draw_pareto(self, pareto: list[tuple[str, int]]) -> None:
        counts = np.array([n for _, n in pareto], float)
        x = np.arange(len(pareto), dtype=float)
        self.pareto_bars.setOpts(x=x, height=counts, width=0.7)
        total = counts.sum()
        cumulative = np.cumsum(counts) / total * 100 if total else counts
        ticks: list[tuple[float, Any]] = [
            (float(i), f"{key}\n{c:.0f} %")
            for i, ((key, _), c) in enumerate(zip(pareto, cumulative, strict=True))
        ]
        self.pareto_plot.getAxis("bottom").setTicks([ticks])
        if len(pareto):
            self.pareto_plot.setXRange(-0.6, len(pareto) - 0.4, padding=0)
            self.pareto_plot.setYRange(0, float(counts.max()) * 1.1, padding=0)
