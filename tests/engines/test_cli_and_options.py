"""`python -m engines build` without TensorRT, and the ORT session options from one place."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from engines import __main__ as cli
from engines.build import BuildError, build_engine
from engines.options import THREADS_ENV, ort_session_options, ort_threads, physical_cores

ROOT = Path(__file__).resolve().parents[2]
NO_TENSORRT = importlib.util.find_spec("tensorrt") is None


@pytest.mark.skipif(not NO_TENSORRT, reason="tensorrt is installed here")
def test_build_without_tensorrt_exits_2_with_reason(mean_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "mean.engine"
    cmd = [sys.executable, "-m", "engines", "build", "--onnx", str(mean_model), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "TensorRT is not installed" in done.stderr and "pip install" in done.stderr
    assert "mean.onnx" in done.stderr
    assert done.stdout == "" and not out.exists()


def test_build_argument_errors_exit_1(mean_model: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    args = ["build", "--onnx", str(mean_model), "--out", str(tmp_path / "x.engine")]
    assert cli.main([*args, "--min-batch", "8", "--max-batch", "4"]) == 1
    assert "min (8)" in capsys.readouterr().err
    assert cli.main(["build", "--onnx", str(tmp_path / "nope.onnx"), "--out", "x.engine"]) == 1
    assert "nope.onnx: ONNX model not found" in capsys.readouterr().err
    with pytest.raises(BuildError, match=r"\.engine or \.plan"):
        build_engine(mean_model, tmp_path / "x.trt")


def test_thread_count_from_env_and_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert ort_threads() == physical_cores() >= 1
    monkeypatch.setenv(THREADS_ENV, "3")
    assert ort_threads() == 3 and ort_threads(1) == 1
    monkeypatch.setenv(THREADS_ENV, "0")
    with pytest.raises(ValueError, match=THREADS_ENV):
        ort_threads()


def test_session_options(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    monkeypatch.delenv(THREADS_ENV, raising=False)
    opts = ort_session_options(2)
    assert opts.intra_op_num_threads == 2 and opts.inter_op_num_threads == 1
    assert opts.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_saved_card_is_world_readable(tmp_path: Path) -> None:
    from engines.card import ModelCard

    path = ModelCard(name="p", input_height=8, input_width=8).save(tmp_path / "p.json")
    assert path.stat().st_mode & 0o777 == 0o644
