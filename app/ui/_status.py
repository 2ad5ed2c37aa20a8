"""The strip over the window: recipe · model · source · line state · view, always visible.

Also the words for the view (LIVE / REVIEW / STOPPED), shared by the strip, the header over the
image and the window title, so all three always say the same thing.
"""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QWidget

from app.station.session import InspectionSession
from app.station.view_state import ViewState
from app.ui.live_panel import VIEW_STYLE

LINE_STYLE = {
    "running": "background:#2e7d32; color:white;",
    "stopped": "background:#616161; color:white;",
    "fault": "background:#6a1b9a; color:white;",
}


def view_text(view: ViewState, line: str) -> tuple[str, str]:
    """``(kind, text)``: kind is ``live`` / ``review`` / ``stopped`` (the header's colour)."""
    cur = view.current
    if not view.live:
        what = (
            "frame"
            if cur is None
            else f"frame {cur.inspection.frame_id} · {cur.inspection.verdict}"
        )
        return "review", f"REVIEW — {view.why} {what} — Esc: back to live"
    last = "" if cur is None else f" · last frame {cur.inspection.frame_id}"
    if line == "fault":
        return "stopped", f"FAULT — not inspecting{last}"
    if line != "running":
        return "stopped", f"STOPPED — not inspecting{last}"
    if cur is None:
        return "live", "LIVE — waiting for the first frame"
    return "live", f"LIVE — frame {cur.inspection.frame_id}"


def _label(parent: QWidget, *, bold: bool = False, grow: bool = False) -> QLabel:
    label = QLabel("", parent)
    font = label.font()
    font.setPointSize(max(font.pointSize(), 11))
    font.setBold(bold)
    label.setFont(font)
    if grow:  # a long source path gives way; it never widens the window
        label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    return label


class StatusStrip(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = _label(self, bold=True)
        self.view = _label(self, bold=True)
        self.recipe = _label(self)
        self.model = _label(self)
        self.source = _label(self, grow=True)
        self.mode = _label(self)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 3, 6, 3)
        for w in (self.state, self.view, self.recipe, self.model):
            layout.addWidget(w)
        layout.addWidget(self.source, 1)
        layout.addWidget(self.mode)

    def show_session(self, session: InspectionSession, state: str) -> None:
        self.state.setText(f" {state.upper()} ")
        self.state.setStyleSheet(LINE_STYLE.get(state, LINE_STYLE["stopped"]) + "padding:2px;")
        fault = getattr(session, "fault", None)
        self.state.setToolTip(f"fault: {fault}" if fault else "the line's state")
        recipe = session.recipe
        card = session.model_card
        self.recipe.setText(f"Recipe <b>{recipe.name}</b> v{recipe.version} ·")
        self.recipe.setToolTip(str(session.recipe_path or "recipe not saved to a file"))
        self.model.setText(f"Model <b>{card.model_id or card.name}</b> ·")
        self.model.setToolTip(str(session.model_path))
        self.source.setText(f"Source {session.source_spec or 'none'}")
        self.source.setToolTip(session.source_spec or "no source")

    def show_view(self, kind: str, text: str) -> None:
        bg, fg = VIEW_STYLE.get(kind, VIEW_STYLE["stopped"])
        self.view.setText(f" {text.split(' — ')[0]} ")
        self.view.setToolTip(text)
        self.view.setStyleSheet(f"background:{bg}; color:{fg}; padding:2px;")

    def show_lock(self, locked: bool) -> None:
        self.mode.setText("operator mode (locked)" if locked else "engineer mode")
