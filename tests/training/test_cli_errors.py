"""``python -m training``: the ``data`` summary and one-line errors (exit 2) for every subcommand.

None of these reach TensorFlow: paths are checked before any work starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from training import cli
from training.data.synthetic import generate, make_sample

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Class folders with a warning (a mask without image) but nothing blocking."""
    root = tmp_path_factory.mktemp("cli_ds")
    generate(root, 12, size=(32, 40), defect_ratio=0.5, seed=0, layout="classes")
    _, mask = make_sample(np.random.default_rng(0), (32, 40), "blob")
    cv2.imwrite(str(root / "blob" / "Imgs" / "lost_mask.png"), mask)
    return root


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["data", "{tmp}/nope"], "{tmp}/nope: dataset folder not found"),
        (["train", "--data", "{tmp}/nope", "--out", "{tmp}/run"], "{tmp}/nope: dataset folder"),
        (
            ["evaluate", "--model", "{tmp}/m.onnx", "--data", "{tmp}"],
            "{tmp}/m.onnx: file or folder",
        ),
        (["export", "--run", "{tmp}", "--out", "{tmp}/m.onnx"], "{tmp}: not a run folder"),
        (
            [
                "quantize",
                "--model",
                "{tmp}/m.onnx",
                "--precision",
                "int8",
                "--calib",
                "{tmp}",
                "--out",
                "{tmp}/q.onnx",
            ],
            "{tmp}/m.onnx: file not found",
        ),  # fmt: skip
        (["synth", "--out", "{tmp}/s", "--size", "12by3"], "--size '12by3' is not HxW"),
    ],
)
def test_every_subcommand_fails_in_one_line(tmp_path: Path, argv: list[str], named: str) -> None:
    argv = [a.format(tmp=tmp_path) for a in argv]
    line = _one_line(_run(*argv))
    assert line.startswith(f"python -m training {argv[0]}: error: ")
    assert named.format(tmp=tmp_path) in line
    assert "give" in line or "check" in line  # the fix, not only the fault


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = _run("data", str(tmp_path / "nope"), "--debug")
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_bad_arguments_are_one_line(tmp_path: Path) -> None:
    line = _one_line(_run("train", "--out", str(tmp_path)))
    assert "--data" in line and "--help" in line
    line = _one_line(_run("data", str(tmp_path), "--layout", "zigzag"))
    assert "zigzag" in line


def test_json_progress_reports_the_error_as_a_line(tmp_path: Path) -> None:
    proc = _run("train", "--data", str(tmp_path), "--masks", str(tmp_path / "m"), "--out",
                str(tmp_path / "r"), "--progress", "json")  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last["event"] == "error" and f"{tmp_path / 'm'}: folder not found" in last["message"]


def test_data_prints_layout_classes_sizes_and_problems(dataset: Path) -> None:
    proc = _run("data", str(dataset))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "layout   class_folders" in out
    assert "images   12  (6 defective, 6 defect-free)" in out
    for kind in ("blob", "crack", "scratch", "spot"):
        assert f" {kind} " in out
    assert "40x32 (12)" in out
    assert "blob/Imgs/lost_mask.png: mask without an image" in out


def test_data_json_for_the_gui(dataset: Path) -> None:
    proc = _run("data", str(dataset), "--json")
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.strip().splitlines()
    summary = json.loads(line)
    assert summary["event"] == "data" and summary["layout"] == "class_folders"
    assert [c["name"] for c in summary["classes"]] == ["blob", "crack", "scratch", "spot"]
    assert summary["problems"][0]["file"] == "blob/Imgs/lost_mask.png"
    assert summary["split"]["given"] is False


def test_data_prints_file_names_that_are_not_utf8(tmp_path: Path) -> None:
    generate(tmp_path, 2, size=(32, 32), defect_ratio=0.5, seed=2)
    _, mask = make_sample(np.random.default_rng(0), (32, 32), "blob")
    name = os.fsdecode(b"lost\xff_mask.png")
    (tmp_path / "masks" / name).write_bytes(cv2.imencode(".png", mask)[1].tobytes())
    proc = _run("data", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "masks/lost" in proc.stdout and "mask without an image" in proc.stdout


def test_data_with_a_blocking_problem_exits_2_after_the_summary(tmp_path: Path) -> None:
    generate(tmp_path, 4, size=(32, 32), defect_ratio=0.5, seed=1)
    (tmp_path / "images" / "0005.png").write_bytes(b"not an image")
    proc = _run("data", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "ERROR images/0005.png: not a readable image" in proc.stdout
    assert "must be fixed before training" in proc.stderr
    assert "first: images/0005.png" in proc.stderr


def test_an_unexpected_failure_keeps_its_traceback_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def boom(args: object, progress: object) -> dict[str, object]:
        raise RuntimeError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "synth", boom)
    assert cli.main(["synth", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: a bug" in err


def test_train_and_evaluate_take_a_forced_layout(dataset: Path, tmp_path: Path) -> None:
    """--layout overrides the detection in train and evaluate as in data; a layout that does
    not fit is one line naming it, exit 2."""
    line = _one_line(_run("train", "--data", str(dataset), "--out", str(tmp_path / "r"),
                          "--layout", "mvtec", "--epochs", "1"))  # fmt: skip
    assert "mvtec" in line.lower()
    line = _one_line(_run("evaluate", "--model", str(tmp_path / "m.onnx"), "--data", str(dataset),
                          "--layout", "zigzag"))  # fmt: skip
    assert "zigzag" in line


def test_a_split_naming_images_the_data_lacks_is_one_line(tmp_path: Path) -> None:
    dataset = tmp_path / "d"
    generate(dataset, 6, size=(32, 40), defect_ratio=0.5, seed=0)
    split = tmp_path / "other.split.json"
    split.write_text(json.dumps({"train": ["ghost_part"], "val": [], "test": []}))
    line = _one_line(_run("train", "--data", str(dataset), "--out", str(tmp_path / "r"),
                          "--split", str(split), "--epochs", "1"))  # fmt: skip
    assert "ghost_part" in line and "not in the dataset" in line
    line = _one_line(_run("train", "--data", str(dataset), "--out", str(tmp_path / "r"),
                          "--split", str(tmp_path / "none.json"), "--epochs", "1"))  # fmt: skip
    assert "none.json" in line
