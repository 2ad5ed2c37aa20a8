"""Exact command lines for the training child process and tolerant progress parsing."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import pytest

from app.station import training_jobs as tj

PY = sys.executable


def test_train_command_minimal_and_full() -> None:
    assert tj.train_command("data", "runs/r1") == [
        PY, "-m", "training", "train", "--data", "data", "--out", "runs/r1",
        "--progress", "json",
    ]  # fmt: skip
    assert tj.train_command(
        Path("d"), Path("o"), masks="m", epochs=3, image_size=128, base_filters=8,
        amp=True, xla=True, python="/opt/py",
    ) == [
        "/opt/py", "-m", "training", "train", "--data", "d", "--masks", "m", "--out", "o",
        "--epochs", "3", "--image-size", "128", "--base-filters", "8", "--amp", "--xla",
        "--progress", "json",
    ]  # fmt: skip
    assert tj.train_command("d", "o", xla=False)[-3:] == ["--no-xla", "--progress", "json"]
    # the Train workspace's default: epochs and tile left to the trainer, a 40-minute budget
    assert tj.train_command("d", "o", max_minutes=40)[-4:] == [
        "--max-minutes", "40", "--progress", "json",
    ]  # fmt: skip


def test_the_commands_parse_with_the_real_training_cli() -> None:
    # The station builds these lines; training's own parser must accept every one of them.
    cli = pytest.importorskip("training.cli")
    parser = cli.build_parser()
    for cmd in (
        tj.train_command("d", "o", masks="m", epochs=1, image_size=64, base_filters=8,
                         amp=True, xla=False),
        tj.train_command("d", "o", xla=True),
        tj.train_command("d", "o", max_minutes=12.5),
        tj.evaluate_command("m.onnx", "d", "ev", masks="mk", split="all"),
        tj.evaluate_command("m.onnx", "d", "ev", split_file="s.json"),
        tj.export_command("run", "m.onnx"),
    ):  # fmt: skip
        assert cmd[1:3] == ["-m", "training"]
        parser.parse_args(cmd[3:])


def test_interpreter_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tj.PYTHON_ENV, raising=False)
    assert tj.export_command("r", "m")[0] == sys.executable
    monkeypatch.setenv(tj.PYTHON_ENV, "/opt/train-env/bin/python")
    assert tj.build_command("m", "e")[0] == "/opt/train-env/bin/python"
    monkeypatch.delenv(tj.PYTHON_ENV)
    # In a PyInstaller bundle sys.executable is the station itself, never a Python.
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(tj.shutil, "which", lambda name: f"/usr/local/bin/{name}")
    assert tj.train_command("d", "o")[0] == "/usr/local/bin/python3"


def test_evaluate_export_build_commands() -> None:
    assert tj.evaluate_command("m.onnx", "data", "ev") == [
        PY, "-m", "training", "evaluate", "--model", "m.onnx", "--data", "data",
        "--split", "test", "--out", "ev",
    ]  # fmt: skip
    assert tj.evaluate_command("run", "data", "ev", masks="mk", split="all")[6:] == [
        "--data", "data", "--masks", "mk", "--split", "all", "--out", "ev",
    ]  # fmt: skip
    assert tj.evaluate_command("m.onnx", "data", "ev", split_file="run/split.json")[-6:] == [
        "--split-file", "run/split.json", "--split", "test", "--out", "ev",
    ]  # fmt: skip
    with pytest.raises(ValueError):
        tj.evaluate_command("m", "d", "o", split="train")  # type: ignore[arg-type]
    assert tj.export_command("run", "m.onnx") == [
        PY, "-m", "training", "export", "--run", "run", "--out", "m.onnx",
    ]  # fmt: skip
    assert tj.build_command("m.onnx", "m.engine") == [
        PY, "-m", "engines", "build", "--onnx", "m.onnx", "--out", "m.engine",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "line",
    [
        "",
        "Epoch 1/3 ━━━━━━ 12s",
        "WARNING: tensorflow something {braces}",
        '{"event": "epoch", "loss": 0.3',  # half a line
        '[{"event": "epoch"}]',
        '{"loss": 0.1}',  # no event
        '{"event": 3}',
        b"\xff\xfe{",
    ],
)
def test_parse_progress_ignores_what_is_not_an_event(line: str | bytes) -> None:
    assert tj.parse_progress(line) is None


def test_parse_progress_reads_events() -> None:
    event = {"event": "epoch", "epoch": 2, "epochs": 5, "loss": 0.25, "val_dice": 0.8}
    assert tj.parse_progress(json.dumps(event) + "\r\n") == event
    assert tj.parse_progress(json.dumps({"event": "done"}).encode()) == {"event": "done"}


def test_progress_reader_joins_partial_chunks() -> None:
    reader = tj.ProgressReader()
    line1 = json.dumps({"event": "step", "step": 1}) + "\n"
    line2 = json.dumps({"event": "done", "model": "r/model.onnx"})
    assert reader.feed(line1[:10]) == []
    assert reader.feed(line1[10:] + "noise line\n" + line2[:5]) == [{"event": "step", "step": 1}]
    assert reader.feed(line2[5:].encode()) == []
    assert reader.flush() == [{"event": "done", "model": "r/model.onnx"}]
    assert reader.other == ["noise line"]


def test_read_report(tmp_path: Path) -> None:
    report = {"pixel": {"dice": 0.9}, "ap": 1.0, "suggested": {"threshold": 0.5}}
    (tmp_path / "report.json").write_text(json.dumps(report))
    assert tj.read_report(tmp_path) == report
    assert tj.read_report(tmp_path / "report.json") == report
    with pytest.raises(tj.ReportError, match="not found"):
        tj.read_report(tmp_path / "missing")
    (tmp_path / "report.json").write_text("{broken")
    with pytest.raises(tj.ReportError, match="unreadable"):
        tj.read_report(tmp_path)
    (tmp_path / "report.json").write_text("[1, 2]")
    with pytest.raises(tj.ReportError, match="not a JSON object"):
        tj.read_report(tmp_path)


def test_new_run_dir_is_created_and_unique(tmp_path: Path) -> None:
    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    a = tj.new_run_dir(tmp_path, now=now)
    b = tj.new_run_dir(tmp_path, now=now)
    assert a == tmp_path / "runs" / "run-20260102-030405" and a.is_dir()
    assert b == tmp_path / "runs" / "run-20260102-030405_2" and b.is_dir()


def test_gpu_available_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(tj.gpu_available(), bool)
    # A broken tensorrt stub (as PyPI ships without NVIDIA's index) must read as "no GPU".
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert tj.gpu_available() is False
