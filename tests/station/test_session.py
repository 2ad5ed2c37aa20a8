"""InspectionSession on a tiny real ONNX model and a folder of generated images."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

import app.station.session as session_mod
from app.station.inspection import Rules
from app.station.recipe import Recipe, SourceSettings, load_recipe, save_recipe
from app.station.session import InspectionSession
from app.station.settings import Settings
from engines import ModelCard, ModelLoadError
from engines import load_engine as real_load_engine
from tests.tiny_models import sigmoid_model

TILE = 16
N_IMAGES = 8  # odd-numbered images carry an 8x8 bright defect (64 px)


def make_model(path: Path, *, k: float, model_id: str) -> Path:
    """``probability = sigmoid(k * (image - 0.5))`` on N x 16 x 16 x 1, with its card beside it."""
    return sigmoid_model(path, tile=TILE, gain=k, model_id=model_id)


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    images = tmp_path / "images"
    images.mkdir()
    for i in range(N_IMAGES):
        img = np.full((32, 40), 30, np.uint8)
        if i % 2:
            img[10:18, 12:20] = 250
        cv2.imwrite(str(images / f"{i:03d}.png"), img)
    m1 = make_model(tmp_path / "m1.onnx", k=20.0, model_id="tiny-1")
    m2 = make_model(tmp_path / "m2.onnx", k=10.0, model_id="tiny-2")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf")
    ModelCard(name="bad", input_height=TILE, input_width=TILE).save(bad.with_suffix(".json"))
    recipe = Recipe(
        name="t",
        model=m1,
        rules=Rules(threshold=0.5),
        source=SourceSettings(spec=f"folder:{images}", mode="triggered"),
        archive_ng=True,
    )
    path = tmp_path / "recipes" / "t.toml"
    path.parent.mkdir()
    save_recipe(recipe, path)
    return {
        "recipe": load_recipe(path),
        "path": path,
        "m1": m1,
        "m2": m2,
        "bad": bad,
        "settings": Settings.defaults(tmp_path / "data"),
    }


class Counting:
    """Wraps a real engine and counts ``infer`` calls."""

    calls = 0

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.card = engine.card
        self.backend = engine.backend

    def infer(self, batch: np.ndarray) -> np.ndarray:
        Counting.calls += 1
        return self._engine.infer(batch)

    def close(self) -> None:
        self._engine.close()


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> type[Counting]:
    Counting.calls = 0
    monkeypatch.setattr(session_mod, "load_engine", lambda p: Counting(real_load_engine(p)))
    return Counting


class Events:
    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, event: str, payload: Any) -> None:
        with self.lock:
            self.items.append((event, payload))

    def of(self, kind: str) -> list[Any]:
        with self.lock:
            return [p for e, p in self.items if e == kind]


def open_session(world: dict[str, Any]) -> InspectionSession:
    return InspectionSession(world["recipe"], recipe_path=world["path"], settings=world["settings"])


def test_a_run_judges_every_frame_stores_it_and_emits_events(world: dict[str, Any]) -> None:
    events = Events()
    with open_session(world) as s:
        s.subscribe(events)
        s.start()
        assert s.wait(20)
        deadline = time.monotonic() + 5
        while s.running and time.monotonic() < deadline:
            time.sleep(0.01)
        results = events.of("result")
        assert len(results) == N_IMAGES
        verdicts = [r.inspection.verdict for r in results]
        assert verdicts == ["PASS", "NG"] * (N_IMAGES // 2)
        ng = results[1].inspection
        assert ng.defects[0].area_px == 64 and ng.model_id == "tiny-1"
        assert ng.defects[0].area_mm2 is None  # the recipe has no pixel size
        assert events.of("state") == [True, False]
        st = s.stats()
        assert (st.judged, st.passed, st.ng, st.dropped, st.skipped) == (8, 4, 4, 0, 0)
        assert st.yield_pct == 50.0 and not st.running
        assert events.of("stats"), "stats are published"
        assert len(s.history()) == N_IMAGES and s.latest() is results[-1]
        rows = s.store.recent(limit=100)
        assert len(rows) == N_IMAGES
    assert not any(t.name.startswith("station-") for t in threading.enumerate())


def test_set_rules_rejudges_kept_results_without_inference(
    world: dict[str, Any], counting: type[Counting]
) -> None:
    events = Events()
    with open_session(world) as s:
        s.subscribe(events)
        for _ in range(4):
            assert s.step() is not None
        assert s.latest().inspection.verdict == "NG"  # frame 3 has the 64 px defect
        calls = counting.calls
        assert calls > 0
        latest = s.set_rules(Rules(threshold=0.5, min_area_px=100))
        assert counting.calls == calls, "re-judging must not run the engine"
        assert latest is not None and latest.inspection.verdict == "PASS"
        assert latest.inspection.rules.min_area_px == 100
        assert events.of("rejudged") == [latest]
        assert all(r.inspection.verdict == "PASS" for r in s.history())
        again = s.rejudge(latest, Rules(threshold=0.5))
        assert again.inspection.verdict == "NG" and counting.calls == calls
        assert s.dirty
        # the next frame is judged with the new rules
        assert s.step().inspection.rules.min_area_px == 100
        assert s.stats().ng == 2  # counters keep the verdicts given at the time


def test_step_walks_the_folder_then_returns_none(world: dict[str, Any]) -> None:
    with open_session(world) as s:
        ids = []
        while (r := s.step()) is not None:
            ids.append(r.frame.frame_id)
        assert ids == list(range(N_IMAGES))


def test_a_bad_model_keeps_the_running_engine(world: dict[str, Any]) -> None:
    events = Events()
    with open_session(world) as s:
        s.subscribe(events)
        with pytest.raises(ModelLoadError, match="bad.onnx"):
            s.load_model(world["bad"])
        assert s.model_card.model_id == "tiny-1"
        assert s.model_path == world["m1"].resolve() and s.previous_model_path is None
        assert s.step().inspection.model_id == "tiny-1"
        assert events.of("model") == []
        with pytest.raises(ModelLoadError, match="no previous model"):
            s.rollback_model()


def test_hot_swap_while_running_and_rollback(world: dict[str, Any]) -> None:
    world["recipe"] = replace(
        world["recipe"], source=replace(world["recipe"].source, loop=True, fps=200.0)
    )
    events = Events()
    with open_session(world) as s:
        s.subscribe(events)
        s.start()
        while len(events.of("result")) < 3:
            time.sleep(0.01)
        card = s.load_model(world["m2"])
        assert card.model_id == "tiny-2" and s.model_card.model_id == "tiny-2"
        assert s.previous_model_path == world["m1"].resolve()
        deadline = time.monotonic() + 10
        while events.of("result")[-1].inspection.model_id != "tiny-2":
            assert time.monotonic() < deadline, "no result from the new model"
            time.sleep(0.01)
        ids = [r.inspection.model_id for r in events.of("result")]
        assert ids[0] == "tiny-1" and ids[-1] == "tiny-2"
        assert s.running  # swapped without a restart
        assert s.rollback_model().model_id == "tiny-1"
        assert s.previous_model_path == world["m2"].resolve()
        assert [c.model_id for c in events.of("model")] == ["tiny-2", "tiny-1"]
        s.stop()
        assert not s.running


def test_save_and_revert_recipe(world: dict[str, Any]) -> None:
    with open_session(world) as s:
        version = s.recipe.version
        assert not s.dirty
        s.set_rules(Rules(threshold=0.7, min_area_px=12))
        s.load_model(world["m2"])
        assert s.dirty
        saved = s.save_recipe()
        assert saved.version == version + 1 and not s.dirty
        on_disk = load_recipe(world["path"])
        assert on_disk.rules == Rules(threshold=0.7, min_area_px=12)
        assert on_disk.model == world["m2"].resolve() and on_disk.version == version + 1

        s.set_rules(Rules(threshold=0.2))
        s.load_model(world["m1"])
        assert s.dirty
        reverted = s.revert_recipe()
        assert reverted.rules == Rules(threshold=0.7, min_area_px=12)
        assert s.rules == reverted.rules and s.model_card.model_id == "tiny-2"
        assert not s.dirty


def test_a_failing_subscriber_does_not_affect_the_others(world: dict[str, Any]) -> None:
    def broken(event: str, payload: Any) -> None:
        raise RuntimeError("listener bug")

    events, later = Events(), Events()
    with open_session(world) as s:
        s.subscribe(broken)
        s.subscribe(events)
        unsubscribe = s.subscribe(later)
        assert s.step() is not None
        unsubscribe()
        assert s.step() is not None
        assert len(events.of("result")) == 2 and len(later.of("result")) == 1


def test_stats_events_are_throttled(world: dict[str, Any]) -> None:
    world["recipe"] = replace(
        world["recipe"], source=replace(world["recipe"].source, loop=True, fps=0.0)
    )
    events = Events()
    with open_session(world) as s:
        s.subscribe(events)
        t0 = time.monotonic()
        s.start(limit=60)
        assert s.wait(30)
        elapsed = time.monotonic() - t0
        time.sleep(0.05)
        kinds = Counter(e for e, _ in events.items)
        assert kinds["result"] == 60
        # ~4 a second while running, plus one final snapshot when the run ends
        assert 1 <= kinds["stats"] <= 4 * elapsed + 3


def test_a_missing_model_fails_at_construction(world: dict[str, Any], tmp_path: Path) -> None:
    recipe = replace(world["recipe"], model=tmp_path / "nope.onnx")
    with pytest.raises(ModelLoadError, match="nope.onnx"):
        InspectionSession(recipe, settings=world["settings"])


def test_open_source_checks_the_spec_and_restarts_a_running_session(
    world: dict[str, Any], tmp_path: Path
) -> None:
    from app.station.sources import SourceError

    other = tmp_path / "other"
    other.mkdir()
    cv2.imwrite(str(other / "a.png"), np.full((32, 40), 250, np.uint8))
    events = Events()
    with open_session(world) as s:
        s.subscribe(events)
        spec = s.source_spec
        with pytest.raises(SourceError):
            s.open_source(f"folder:{tmp_path / 'missing'}")
        assert s.source_spec == spec  # a bad spec leaves the working one in place
        s.open_source(f"folder:{other}")
        r = s.step()
        assert r is not None and r.frame.source == f"folder:{other}"
        assert r.inspection.verdict == "NG"  # the whole frame is bright
        s.close()
        s.close()  # idempotent
        assert not s.running
