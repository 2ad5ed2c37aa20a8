"""The big PASS / NG indicator with its reasons, the shift counters and the alarm banner."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from app.station.inspection import Inspection
from app.station.stats import STAGES, SessionStats

_STYLE = {
    "PASS": "background:#2e7d32; color:white;",
    "NG": "background:#c62828; color:white;",
    None: "background:#424242; color:#bdbdbd;",
}


class VerdictPanel(QWidget):
    """Shows an ``Inspection`` (verdict + reasons) and a ``SessionStats`` (counters).

    Both come from the main window: the verdict of the frame on screen, the stats as the session
    publishes them. Nothing here is computed, only formatted.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.verdict = QLabel("—", self)
        self.verdict.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.verdict.setMinimumHeight(90)
        font = self.verdict.font()
        font.setPointSize(48)
        font.setBold(True)
        self.verdict.setFont(font)
        self.verdict.setStyleSheet(_STYLE[None] + "border-radius:8px;")
        self.reasons = QLabel("", self)
        self.reasons.setWordWrap(True)
        self.alarm = QLabel("", self)
        self.alarm.setStyleSheet(
            "background:#ff6f00; color:black; font-weight:bold; padding:6px; border-radius:4px;"
        )
        self.alarm.setWordWrap(True)
        self.alarm.setVisible(False)

        self._values: dict[str, QLabel] = {}
        grid = QGridLayout()
        grid.setHorizontalSpacing(12)
        # (key, title, row, column pair, value span): latency gets a row of its own (it is long)
        for key, title, row, pair, span in (
            ("judged", "Judged", 0, 0, 1),
            ("yield", "Yield", 0, 1, 1),
            ("passed", "PASS", 1, 0, 1),
            ("ng", "NG", 1, 1, 1),
            ("fps", "Rate", 2, 0, 1),
            ("dropped", "Dropped / skipped", 2, 1, 1),
            ("store", "Store failures", 3, 0, 1),
            ("latency", "Latency", 4, 0, 3),
        ):
            value = QLabel("0", self)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self._values[key] = value
            grid.addWidget(QLabel(title, self), row, pair * 2)
            grid.addWidget(value, row, pair * 2 + 1, 1, span)
        big = self._values["yield"].font()
        big.setPointSize(big.pointSize() + 4)
        big.setBold(True)
        self._values["yield"].setFont(big)

        layout = QVBoxLayout(self)
        layout.addWidget(self.alarm)
        layout.addWidget(self.verdict)
        layout.addWidget(self.reasons)
        layout.addLayout(grid)

    def show_inspection(self, inspection: Inspection | None) -> None:
        verdict = inspection.verdict if inspection is not None else None
        self.verdict.setText(verdict or "—")
        self.verdict.setStyleSheet(_STYLE.get(verdict, _STYLE[None]) + "border-radius:8px;")
        if inspection is None:
            self.reasons.setText("")
        elif inspection.reasons:
            self.reasons.setText("\n".join(inspection.reasons))
        else:
            self.reasons.setText(f"{len(inspection.defects)} defect(s), within the rules")

    def show_stats(self, s: SessionStats) -> None:
        v = self._values
        v["judged"].setText(str(s.judged))
        v["passed"].setText(str(s.passed))
        v["ng"].setText(str(s.ng))
        v["yield"].setText(f"{s.yield_pct:.1f} %" if s.judged else "—")
        v["fps"].setText(f"{s.fps:.1f} fps")
        latency = dict(s.latency_ms)
        ordered = [k for k in STAGES if k in latency] + sorted(set(latency) - set(STAGES))
        text = "  ".join(f"{k} {latency[k]:.1f}" for k in ordered)
        v["latency"].setText(f"{text} ms" if text else "—")
        v["dropped"].setText(f"{s.dropped} / {s.skipped}")
        v["store"].setText(str(s.store_failures))
        self.show_alarm(s.alarm)

    def show_alarm(self, message: str | None) -> None:
        self.alarm.setText(f"⚠ {message}" if message else "")
        self.alarm.setVisible(bool(message))
