"""RulesModel: the one owner of the live rules; the session follows lazily, last request wins."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.station.frame import Frame
from app.station.inspection import FrameResult, Rules
from app.station.inspector import judge
from app.station.recipe import Recipe
from app.station.rules_model import RulesModel


@dataclass
class FakeSession:
    """Records every hand-over; ``gate`` holds ``set_rules`` until the test lets it go."""

    rules: Rules = field(default_factory=Rules)
    applied: list[Rules] = field(default_factory=list)
    gate: threading.Event | None = None
    entered: threading.Event = field(default_factory=threading.Event)
    fail: bool = False
    saved: list[Rules] = field(default_factory=list)
    recipe: Recipe = field(default_factory=lambda: Recipe(name="r", model=Path("m.onnx")))

    @property
    def dirty(self) -> bool:
        return self.rules != self.recipe.rules

    def set_rules(self, rules: Rules) -> None:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(5)
        if self.fail:
            raise RuntimeError("disk on fire")
        self.applied.append(rules)
        self.rules = rules

    def rejudge(self, result: FrameResult, rules: Rules) -> FrameResult:
        assert result.prob is not None
        inspection = judge(result.prob, rules, frame_id=result.inspection.frame_id)
        return replace(result, inspection=inspection)

    def save_recipe(self) -> Recipe:
        self.saved.append(self.rules)
        self.recipe = replace(self.recipe, rules=self.rules, version=self.recipe.version + 1)
        return self.recipe

    def revert_recipe(self) -> Recipe:
        self.set_rules(self.recipe.rules)
        return self.recipe


def _events(model: RulesModel) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []
    model.subscribe(lambda event, payload: seen.append((event, payload)))
    return seen


def test_set_is_wanted_at_once_and_reaches_the_session() -> None:
    session = FakeSession()
    model = RulesModel(session)  # type: ignore[arg-type]
    seen = _events(model)
    model.set(Rules(threshold=0.7))
    assert model.rules.threshold == 0.7  # the model's at once, before any hand-over
    assert seen[0] == ("changed", Rules(threshold=0.7))
    assert model.wait(5)
    assert session.rules.threshold == 0.7
    assert model.idle()
    assert ("applied", Rules(threshold=0.7)) in seen


def test_last_request_wins_while_one_runs() -> None:
    session = FakeSession(gate=threading.Event())
    model = RulesModel(session)  # type: ignore[arg-type]
    model.set(Rules(threshold=0.6))
    assert session.entered.wait(5)  # the first hand-over is running (held by the gate)
    for t in (0.61, 0.62, 0.63, 0.64):  # a drag: each replaces the one waiting
        model.set(Rules(threshold=t))
    assert not model.idle()
    session.gate.set()  # type: ignore[union-attr]
    assert model.wait(5)
    assert [r.threshold for r in session.applied] == [0.6, 0.64]
    assert session.rules == model.rules


def test_same_rules_twice_is_no_request() -> None:
    session = FakeSession()
    model = RulesModel(session, synchronous=True)  # type: ignore[arg-type]
    seen = _events(model)
    model.set(Rules(threshold=0.5))  # the session's rules already
    assert seen == [] and session.applied == []


def test_failed_hand_over_is_reported_and_save_retries() -> None:
    session = FakeSession(fail=True)
    model = RulesModel(session, synchronous=True)  # type: ignore[arg-type]
    seen = _events(model)
    model.update(min_area_px=4000)
    assert ("error", "Rules not applied: disk on fire") in seen
    assert not model.idle() and model.dirty
    session.fail = False
    recipe = model.save()
    assert recipe.rules.min_area_px == 4000 and session.saved == [model.rules]


def test_save_waits_for_the_running_hand_over() -> None:
    session = FakeSession(gate=threading.Event())
    model = RulesModel(session)  # type: ignore[arg-type]
    model.update(threshold=0.9)
    assert session.entered.wait(5)
    threading.Timer(0.2, session.gate.set).start()  # type: ignore[union-attr]
    recipe = model.save(timeout=5)
    assert recipe.rules.threshold == 0.9  # not the rules from before the hand-over ended


def test_save_times_out_rather_than_writing_stale_rules() -> None:
    session = FakeSession(gate=threading.Event())
    model = RulesModel(session)  # type: ignore[arg-type]
    model.update(threshold=0.9)
    assert session.entered.wait(5)
    with pytest.raises(TimeoutError):
        model.save(timeout=0.05)
    assert session.saved == []
    session.gate.set()  # type: ignore[union-attr]
    assert model.wait(5)


def test_revert_takes_the_recipe_rules_and_tells_listeners() -> None:
    session = FakeSession()
    model = RulesModel(session, synchronous=True)  # type: ignore[arg-type]
    model.update(threshold=0.3, max_count=4)
    seen = _events(model)
    model.revert()
    assert model.rules == session.recipe.rules == session.rules
    assert ("changed", session.recipe.rules) in seen
    assert not model.dirty


def test_rejudge_uses_the_wanted_rules_without_the_session_having_them() -> None:
    prob = np.zeros((32, 32), np.float32)
    prob[10:20, 10:20] = 0.8  # a 100 px blob
    session = FakeSession(gate=threading.Event())
    frame = Frame(image=np.zeros((32, 32), np.uint8), frame_id=1, timestamp=0.0, source="t")
    result = FrameResult(frame=frame, inspection=judge(prob, session.rules, frame_id=1), prob=prob)
    assert result.inspection.verdict == "NG"
    model = RulesModel(session)  # type: ignore[arg-type]
    model.update(min_area_px=101)
    assert model.rejudge(result).inspection.verdict == "PASS"  # at once, session still busy
    assert session.rules.min_area_px == 0
    session.gate.set()  # type: ignore[union-attr]
    assert model.wait(5)
    unchanged = model.rejudge(model.rejudge(result))
    assert unchanged.inspection.rules == model.rules


@dataclass
class SessionWithEvents(FakeSession):
    """Emits "rejudged" from set_rules, as the real session does when it has results."""

    callbacks: list[Any] = field(default_factory=list)

    def subscribe(self, cb: Any) -> Any:
        self.callbacks.append(cb)
        return lambda: self.callbacks.remove(cb)

    def set_rules(self, rules: Rules) -> None:
        super().set_rules(rules)
        for cb in list(self.callbacks):
            cb("rejudged", None)


def test_rules_set_by_someone_else_are_adopted() -> None:
    session = SessionWithEvents()
    model = RulesModel(session, synchronous=True)  # type: ignore[arg-type]
    seen = _events(model)
    model.update(threshold=0.6)  # our own hand-over: not taken for an outside change
    assert seen.count(("changed", Rules(threshold=0.6))) == 1
    plc = Rules(threshold=0.35, min_area_px=40)
    session.set_rules(plc)  # a PLC switched the recipe
    assert model.rules == plc and ("changed", plc) in seen
    model.update(max_count=2)  # a slider afterwards builds on the adopted rules
    assert session.rules == replace(plc, max_count=2)
    model.close()
    session.set_rules(Rules())
    assert model.rules == replace(plc, max_count=2)  # closed: no longer following
