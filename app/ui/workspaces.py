"""The navigation rail and the workspace stack: each workspace gets the main area beside the image.

Like napari's dock widgets and Geti Inspect's side panels, a tool is not squeezed into a tab column
under the verdict: picking it on the rail gives it the larger half of the window, while the image
(and the view header saying LIVE / REVIEW / STOPPED) stays beside it. Engineering workspaces leave
the rail while the station is locked.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import (
    QFrame,
    QScrollArea,
    QStackedWidget,
    QToolBar,
    QToolButton,
    QWidget,
)


@dataclass
class Workspace:
    key: str
    title: str
    panel: QWidget  # what the workspace shows
    page: QWidget  # the panel, or a scroll area around it (what sits in the stack)
    engineer: bool  # needs the engineer lock open
    action: QAction  # its button on the rail


class Workspaces(QStackedWidget):
    """The stack of workspace pages plus the rail (a vertical ``QToolBar``) that picks one."""

    changed = Signal(str)  # key of the workspace now shown

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rail = QToolBar("Workspaces", parent)
        self.rail.setObjectName("workspace_rail")
        self.rail.setOrientation(Qt.Orientation.Vertical)
        self.rail.setMovable(False)
        self.rail.setFloatable(False)
        self.rail.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.rail.setIconSize(QSize(0, 0))
        self.rail.toggleViewAction().setEnabled(False)  # the rail is the navigation: not hideable
        self._group = QActionGroup(self)
        self._group.setExclusive(True)
        self._spaces: dict[str, Workspace] = {}
        self._locked = False
        self._current = ""

    def add(
        self,
        key: str,
        title: str,
        panel: QWidget,
        *,
        engineer: bool,
        tip: str,
        scroll: bool = True,
    ) -> Workspace:
        """Add a workspace; ``scroll`` wraps the panel in a vertically scrolling page (a tall
        panel on a 720-line screen scrolls down, never sideways)."""
        page: QWidget = panel
        if scroll:
            area = QScrollArea(self)
            area.setWidgetResizable(True)
            area.setFrameShape(QFrame.Shape.NoFrame)
            area.setWidget(panel)
            page = area
        self.addWidget(page)
        action = QAction(title, self)
        action.setCheckable(True)
        action.setToolTip(f"{title}: {tip}" + (" (engineer)" if engineer else ""))
        action.setStatusTip(tip)
        action.triggered.connect(lambda _checked=False, k=key: self.show_workspace(k))
        self._group.addAction(action)
        self.rail.addAction(action)
        button = self.rail.widgetForAction(action)
        if isinstance(button, QToolButton):
            button.setMinimumHeight(36)
        space = Workspace(key, title, panel, page, engineer, action)
        self._spaces[key] = space
        if not self._current:
            self.show_workspace(key)
        self._apply_lock()
        return space

    # -- queries -----------------------------------------------------------------------------

    def keys(self) -> list[str]:
        return list(self._spaces)

    def get(self, key: str) -> Workspace:
        return self._spaces[key]

    def key_of(self, panel: QWidget) -> str | None:
        for space in self._spaces.values():
            if space.panel is panel or space.panel.isAncestorOf(panel):
                return space.key
        return None

    def available(self, key: str) -> bool:
        """On the rail now (engineering workspaces leave it while locked)."""
        space = self._spaces.get(key)
        return space is not None and not (space.engineer and self._locked)

    @property
    def current(self) -> str:
        return self._current

    # -- changing ----------------------------------------------------------------------------

    def show_workspace(self, key: str) -> bool:
        """Show ``key`` if it is available; False (and nothing changes) otherwise."""
        if not self.available(key):
            return False
        space = self._spaces[key]
        self.setCurrentWidget(space.page)
        space.action.setChecked(True)
        if key != self._current:
            self._current = key
            self.changed.emit(key)
        return True

    def set_locked(self, locked: bool) -> None:
        self._locked = locked
        self._apply_lock()

    def _apply_lock(self) -> None:
        for space in self._spaces.values():
            space.action.setVisible(not (space.engineer and self._locked))
        if self._current and not self.available(self._current):
            first = next(k for k in self._spaces if self.available(k))
            self.show_workspace(first)
