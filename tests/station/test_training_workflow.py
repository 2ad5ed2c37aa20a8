"""TrainingWorkflow: the train → evaluate → compare → deploy / rollback state machine, with a
scripted runner (no Qt, no TensorFlow) and one real child process per step kind."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.station.access import EngineerAccess
from app.station.inspection import Rules
from app.station.training_workflow import (
    DeployBlocked,
    InvalidAction,
    Override,
    OverrideRefused,
    Stage,
    StepFailed,
    TrainingWorkflow,
    TrainOptions,
)


def report(recall: float, fp: int, images: int = 10) -> dict[str, Any]:
    rows = [
        {"threshold": t, "tp": 5, "tn": 5 - fp, "fp": fp, "fn": 0,
         "precision": 0.8, "recall": recall}
        for t in (0.1, 0.3, 0.5, 0.7, 0.9)
    ]  # fmt: skip
    return {"split": {"images": images}, "image_level": rows, "ap": 0.9, "pixel": {"dice": 0.7}}


@dataclass
class ScriptedRunner:
    """Answers each command like the real child would: lines, files, an exit code."""

    reports: dict[str, dict[str, Any]]  # "new" / "current" -> report.json content
    train_code: int = 0
    export_code: int = 0
    load_error: BaseException | None = None
    commands: list[list[str]] = field(default_factory=list)
    cancelled: bool = False
    hold_training: bool = False
    _held: Callable[[int, str], None] | None = None

    def run_process(
        self,
        command: list[str],
        on_line: Callable[[str], None],
        on_done: Callable[[int, str], None],
    ) -> None:
        self.commands.append(command)
        verb = command[3]
        if verb == "train":
            out = Path(command[command.index("--out") + 1])
            for line in (
                "tensorflow noise",
                json.dumps({"event": "step", "epoch": 1, "epochs": 2, "step": 1, "steps": 2,
                            "loss": 0.5, "dice": 0.2, "eta_s": 10}),
                json.dumps({"event": "epoch", "epoch": 1, "epochs": 2, "loss": 0.4,
                            "val_loss": 0.45, "dice": 0.3, "val_dice": None}),
            ):  # fmt: skip
                on_line(line)
            if self.hold_training:
                self._held = on_done
                return
            if self.train_code == 0:
                (out / "model.onnx").write_bytes(b"onnx")
                on_line(json.dumps({"event": "done", "model": str(out / "model.onnx")}))
            else:
                on_line(json.dumps({"event": "error", "message": "dataset has no images"}))
            on_done(self.train_code, "stderr tail")
        elif verb == "evaluate":
            out = Path(command[command.index("--out") + 1])
            out.mkdir(parents=True)
            which = "new" if out.name == "eval-new" else "current"
            (out / "report.json").write_text(json.dumps(self.reports[which]))
            on_done(0, "")
        elif verb == "export":
            out = Path(command[command.index("--out") + 1])
            out.parent.mkdir(parents=True, exist_ok=True)
            if self.export_code == 0:
                out.write_bytes(b"onnx")
            on_done(self.export_code, "export blew up" if self.export_code else "")
        else:
            raise AssertionError(f"unexpected command {command}")

    def cancel_process(self) -> None:
        self.cancelled = True
        if self._held is not None:
            self._held(-1, "terminated")

    def run_call(
        self, fn: Callable[[], Any], on_done: Callable[[Any, BaseException | None], None]
    ) -> None:
        try:
            value = fn()
        except Exception as exc:  # noqa: BLE001
            on_done(None, exc)
        else:
            on_done(value, None)


@dataclass
class FakeStation:
    model_path: Path = Path("/models/old.onnx")
    previous_model_path: Path | None = None
    fail_load: bool = False
    rules: Rules = field(default_factory=lambda: Rules(threshold=0.5, min_area_px=100))
    card: Any = "card"  # what load_model returns

    def load_model(self, path: str | Path) -> Any:
        if self.fail_load:
            raise RuntimeError("corrupt model")
        self.previous_model_path, self.model_path = self.model_path, Path(path)
        return self.card

    def rollback_model(self) -> str:
        assert self.previous_model_path is not None
        self.model_path, self.previous_model_path = self.previous_model_path, self.model_path
        return "card"


def make(
    tmp_path: Path, new: dict[str, Any], current: dict[str, Any], **runner: Any
) -> tuple[TrainingWorkflow, ScriptedRunner, FakeStation, list[tuple[str, Any]]]:
    run = ScriptedRunner({"new": new, "current": current}, **runner)
    station = FakeStation()
    audit: list[tuple[Any, ...]] = []
    wf = TrainingWorkflow(
        station, run, tmp_path / "data", operating_point=lambda: 0.5,
        check_pin=EngineerAccess("2468").check, gpu_available=lambda: False,
        audit=lambda *a, **k: audit.append((a, k)),
    )  # fmt: skip
    wf.audit_calls = audit  # type: ignore[attr-defined]
    events: list[tuple[str, Any]] = []
    wf.subscribe(lambda e, p: events.append((e, p)))
    return wf, run, station, events


def states(events: list[tuple[str, Any]]) -> list[Stage]:
    return [p for e, p in events if e == "state"]


def test_better_model_trains_compares_deploys_and_rolls_back(tmp_path: Path) -> None:
    wf, run, station, events = make(tmp_path, report(1.0, 0), report(0.8, 1))
    wf.start(TrainOptions(tmp_path / "ds", epochs=2))
    assert states(events) == [Stage.TRAINING, Stage.EVALUATING, Stage.COMPARED]
    train = next(c for c in run.commands if c[3] == "train")
    assert "--image-size" not in train  # left to the trainer (derived from the data)
    assert train[train.index("--epochs") + 1] == "2"
    assert train[train.index("--max-minutes") + 1] == "40"
    progress = [p for e, p in events if e == "progress"]
    assert progress[0].metrics == {"loss": 0.5, "dice": 0.2} and progress[0].eta_s == 10
    assert progress[1].metrics == {"loss": 0.4, "val_loss": 0.45, "dice": 0.3}  # null skipped
    assert progress[-1].fraction == 1.0
    # both models on the new run's split file
    evals = [c for c in run.commands if c[3] == "evaluate"]
    assert all("--split-file" in c for c in evals) and evals[1][5] == str(station.model_path)
    assert wf.comparison is not None and not wf.comparison.worse
    assert wf.comparison.rows[0] == ("test images", "10", "10")

    wf.deploy(who="Ana", why="more defects found")
    assert wf.stage == Stage.DEPLOYED
    assert station.model_path == tmp_path / "data" / "models" / f"{wf.run_dir.name}.onnx"
    record = wf.history[-1]
    assert (record.action, record.who, record.why, record.override) == (
        "deploy", "Ana", "more defects found", False,
    )  # fmt: skip
    assert record.model_from == "/models/old.onnx"
    assert wf.audit_calls[-1][0] == ("technician", "model.deploy")  # type: ignore[attr-defined]

    with pytest.raises(InvalidAction):
        wf.deploy()  # nothing new to deploy after a deploy
    wf.rollback(who="Ben", why="line 2 complains")
    assert wf.stage == Stage.ROLLED_BACK and station.model_path == Path("/models/old.onnx")
    assert [r.action for r in wf.history] == ["deploy", "rollback"]
    # the history survives a restart (DATA_DIR/deployments.jsonl)
    again, *_ = make(tmp_path, {}, {})
    assert [(r.action, r.who) for r in again.history] == [("deploy", "Ana"), ("rollback", "Ben")]


def test_a_worse_model_needs_a_pin_confirmed_override(tmp_path: Path) -> None:
    # the case: recall 0.0 against 1.0, and more false alarms
    wf, _run, station, _events = make(tmp_path, report(0.0, 3), report(1.0, 0))
    wf.start(TrainOptions(tmp_path / "ds"))
    assert wf.stage == Stage.COMPARED and wf.comparison is not None and wf.comparison.worse
    assert any("lower recall" in r for r in wf.comparison.reasons)
    assert any("more false alarms" in r for r in wf.comparison.reasons)

    with pytest.raises(DeployBlocked, match="lower recall"):
        wf.deploy(who="Ana", why="looks fine")
    with pytest.raises(OverrideRefused, match="Wrong PIN"):
        wf.deploy(override=Override(pin="0000", who="Ana", reason="urgent"))
    with pytest.raises(OverrideRefused, match="reason"):
        wf.deploy(override=Override(pin="2468", who="Ana", reason="  "))
    assert station.model_path == Path("/models/old.onnx") and wf.stage == Stage.COMPARED

    wf.deploy(override=Override(pin="2468", who="Ana", reason="old model drifts on new lot"))
    assert wf.stage == Stage.DEPLOYED
    rec = wf.history[-1]
    assert rec.override and rec.who == "Ana" and rec.why == "old model drifts on new lot"
    assert any("lower recall" in r for r in rec.comparison)
    assert wf.audit_calls[-1][0] == ("engineer", "model.deploy")  # type: ignore[attr-defined]


def test_comparison_on_different_images_cannot_be_trusted(tmp_path: Path) -> None:
    wf, *_ = make(tmp_path, report(1.0, 0, images=8), report(0.5, 2, images=10))
    wf.start(TrainOptions(tmp_path / "ds"))
    assert wf.comparison is not None and wf.comparison.worse
    with pytest.raises(DeployBlocked, match="same images"):
        wf.deploy()


def test_failed_training_and_failed_export_leave_the_model_running(tmp_path: Path) -> None:
    wf, _run, station, events = make(tmp_path, report(1, 0), report(1, 0), train_code=2)
    wf.start(TrainOptions(tmp_path / "ds"))
    assert wf.stage == Stage.FAILED
    error = wf.error
    assert isinstance(error, StepFailed) and error.code == 2
    assert "dataset has no images" in error.output and "stderr tail" in error.output
    assert ("failed", error) in events

    wf2, _run2, station2, _ = make(tmp_path / "b", report(1, 0), report(1, 0), export_code=1)
    wf2.start(TrainOptions(tmp_path / "ds"))
    wf2.deploy()
    assert wf2.stage == Stage.FAILED and "export blew up" in wf2.error.output  # type: ignore[union-attr]
    assert station2.model_path == Path("/models/old.onnx") and wf2.history == []


def test_a_model_that_does_not_load_is_a_typed_failure(tmp_path: Path) -> None:
    wf, _run, station, _ = make(tmp_path, report(1, 0), report(1, 0))
    station.fail_load = True
    wf.start(TrainOptions(tmp_path / "ds"))
    wf.deploy()
    assert wf.stage == Stage.FAILED and isinstance(wf.error, StepFailed)
    assert "previous model keeps running" in str(wf.error) and wf.history == []


def test_cancel_returns_to_idle_and_busy_actions_are_refused(tmp_path: Path) -> None:
    wf, run, _station, _ = make(tmp_path, report(1, 0), report(1, 0), hold_training=True)
    wf.start(TrainOptions(tmp_path / "ds"))
    assert wf.stage == Stage.TRAINING and wf.busy
    with pytest.raises(InvalidAction):
        wf.start(TrainOptions(tmp_path / "ds"))
    with pytest.raises(InvalidAction):
        wf.rollback()
    wf.cancel()
    assert run.cancelled and wf.stage == Stage.IDLE and wf.new_model is None
    with pytest.raises(InvalidAction, match="no previous model"):
        wf.rollback()


class SubprocessRunner:
    """A real child per step (``subprocess``), run to completion before calling back."""

    def run_process(
        self,
        command: list[str],
        on_line: Callable[[str], None],
        on_done: Callable[[int, str], None],
    ) -> None:
        import subprocess

        proc = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        for line in proc.stdout.splitlines():
            on_line(line)
        on_done(proc.returncode, proc.stderr)

    def cancel_process(self) -> None:
        raise AssertionError("not cancelled in this test")

    def run_call(
        self, fn: Callable[[], Any], on_done: Callable[[Any, BaseException | None], None]
    ) -> None:
        on_done(fn(), None)


def test_a_real_child_that_crashes_is_reported_with_its_stderr(tmp_path: Path) -> None:
    # the "interpreter" is a script that plays the trainer: one progress line, then a crash
    fake = tmp_path / "fake_python"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "print(json.dumps({'event': 'step', 'epoch': 1, 'epochs': 1, 'step': 1, 'steps': 1,"
        " 'loss': 0.9}), flush=True)\n"
        "sys.stderr.write('Traceback: out of memory\\n'); sys.exit(137)\n"
    )
    fake.chmod(0o755)
    wf = TrainingWorkflow(
        FakeStation(), SubprocessRunner(), tmp_path / "data", operating_point=lambda: 0.5,
        gpu_available=lambda: False, python=str(fake),
    )  # fmt: skip
    seen: list[tuple[str, Any]] = []
    wf.subscribe(lambda e, p: seen.append((e, p)))
    wf.start(TrainOptions(tmp_path / "ds", epochs=1))
    assert [p.metrics for e, p in seen if e == "progress"] == [{"loss": 0.9}]
    assert wf.stage == Stage.FAILED and isinstance(wf.error, StepFailed)
    assert wf.error.code == 137 and "out of memory" in wf.error.output


@pytest.mark.dagm
def test_the_dataset_summary_reads_a_real_dagm_folder(dagm_class1: Path) -> None:
    """The issue's case: the Train tab said "0 images" for the DAGM folder Validation reads."""
    from app.station.training_workflow import _describe_by_pairs, describe_dataset
    from app.station.validation import find_pairs

    n = len(find_pairs(dagm_class1))
    assert n > 0
    for root in (dagm_class1, dagm_class1.parent):  # ClassN/Test, and ClassN itself
        text = describe_dataset(root)
        assert f"{n} images" in text and "with a defect" in text and "(dagm)" in text
        assert f"{n} images" in _describe_by_pairs(root)  # the bundle's fallback agrees


def test_a_deployed_model_with_another_operating_point_says_the_rules_stay(
    tmp_path: Path,
) -> None:
    from types import SimpleNamespace

    wf, _run, station, events = make(tmp_path, report(1.0, 0), report(0.8, 1))
    station.card = SimpleNamespace(threshold=0.7, min_area_px=240)
    wf.start(TrainOptions(tmp_path / "ds", epochs=2))
    wf.deploy(who="Ana")
    status = [p for e, p in events if e == "status"][-1]
    assert "Its card chose threshold 0.7 and minimum area 240 px" in status
    assert "keeps its rules (0.5, 100 px)" in status
    station.card = SimpleNamespace(threshold=0.5, min_area_px=100)  # the same point: no note
    wf.rollback(who="Ben")
    wf2, _r2, station2, events2 = make(tmp_path / "b", report(1.0, 0), report(0.8, 1))
    station2.card = SimpleNamespace(threshold=0.5, min_area_px=100)
    wf2.start(TrainOptions(tmp_path / "ds", epochs=2))
    wf2.deploy(who="Ana")
    assert "Its card chose" not in [p for e, p in events2 if e == "status"][-1]
