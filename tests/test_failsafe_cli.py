"""Fail-safe, end to end: ``inspection-station run --headless`` as a line runs it.

Each test counts: rows in the database == results on stdout == what the summary says, and
``acquired == pass + ng + error + dropped``; and checks the documented exit code.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from engines.card import ModelCard
from tests.test_cli_headless import ROOT, make_model, run_cli

TILE = 16


def nan_model(path: Path, *, always: bool = False) -> Path:
    """A model that answers NaN on bright pixels (> 0.9), or everywhere with ``always``.

    Its card has no golden, so only the load-time test inference on a blank tile and the
    per-frame check stand between it and a PASS.
    """
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", TILE, TILE, 1])
    y = helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", TILE, TILE, 1])
    cut = -1.0 if always else 0.9
    graph = helper.make_graph(
        [
            helper.make_node("Greater", ["image", "cut"], ["bright"]),
            helper.make_node("Sigmoid", ["image"], ["sig"]),
            helper.make_node("Where", ["bright", "nan", "sig"], ["probability"]),
        ],
        "nan",
        [x],
        [y],
        initializer=[
            helper.make_tensor("cut", TensorProto.FLOAT, [], [cut]),
            helper.make_tensor("nan", TensorProto.FLOAT, [], [float("nan")]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    ModelCard(name="nan", input_height=TILE, input_width=TILE, model_id="nan").save(
        path.with_suffix(".json")
    )
    return path


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    e.pop("QT_QPA_PLATFORM", None)
    e["INSPECTION_STATION_HOME"] = str(tmp_path / "home")
    return e


def frames_dir(root: Path, n: int = 12, *, defective_every: int = 2) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = np.full((32, 40), 30, np.uint8)
        if defective_every == 1 or i % defective_every == 1:
            img[8:24, 12:28] = 250
        ok, png = cv2.imencode(".png", img)  # imwrite crashes on non-UTF-8 path strings
        assert ok
        (root / f"{i:03d}.png").write_bytes(png.tobytes())
    return root


def parse(stdout: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert lines and lines[-1].get("summary") is True, stdout[-500:]
    frames, summary = lines[:-1], lines[-1]
    counts = {v: sum(f["verdict"] == v for f in frames) for v in ("PASS", "NG", "ERROR")}
    assert (summary["pass"], summary["ng"], summary["error"]) == (
        counts["PASS"],
        counts["NG"],
        counts["ERROR"],
    )
    assert summary["acquired"] == len(frames) + summary["dropped"]
    for f in frames:
        assert (f["verdict"] == "ERROR") == ("error" in f), f
    return frames, summary


def run_folder(
    env: dict[str, str], folder: Path, model: Path, db: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``run --headless`` over ``folder`` with ``model`` into ``db``."""
    return run_cli(
        env, "run", "--headless", "--source", f"folder:{folder}", "--model", str(model),
        "--db", str(db), *extra,
    )  # fmt: skip


def db_rows(db: Path) -> list[tuple[str, str | None]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT verdict, error FROM inspections ORDER BY id").fetchall()


def test_a_model_that_is_nan_everywhere_is_refused_at_load(
    env: dict[str, str], tmp_path: Path
) -> None:
    folder = frames_dir(tmp_path / "frames", 2)
    model = nan_model(tmp_path / "nan.onnx", always=True)
    proc = run_folder(env, folder, model, tmp_path / "r.db")
    assert proc.returncode == 2
    assert "not finite" in proc.stderr and proc.stdout == ""


def test_a_nan_model_never_passes_and_faults_the_station(
    env: dict[str, str], tmp_path: Path
) -> None:
    folder = frames_dir(tmp_path / "frames", 12, defective_every=1)  # all have bright pixels
    db = tmp_path / "r.db"
    proc = run_folder(env, folder, nan_model(tmp_path / "nan.onnx"), db)
    assert proc.returncode == 4, proc.stderr[-2000:]
    frames, summary = parse(proc.stdout)
    assert summary["pass"] == 0 and summary["ng"] == 0
    assert summary["error"] == len(frames) >= 5
    assert "consecutive model faults" in (summary["fault"] or "")
    assert "not finite" in frames[0]["error"]
    rows = db_rows(db)
    assert len(rows) == len(frames) and {v for v, _ in rows} == {"ERROR"}


def test_unreadable_files_are_error_rows_with_file_and_reason(
    env: dict[str, str], tmp_path: Path
) -> None:
    folder = frames_dir(tmp_path / "frames", 6)
    (folder / "003b_truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    (folder / "000a_empty.png").write_bytes(b"")
    db = tmp_path / "r.db"
    proc = run_folder(env, folder, make_model(tmp_path / "m.onnx"), db)
    assert proc.returncode == 0, proc.stderr[-2000:]
    frames, summary = parse(proc.stdout)
    assert summary["acquired"] == 8 and summary["error"] == 2 and summary["dropped"] == 0
    errors = {Path(f["path"]).name: f["error"] for f in frames if f["verdict"] == "ERROR"}
    assert set(errors) == {"003b_truncated.png", "000a_empty.png"}
    assert all(e.startswith("unreadable") for e in errors.values())
    rows = db_rows(db)
    assert len(rows) == 8 and sum(v == "ERROR" for v, _ in rows) == 2
    assert summary["stored"] == 8 and summary["lost"] == 0


def test_a_folder_of_only_unreadable_files_is_all_error(
    env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(b"garbage")
    proc = run_folder(env, folder, make_model(tmp_path / "m.onnx"), tmp_path / "r.db")
    frames, summary = parse(proc.stdout)
    assert [f["verdict"] for f in frames] == ["ERROR"] * 3
    assert summary["pass"] == 0


def test_an_include_zone_outside_the_frame_refuses_to_judge(
    env: dict[str, str], tmp_path: Path
) -> None:
    folder = frames_dir(tmp_path / "frames", 4)
    model = make_model(tmp_path / "m.onnx")
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        'name = "zone outside"\n'
        f'model = "{model.name}"\n'
        "[rules]\nthreshold = 0.5\n"
        '[[rules.zones]]\nname = "far"\nkind = "include"\n'
        "polygon = [[1000, 1000], [1100, 1000], [1100, 1100]]\n"
    )
    proc = run_cli(
        env, "run", "--headless", "--recipe", str(recipe), "--source", f"folder:{folder}",
        "--db", str(tmp_path / "r.db"),
    )  # fmt: skip
    assert proc.returncode == 4, proc.stderr[-2000:]
    frames, summary = parse(proc.stdout)
    assert summary["pass"] == 0 and summary["error"] == len(frames) >= 1
    assert "zone" in (summary["fault"] or "")


def test_a_non_utf8_folder_is_judged_and_stored_losslessly(
    env: dict[str, str], tmp_path: Path
) -> None:
    root = os.fsencode(tmp_path) + b"/lot\xff\xfe"
    os.mkdir(root)
    folder = Path(os.fsdecode(root))
    frames_dir(folder, 4)
    db = tmp_path / "r.db"
    proc = run_folder(env, folder, make_model(tmp_path / "m.onnx"), db)
    assert proc.returncode == 0, proc.stderr[-2000:]
    frames, summary = parse(proc.stdout)
    assert summary["judged"] == 4 and summary["stored"] == 4 and summary["lost"] == 0
    assert "Traceback" not in proc.stderr
    # JSON escapes the undecodable bytes; decoding gives the very same path back.
    assert os.fsencode(frames[0]["path"]).startswith(root)
    assert len(db_rows(db)) == 4


def _viky_child(env: dict[str, str], tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "app", "run", "--headless", "--source", "genicam:0",
         "--db", str(tmp_path / "r.db"), *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_for_lines(proc: subprocess.Popen[str], n: int, timeout: float = 60) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while len(lines) < n and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
    assert len(lines) >= n, f"only {len(lines)} results before the deadline"
    return lines


@pytest.mark.camera
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_a_camera_run_cleanly(
    env: dict[str, str], tmp_path: Path, sig: signal.Signals
) -> None:
    proc = _viky_child(env, tmp_path)
    try:
        lines = _wait_for_lines(proc, 5)
        t0 = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
        stopped_s = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err[-2000:]
    assert stopped_s < 2.0, f"took {stopped_s:.2f} s to stop"
    frames, summary = parse("".join(lines) + out)
    assert summary["stored"] + summary["journaled"] == len(frames) and summary["lost"] == 0
    assert len(db_rows(tmp_path / "r.db")) == len(frames)


@pytest.mark.camera
def test_limit_counts_judged_frames_on_a_free_running_camera(
    env: dict[str, str], tmp_path: Path
) -> None:
    proc = _viky_child(env, tmp_path, "--limit", "20")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    frames, summary = parse(out)
    assert len(frames) == 20 and summary["pass"] + summary["ng"] + summary["error"] == 20
