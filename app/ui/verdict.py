"""The Run screen's big banner (PASS / NG / ERROR / STOPPED / FAULT), counters and alarm strip.

What the banner says is decided by :class:`app.station.view_state.LineBanner` (Qt-free); this
module only formats it, in sizes an operator reads from two metres (≥ 24 pt).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from app.station.stats import STAGES, SessionStats
from app.station.view_state import Banner

BANNER_STYLE = {
    "PASS": "background:#2e7d32; color:white;",
    "NG": "background:#c62828; color:white;",
    "ERROR": "background:#ef6c00; color:black;",
    "FAULT": "background:#6a1b9a; color:white;",
    "STOPPED": "background:#424242; color:#eeeeee;",
    "WAITING": "background:#37474f; color:#eeeeee;",
}
COUNTER_PT = 24  # readable from 2 m on a 1080p panel
# (key, title, colour) of the big counters, in reading order, two to a row: three would not fit
# "87.0 %" at 24 pt in the Run column of a 1280-wide window
COUNTERS = (
    ("passed", "PASS", "#66bb6a"),
    ("ng", "NG", "#ef5350"),
    ("errors", "ERROR", "#ffa726"),
    ("dropped", "Dropped", None),
    ("yield", "Yield", None),
    ("fps", "Rate", None),
)
COUNTER_COLUMNS = 2


def _sized(label: QLabel, points: int, *, bold: bool = True) -> QLabel:
    font = label.font()
    font.setPointSize(points)
    font.setBold(bold)
    label.setFont(font)
    return label


class VerdictPanel(QWidget):
    """Shows a :class:`Banner` and a ``SessionStats``; nothing here is computed, only formatted."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.verdict = _sized(QLabel("—", self), 40)
        self.verdict.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.verdict.setMinimumHeight(84)
        self.verdict.setWordWrap(True)
        self.verdict.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.reasons = _sized(QLabel("", self), 13, bold=False)
        self.reasons.setWordWrap(True)
        self.reasons.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.alarm = QLabel("", self)
        self.alarm.setStyleSheet(
            "background:#ff6f00; color:black; font-weight:bold; padding:6px; border-radius:4px;"
        )
        self.alarm.setWordWrap(True)
        self.alarm.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.alarm.setVisible(False)
        self.banner: Banner | None = None

        self._values: dict[str, QLabel] = {}
        grid = QGridLayout()
        grid.setSpacing(6)
        for i, (key, title, colour) in enumerate(COUNTERS):
            # each counter in a box of its own, so "84.6 %" and "4.4 fps" never read as one
            box = QFrame(self)
            box.setObjectName("counter")
            box.setStyleSheet("QFrame#counter { background:#2b2b2b; border-radius:6px; }")
            name = QLabel(title, box)
            name.setStyleSheet("color:#bdbdbd;")
            value = _sized(QLabel("0", box), COUNTER_PT)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setStyleSheet(f"color:{colour or '#ffffff'};")
            value.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            cell = QVBoxLayout(box)
            cell.setContentsMargins(8, 2, 8, 4)
            cell.setSpacing(0)
            cell.addWidget(name)
            cell.addWidget(value)
            self._values[key] = value
            grid.addWidget(box, *divmod(i, COUNTER_COLUMNS))
        self.detail = QLabel("", self)  # judged / acquired / store / latency: for the engineer
        self.detail.setWordWrap(True)
        self.detail.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        for key in ("judged", "latency", "store"):  # kept addressable for tests and tooltips
            self._values[key] = QLabel("", self)
            self._values[key].hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.alarm)
        layout.addWidget(self.verdict)
        layout.addWidget(self.reasons)
        layout.addLayout(grid)
        layout.addWidget(self.detail)
        self._scale = 1.0
        self.show_banner(Banner("STOPPED", "STOPPED — NOT INSPECTING"))

    def set_scale(self, scale: float) -> None:
        """Grow the banner and counters with the Run column (never below 24 pt counters)."""
        scale = max(1.0, min(scale, 1.8))
        if abs(scale - self._scale) < 0.05:
            return
        self._scale = scale
        for key, _title, _colour in COUNTERS:
            _sized(self._values[key], round(COUNTER_PT * scale))
        self._size_banner()

    def _size_banner(self) -> None:
        # a long title (STOPPED — NOT INSPECTING) gets a smaller font so it fits the column
        base = 40 if len(self.verdict.text()) <= 12 else 22
        _sized(self.verdict, round(base * self._scale))

    def show_banner(self, banner: Banner) -> None:
        if banner == self.banner:
            return
        self.banner = banner
        title = banner.title
        if banner.held:
            title = f"{title} (held)"
        self.verdict.setText(title)
        self._size_banner()
        self.verdict.setStyleSheet(BANNER_STYLE[banner.kind] + "border-radius:8px;")
        prefix = f"frame {banner.frame_id}: " if banner.frame_id is not None else ""
        self.reasons.setText(prefix + "; ".join(banner.reasons) if banner.reasons else "")

    def show_stats(self, s: SessionStats) -> None:
        v = self._values
        errors = int(getattr(s, "errors", 0))
        acquired = getattr(s, "acquired", None)
        v["passed"].setText(str(s.passed))
        v["ng"].setText(str(s.ng))
        v["errors"].setText(str(errors))
        # PASS over every result: frames answered ERROR count against the yield, not around it
        v["yield"].setText(f"{s.yield_pct:.1f} %" if s.judged + s.errors else "—")
        v["fps"].setText(f"{s.fps:.1f} fps")
        v["dropped"].setText(str(s.dropped))
        latency = dict(s.latency_ms)
        ordered = [k for k in STAGES if k in latency] + sorted(set(latency) - set(STAGES))
        text = "  ".join(f"{k} {latency[k]:.1f}" for k in ordered)
        v["judged"].setText(str(s.judged))
        v["latency"].setText(f"{text} ms" if text else "—")
        store = [f"store failures {s.store_failures}"]
        for key in ("stored", "journaled", "lost"):
            if hasattr(s, key):
                store.append(f"{key} {getattr(s, key)}")
        v["store"].setText(" · ".join(store))
        counted = f"judged {s.judged}" + (f" of {acquired} acquired" if acquired else "")
        self.detail.setText(
            f"{counted} · skipped {s.skipped} · {v['store'].text()}\nlatency {v['latency'].text()}"
        )
        self.show_alarm(s.alarm)

    def show_alarm(self, message: str | None) -> None:
        self.alarm.setText(f"⚠ {message}" if message else "")
        self.alarm.setVisible(bool(message))
