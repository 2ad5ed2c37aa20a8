"""A fixture that builds the setup panels the way the window does, without the window.

``make_panels(**recipe_changes) -> Panels``: a real session on the tiny model (conftest), its
bridge, a ViewState, an EngineerLock and ``build_setup_panels``. Teardown shuts the panels down,
detaches the bridge, closes the session and fails if a session thread is still alive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from app.station.inspection import FrameResult
from app.station.recipe import Recipe, save_recipe
from app.station.session import InspectionSession
from app.station.settings import Settings
from app.station.view_state import ViewState


@dataclass
class Panels:
    session: InspectionSession
    bridge: Any
    view_state: ViewState
    lock: Any
    panels: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.panels[key]

    def step(self) -> FrameResult:
        """One frame judged (blocking) and put on screen as the live frame."""
        result = self.session.step()
        assert result is not None, "the test source ran dry"
        self.view_state.offer_live(result)
        return result

    def step_to_strong_ng(self) -> FrameResult:
        """Step until the frame with the bright blob (max probability ~0.95) is judged."""
        for _ in range(6):
            result = self.step()
            ins = result.inspection
            if ins.verdict == "NG" and ins.defects[0].max_prob > 0.9:
                return result
        raise AssertionError("no strongly defective frame in the test folder")


@pytest.fixture
def make_panels(qtbot: Any, recipe: Recipe, settings: Settings) -> Iterator[Callable[..., Panels]]:
    from app.ui.bridge import SessionBridge
    from app.ui.lock import EngineerLock
    from app.ui.panels import build_setup_panels, shutdown_setup_panels

    made: list[Panels] = []

    def factory(**changes: Any) -> Panels:
        r = replace(recipe, **changes)
        r = save_recipe(r, r.path)  # a real file, so "save to recipe" has somewhere to write
        session = InspectionSession(r, recipe_path=r.path, settings=settings)
        bridge = SessionBridge(session)
        view_state = ViewState()
        lock = EngineerLock(settings.engineer_pin)
        panels = build_setup_panels(session, bridge, view_state, lock)
        for panel in panels.values():
            qtbot.addWidget(panel)
        made.append(Panels(session, bridge, view_state, lock, panels))
        return made[-1]

    yield factory
    for p in made:
        shutdown_setup_panels(p.panels)
        p.bridge.detach()
        p.session.close()
        assert not p.session.running
