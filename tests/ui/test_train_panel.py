"""The training panel drives the real ``python -m training`` child process end to end."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QObject, Signal

from app.station.access import EngineerAccess
from app.station.inspection import FrameResult
from app.station.recipe import Recipe
from app.station.session import InspectionSession
from app.station.training_workflow import Override, Stage, TrainingWorkflow
from app.ui._process_job import ProcessJob, QtJobRunner
from app.ui.train_panel import TrainPanel
from tests.station.test_training_workflow import FakeStation, ScriptedRunner, report
from tests.ui.setup_panels import Panels

pytestmark = pytest.mark.gui


HAVE_TF = importlib.util.find_spec("tensorflow") is not None  # not imported here: child only
needs_training = pytest.mark.skipif(
    not HAVE_TF or importlib.util.find_spec("training.cli") is None,
    reason="`python -m training` needs TensorFlow (install the 'train' extra)",
)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    from training.data.synthetic import generate  # no TensorFlow import in the generator

    generate(tmp_path / "ds", 24, size=(64, 64), defect_ratio=0.5, seed=1)
    return tmp_path / "ds"


@pytest.fixture
def built(make_panels: Any, recipe: Recipe) -> Panels:
    # A slow line (5 fps) keeps the 2-core machine free for the training child.
    return make_panels(source=replace(recipe.source, fps=5.0))


@pytest.fixture
def session(built: Panels) -> InspectionSession:
    return built.session


@pytest.fixture
def panel(qtbot: Any, built: Panels) -> TrainPanel:
    p: TrainPanel = built["train"]
    p.show()
    return p


def _tiny(panel: TrainPanel, data: Path) -> None:
    panel.data_edit.setText(str(data))
    panel.epochs.setValue(1)
    panel.image_size.setCurrentText("64")
    panel.base_filters.setCurrentText("8")


def _wait_state(qtbot: Any, panel: TrainPanel, states: tuple[str, ...], timeout_s: float) -> None:
    qtbot.waitUntil(lambda: panel.state in states, timeout=int(timeout_s * 1000))
    if panel.state == "failed" and "failed" not in states:
        pytest.fail(f"{panel.status.text()}\n{panel.errors.toPlainText()[-3000:]}")


def _results(session: InspectionSession) -> list[FrameResult]:
    got: list[FrameResult] = []
    session.subscribe(lambda event, payload: got.append(payload) if event == "result" else None)
    return got


@needs_training
@pytest.mark.training
def test_tiny_training_compares_deploys_and_rolls_back(
    qtbot: Any, panel: TrainPanel, session: InspectionSession, dataset: Path
) -> None:
    results = _results(session)
    session.start()  # the line keeps running through training, evaluation and the hot swap
    old = session.model_card
    old_path = session.model_path
    _tiny(panel, dataset)
    qtbot.waitUntil(lambda: "24 images" in panel.summary.text(), timeout=10_000)

    panel.start()
    assert panel.state == "training" and panel.job is not None
    assert panel.job.command[0] == sys.executable
    _wait_state(qtbot, panel, ("compared", "failed"), 400)

    # Live curves received points; the done event named the new model.
    assert panel.curve_points("loss") and panel.curve_points("dice")
    assert len(panel.curve_points("val_loss")) == 1  # one epoch
    assert panel.new_model is not None and Path(panel.new_model).is_file()
    assert panel.progress.value() == 1000
    # Both models were measured on the same held-out split and shown side by side.
    new, cur = panel.reports["new"], panel.reports["current"]
    assert new["split"]["images"] == cur["split"]["images"] > 0
    assert Path(cur["split"]["file"]).read_text() == (panel.run_dir / "split.json").read_text()
    view = panel.comparison
    assert view.cell(0, 0) == "test images" and view.cell(0, 1) == view.cell(0, 2)
    assert view.cell(3, 0) == "average precision" and view.cell(3, 2) != "—"
    assert set(view.curves) == {"current", "new"}
    assert panel.deploy_btn.isEnabled() and not panel.rollback_btn.isEnabled()

    comparison = panel.workflow.comparison
    assert comparison is not None
    if comparison.worse:  # a one-epoch model may well be: the guard asks for the override
        assert "override" in panel.deploy_btn.text()
        assert panel.deploy_override(Override(pin="1234", who="test", reason="tiny test model"))
    else:
        panel.deploy()
    _wait_state(qtbot, panel, ("deployed", "failed"), 300)
    assert session.model_card != old
    assert session.model_path == panel.deployed_path.resolve()
    assert session.previous_model_path == old_path
    assert session.running  # hot swap: no restart
    new_id = session.model_card.model_id or session.model_card.name
    qtbot.waitUntil(lambda: any(r.inspection.model_id == new_id for r in results), timeout=10_000)

    assert panel.rollback_btn.isEnabled()
    panel.rollback()
    _wait_state(qtbot, panel, ("rolled back", "failed"), 30)
    assert session.model_path == old_path and session.model_card == old
    assert "Rolled back" in panel.status.text()
    assert [r.action for r in panel.workflow.history] == ["deploy", "rollback"]


@needs_training
@pytest.mark.training
def test_cancel_stops_the_training_child(qtbot: Any, panel: TrainPanel, dataset: Path) -> None:
    _tiny(panel, dataset)
    panel.epochs.setValue(50)
    panel.start()
    qtbot.waitUntil(lambda: bool(panel.curve_points("loss")), timeout=120_000)
    proc = panel.job.proc if panel.job else None
    panel.cancel()
    _wait_state(qtbot, panel, ("idle", "failed"), 30)
    assert panel.state == "idle" and "cancelled" in panel.status.text()
    assert proc is None or panel.job is None
    assert panel.start_btn.isEnabled() and not panel.deploy_btn.isEnabled()


def test_failing_training_shows_its_error_output_and_the_station_keeps_running(
    qtbot: Any, panel: TrainPanel, session: InspectionSession, tmp_path: Path
) -> None:
    results = _results(session)
    session.start()
    qtbot.waitUntil(lambda: len(results) >= 2, timeout=10_000)
    panel.data_edit.setText(str(tmp_path / "no-such-dataset"))
    panel.start()
    _wait_state(qtbot, panel, ("failed",), 120)
    text = panel.errors.toPlainText()
    assert "Training failed" in text and "no-such-dataset" in text
    assert "station keeps running" in panel.status.text()
    assert panel.start_btn.isEnabled() and not panel.deploy_btn.isEnabled()
    n = len(results)
    qtbot.waitUntil(lambda: len(results) > n + 2, timeout=10_000)  # the line never stopped
    assert session.running


def test_process_job_splits_lines_keeps_stderr_and_reports_start_failure(qtbot: Any) -> None:
    code = (
        'import sys; sys.stdout.write(\'{"event": "step"}\\nhalf\'); sys.stdout.flush(); '
        "sys.stdout.write(' line\\n'); sys.stderr.write('boom'); sys.exit(3)"
    )
    job = ProcessJob([sys.executable, "-c", code])
    lines: list[str] = []
    job.line.connect(lines.append)
    with qtbot.waitSignal(job.done, timeout=20_000) as done:
        job.start()
    assert lines == ['{"event": "step"}', "half line"]
    assert done.args == [3, "boom"]

    missing = ProcessJob(["/nonexistent/python", "-c", "pass"])
    with qtbot.waitSignal(missing.done, timeout=5000) as failed:
        missing.start()
    assert failed.args[0] == -1 and "could not start" in failed.args[1]


class _ModelSwaps(QObject):
    model = Signal(object)


def _guarded(qtbot: Any, tmp_path: Path, new: dict[str, Any], current: dict[str, Any]) -> Any:
    """A panel over a workflow whose children are scripted (no TensorFlow needed)."""
    station = FakeStation()
    workflow = TrainingWorkflow(
        station, ScriptedRunner({"new": new, "current": current}), tmp_path / "data",
        operating_point=lambda: 0.5, check_pin=EngineerAccess("1234").check,
        gpu_available=lambda: False,
    )  # fmt: skip
    bridge = _ModelSwaps()  # the panel only listens to the bridge's model swaps
    panel = TrainPanel(workflow, QtJobRunner(), bridge, tmp_path / "ds")  # type: ignore[arg-type]
    qtbot.addWidget(panel)
    panel.data_edit.setText(str(tmp_path / "ds"))
    panel.start()
    assert workflow.stage == Stage.COMPARED
    return panel, station


def test_deploying_a_worse_model_is_red_and_needs_the_pin(qtbot: Any, tmp_path: Path) -> None:
    panel, station = _guarded(qtbot, tmp_path, report(0.0, 3), report(1.0, 0))
    view = panel.comparison
    assert view.verdict.isVisibleTo(panel) and "WORSE" in view.verdict.text()
    assert "c62828" in view.verdict.styleSheet()  # red
    assert "lower recall" in view.verdict.text() and "more false alarms" in view.verdict.text()
    assert panel.deploy_btn.isEnabled() and "override" in panel.deploy_btn.text()
    errors: list[str] = []
    panel.error.connect(errors.append)
    assert not panel.deploy_override(Override(pin="9999", who="Ana", reason="urgent"))
    assert "Wrong PIN" in errors[-1] and station.model_path == Path("/models/old.onnx")
    assert panel.deploy_override(Override(pin="1234", who="Ana", reason="new lot"))
    assert panel.state == "deployed"
    assert "override" in panel.history_label.text() and "Ana" in panel.history_label.text()


def test_a_better_model_deploys_with_who_and_why(qtbot: Any, tmp_path: Path) -> None:
    panel, station = _guarded(qtbot, tmp_path, report(1.0, 0), report(0.5, 2))
    assert "at least as good" in panel.comparison.verdict.text()
    assert panel.deploy_btn.text() == "Deploy new model"
    panel.who.setText("Ben")
    panel.why.setText("finds the scratches")
    panel.deploy()
    assert panel.state == "deployed" and station.model_path != Path("/models/old.onnx")
    assert panel.workflow.history[-1].who == "Ben"
    assert "finds the scratches" in panel.history_label.text()
    assert panel.rollback_btn.isEnabled()
    panel.rollback()
    assert panel.state == "rolled back" and station.model_path == Path("/models/old.onnx")


def test_by_default_the_trainer_derives_epochs_and_tile_within_a_budget(
    panel: TrainPanel, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Issue 9: the Train workspace trains "without tuning" as the CLI does: epochs from a time
    budget, the tile from the data; a value the technician picks is passed as given."""
    seen: list[Any] = []
    monkeypatch.setattr(panel.workflow, "start", seen.append)
    panel.data_edit.setText(str(tmp_path))
    assert panel.epochs.text() == "as many as fit" and panel.image_size.currentText() == (
        "from the data"
    )
    panel.start()
    assert (seen[-1].epochs, seen[-1].image_size, seen[-1].max_minutes) == (None, None, 40.0)
    panel.epochs.setValue(12)
    panel.image_size.setCurrentText("128")
    panel.budget.setValue(90)
    panel.start()
    assert (seen[-1].epochs, seen[-1].image_size, seen[-1].max_minutes) == (12, 128, 90.0)
