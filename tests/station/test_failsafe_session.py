"""Fail-safe session: ERROR is counted and logged but never a pass; a FAULT is a state with a
reason; a failed model swap leaves the running engine; part ids reach their result; every change
that matters lands in the hash-chained audit trail."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.station.audit import verify_database
from app.station.inspection import Rules, Zone
from app.station.session import InspectionSession
from engines import ModelLoadError
from tests.station.test_session import Events, world  # noqa: F401 - fixture

__all__ = ["world"]


def open_session(world: dict[str, Any], **recipe_changes: Any) -> InspectionSession:  # noqa: F811
    recipe = replace(world["recipe"], **recipe_changes) if recipe_changes else world["recipe"]
    return InspectionSession(recipe, recipe_path=world["path"], settings=world["settings"])


def run_to_end(s: InspectionSession) -> None:
    s.start()
    assert s.wait(30)
    s.stop()


def test_unreadable_files_are_error_events_and_never_count_as_pass(world: dict[str, Any]) -> None:  # noqa: F811
    folder = Path(world["recipe"].source.spec.removeprefix("folder:"))
    (folder / "004b.png").write_bytes(b"\x89PNG broken")
    events = Events()
    with open_session(world) as s:
        s.subscribe(events)
        run_to_end(s)
        st = s.stats()
        errors = s.events.records("frame_error")
    assert (st.acquired, st.judged, st.errors) == (9, 8, 1)
    assert st.passed + st.ng + st.errors + st.dropped == st.acquired
    assert st.yield_pct == pytest.approx(100.0 * st.passed / 9, abs=0.01)  # ERROR is not a pass
    assert [e.file for e in errors] == ["004b.png"] and "unreadable" in errors[0].message
    assert any(kind == "event" for kind, _ in events.items)
    rows = (
        sqlite3.connect(world["settings"].db_path)
        .execute("SELECT COUNT(*), SUM(verdict = 'ERROR') FROM inspections")
        .fetchone()
    )
    assert rows == (9, 1)


def test_rejudging_keeps_error_results_as_error(world: dict[str, Any]) -> None:  # noqa: F811
    folder = Path(world["recipe"].source.spec.removeprefix("folder:"))
    (folder / "000a.png").write_bytes(b"")
    with open_session(world) as s:
        run_to_end(s)
        s.set_rules(Rules(threshold=0.01))
        verdicts = [r.inspection.verdict for r in s.history()]
    assert verdicts.count("ERROR") == 1 and verdicts[1] == "ERROR"  # 000.png, 000a.png, ...


def test_a_recipe_whose_include_zone_misses_the_frame_faults_with_the_reason(
    world: dict[str, Any],  # noqa: F811
) -> None:
    far = Zone("far", "include", ((500.0, 500.0), (600.0, 500.0), (600.0, 600.0)))
    events = Events()
    with open_session(world, rules=Rules(threshold=0.5, zones=(far,))) as s:
        s.subscribe(events)
        run_to_end(s)
        st = s.stats()
        assert s.state == "fault" and s.fault and "far" in s.fault
        assert st.passed == 0 and st.fault == s.fault
        assert [p for kind, p in events.items if kind == "fault"] == [s.fault]
        # A new start is the operator's decision: it clears the fault (and faults again here).
        s.start()
        assert s.wait(30)
        assert s.state == "fault"


def test_a_model_that_fails_to_load_leaves_the_running_engine(world: dict[str, Any]) -> None:  # noqa: F811
    with open_session(world) as s:
        before = s.model_card.model_id
        with pytest.raises(ModelLoadError):
            s.load_model(world["bad"])
        assert s.model_card.model_id == before
        result = s.step()
        assert result is not None and result.inspection.model_id == before


def test_a_single_step_job_carries_its_part_id(world: dict[str, Any]) -> None:  # noqa: F811
    with open_session(world) as s:
        result = s.step(part_id="P-0042")
        assert result is not None and result.extra["part_id"] == "P-0042"
        again = s.step()
        assert again is not None and "part_id" not in again.extra


def test_changes_go_to_the_hash_chained_audit_trail(world: dict[str, Any]) -> None:  # noqa: F811
    with open_session(world) as s:
        s.actor = ("engineer", "ana")
        s.set_rules(Rules(threshold=0.7, min_area_px=12))
        s.load_model(world["m2"], reason="better recall")
        s.rollback_model(reason="line complaint")
        s.save_recipe()
        run_to_end(s)
        assert s.audit is not None
        rows = s.audit.rows(limit=100)
    actions = [r.action for r in rows]
    for wanted in (
        "rules.change",
        "model.deploy",
        "model.rollback",
        "recipe.save",
        "station.start",
    ):
        assert wanted in actions, actions
    change = next(r for r in rows if r.action == "rules.change")
    assert change.role == "engineer" and change.user == "ana"
    assert change.old["threshold"] == 0.5 and change.new["threshold"] == 0.7
    assert verify_database(world["settings"].db_path).ok


def test_counters_show_model_faults_without_a_pass(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: F811
    with open_session(world) as s:
        engine = s._models.engine
        real = engine.infer
        calls = {"n": 0}

        def flaky(batch: np.ndarray) -> np.ndarray:
            calls["n"] += 1
            out = real(batch)
            return np.full_like(out, np.nan) if calls["n"] % 2 else out

        monkeypatch.setattr(engine, "infer", flaky)
        run_to_end(s)
        st = s.stats()
    assert st.errors > 0 and st.model_faults == st.errors
    assert st.acquired == st.passed + st.ng + st.errors + st.dropped
    assert s.state != "fault"  # never two faults in a row here


def test_use_recipe_switches_model_rules_and_the_file_save_writes(world: dict[str, Any]) -> None:  # noqa: F811
    from app.station.recipe import load_recipe, save_recipe

    other_path = world["path"].with_name("other.toml")
    other = replace(world["recipe"], name="other", model=world["m2"], rules=Rules(threshold=0.8))
    save_recipe(other, other_path)
    other = load_recipe(other_path)
    with open_session(world) as s:
        s.use_recipe(other)
        assert s.recipe.name == "other" and s.recipe_path == other_path
        assert s.model_card.model_id == "tiny-2" and s.rules.threshold == 0.8
        s.set_rules(Rules(threshold=0.6))
        s.save_recipe()
        assert s.audit is not None
        assert "recipe.select" in [r.action for r in s.audit.rows(limit=50)]
    assert load_recipe(other_path).rules.threshold == 0.6
    assert load_recipe(world["path"]).rules.threshold == 0.5, "the first recipe must be untouched"
    with open_session(world) as s, pytest.raises(ModelLoadError):
        s.use_recipe(replace(other, model=world["bad"]))
    # a model that fails leaves the session on its recipe


def test_a_declared_12_bit_source_is_scaled_by_4095_end_to_end(
    world: dict[str, Any],
    tmp_path: Path,  # noqa: F811
) -> None:
    import cv2

    from app.station.recipe import SourceSettings

    folder = tmp_path / "deep"
    folder.mkdir()
    img = np.full((32, 40), 200, np.uint16)
    img[8:24, 12:28] = 4000  # bright in 12-bit terms, 6 % of a 16-bit range
    assert cv2.imwrite(str(folder / "a.png"), img)
    verdicts = {}
    for depth in (None, 12):
        source = SourceSettings(spec=f"folder:{folder}", mode="triggered", bit_depth=depth)
        with open_session(world, source=source) as s:
            run_to_end(s)
            verdicts[depth] = s.history()[0].inspection.verdict
            warnings = [e.message for e in s.events.records("alarm")]
    assert verdicts == {None: "PASS", 12: "NG"}
    assert not any("range" in w for w in warnings)  # 4000 of 4095 uses the range well
