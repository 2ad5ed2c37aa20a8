"""End to end: ``python -m app`` as a user runs it, stdout parsed line by line as JSON."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from app.cli import build_parser, has_display
from tests.tiny_models import sigmoid_model

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / "resources" / "models" / "demo.onnx"
TILE = 16
FRAME_KEYS = {"frame", "source", "verdict", "defects", "timings_ms"}
SUMMARY_KEYS = {
    "summary", "acquired", "judged", "pass", "ng", "error", "dropped", "stored", "journaled",
    "lost", "fps",
}  # fmt: skip


def make_model(path: Path) -> Path:
    """``sigmoid(20 * (x - 0.5))`` on N x 16 x 16 x 1 with its card: bright pixels = defect."""
    return sigmoid_model(path, tile=TILE, gain=20.0, model_id="tiny")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: own data dir, no display (so no subcommand = headless)."""
    e = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    e.pop("QT_QPA_PLATFORM", None)
    e["INSPECTION_STATION_HOME"] = str(tmp_path / "home")
    return e


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Six frames (odd ones with a 256 px defect) and one corrupt file.

    The runs use the demo recipe's rules with this model, so the defect is made larger than the
    demo's minimum defect area.
    """
    d = tmp_path / "frames"
    d.mkdir()
    for i in range(6):
        img = np.full((32, 40), 30, np.uint8)
        if i % 2:
            img[8:24, 12:28] = 250
        cv2.imwrite(str(d / f"{i:03d}.png"), img)
    (d / "004b_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return d


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return make_model(tmp_path / "tiny.onnx")


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def parse(stdout: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    lines = [json.loads(line) for line in stdout.splitlines()]  # every line must be JSON
    assert lines and lines[-1].get("summary") is True, "the last line is the summary"
    frames, summary = lines[:-1], lines[-1]
    for f in frames:
        assert FRAME_KEYS <= set(f) and f["verdict"] in ("PASS", "NG", "ERROR")
        assert isinstance(f["defects"], list)
        assert (f["verdict"] == "ERROR") == ("error" in f)
    assert SUMMARY_KEYS <= set(summary)
    assert summary["judged"] == summary["pass"] + summary["ng"]
    assert summary["judged"] + summary["error"] == len(frames)
    assert summary["acquired"] == len(frames) + summary["dropped"]
    assert summary["pass"] == sum(f["verdict"] == "PASS" for f in frames)
    return frames, summary


def test_demo_run_limit_20(env: dict[str, str]) -> None:
    proc = run_cli(env, "run", "--headless", "--limit", "20")
    assert proc.returncode == 0, proc.stderr
    frames, summary = parse(proc.stdout)
    assert summary["judged"] == 20 and summary["dropped"] == 0
    assert summary["fps"] > 0
    for f in frames:
        assert {"infer", "judge", "queue"} <= set(f["timings_ms"])


def test_a_corrupt_file_is_an_error_result_and_the_run_exits_0(
    env: dict[str, str], folder: Path, model: Path
) -> None:
    proc = run_cli(env, "run", "--headless", "--source", f"folder:{folder}", "--model", str(model))
    assert proc.returncode == 0, proc.stderr
    frames, summary = parse(proc.stdout)
    assert (summary["judged"], summary["error"], summary["dropped"]) == (6, 1, 0)
    # natural order: 004.png, 004b_corrupt.png, 005.png
    assert [f["verdict"] for f in frames] == ["PASS", "NG", "PASS", "NG", "PASS", "ERROR", "NG"]
    assert frames[5]["path"].endswith("004b_corrupt.png") and frames[5]["error"]
    assert frames[1]["defects"][0]["area_px"] == 256
    assert "004b_corrupt.png" in proc.stderr  # and logged
    assert "Traceback" not in proc.stderr


def test_limit_with_a_looping_recipe(env: dict[str, str], folder: Path, model: Path) -> None:
    # The demo recipe loops; with --limit the run goes round the folder until N frames.
    proc = run_cli(
        env, "run", "--headless", "--source", f"folder:{folder}", "--model", str(model),
        "--limit", "9",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    frames, summary = parse(proc.stdout)
    # --limit counts results; the corrupt file is answered once (ERROR), not on every pass
    assert len(frames) == 9 and [f["frame"] for f in frames] == list(range(9))
    assert summary["error"] == 1


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--model", "{tmp}/nope.onnx"], "nope.onnx"),
        (["--source", "camera:7"], "bad source spec"),
        (["--source", "folder:{tmp}/no-such-folder"], "no-such-folder"),
        (["--recipe", "{tmp}/missing.toml"], "missing.toml"),
        (["--limit", "0"], "--limit"),
    ],
)
def test_unusable_configuration_exits_2_with_the_reason(
    env: dict[str, str], tmp_path: Path, model: Path, folder: Path, args: list[str], reason: str
) -> None:
    base = ["run", "--headless", "--model", str(model), "--source", f"folder:{folder}"]
    proc = run_cli(env, *base, *[a.format(tmp=tmp_path) for a in args])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert reason in proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr


def test_db_then_export_csv_round_trip(
    env: dict[str, str], tmp_path: Path, folder: Path, model: Path
) -> None:
    db, out = tmp_path / "run" / "results.sqlite3", tmp_path / "results.csv"
    proc = run_cli(
        env, "run", "--headless", "--source", f"folder:{folder}", "--model", str(model),
        "--db", str(db),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    frames, summary = parse(proc.stdout)
    proc = run_cli(env, "export-csv", "--db", str(db), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == summary["judged"] + summary["error"] == summary["stored"]
    assert sorted(r["verdict"] for r in rows) == sorted(f["verdict"] for f in frames)
    assert {r["model_id"] for r in rows} == {"tiny"}
    ng_images = [r["image_path"] for r in rows if r["verdict"] == "NG"]
    assert ng_images and all(Path(p).is_file() for p in ng_images)  # archived beside the db
    assert all(Path(p).is_relative_to(db.parent / "archive") for p in ng_images)


def test_export_csv_of_a_missing_database_exits_2(env: dict[str, str], tmp_path: Path) -> None:
    proc = run_cli(env, "export-csv", "--db", str(tmp_path / "none.db"), "--out", "x.csv")
    assert proc.returncode == 2 and "none.db" in proc.stderr
    assert not (tmp_path / "none.db").exists()


def test_no_command_without_a_display_runs_headless(
    env: dict[str, str], tmp_path: Path, folder: Path, model: Path
) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'name = "t"\nmodel = "{model}"\n[source]\nspec = "folder:{folder}"\n')
    home = Path(env["INSPECTION_STATION_HOME"])
    home.mkdir()
    (home / "settings.toml").write_text(f'recipe_path = "{recipe}"\n')
    proc = run_cli(env)
    assert proc.returncode == 0, proc.stderr
    _, summary = parse(proc.stdout)
    assert summary["judged"] == 6
    assert "no display" in proc.stderr


def test_run_without_headless_gui_without_display_and_devices(env: dict[str, str]) -> None:
    proc = run_cli(env, "run")
    assert proc.returncode == 2 and "--headless" in proc.stderr
    proc = run_cli(env, "gui")
    assert proc.returncode == 2 and "no display" in proc.stderr
    proc = run_cli(env, "devices")
    assert proc.returncode == 0, proc.stderr
    header, *rows = proc.stdout.splitlines()
    assert header.split()[:3] == ["#", "id", "serial"]
    assert rows and "viky" in proc.stdout.lower()  # the simulator fallback


def test_parser_shape_and_display_detection() -> None:
    args = build_parser().parse_args(
        ["run", "--headless", "--recipe", "r.toml", "--source", "folder:x", "--model", "m.onnx",
         "--limit", "5", "--db", "d.sqlite"]
    )  # fmt: skip
    assert (args.command, args.headless, args.limit, str(args.db)) == ("run", True, 5, "d.sqlite")
    assert build_parser().parse_args(["gui", "--recipe", "r.toml"]).command == "gui"
    assert build_parser().parse_args(["devices", "--cti", "a.cti"]).cti == [Path("a.cti")]
    assert not has_display({})
    assert has_display({"DISPLAY": ":0"}) and has_display({"WAYLAND_DISPLAY": "wayland-0"})
    assert has_display({"QT_QPA_PLATFORM": "offscreen"})


@pytest.mark.dagm
def test_dagm_recipe_judges_the_real_images_like_their_labels(
    env: dict[str, str], dagm_class1: Path
) -> None:
    """The station end to end on all 575 real DAGM Class1 frames with the committed model.

    The folder includes the images the model was trained on, so this checks the station's whole
    path (folder source, scaling, tiling, rules at the card's operating point), not the model's
    generalisation; that is measured on the held-out split by tests/training/test_dagm.py.
    """
    recipe = ROOT / "resources" / "recipes" / "dagm-class1.toml"
    proc = run_cli(
        env, "run", "--headless", "--recipe", str(recipe), "--source", f"folder:{dagm_class1}"
    )
    assert proc.returncode == 0, proc.stderr
    frames, summary = parse(proc.stdout)
    labelled = {
        p[2]: p[1] == "1"
        for p in (line.split() for line in (dagm_class1 / "Label" / "Labels.txt").open())
        if len(p) >= 3 and p[0].isdigit()
    }
    assert summary["judged"] == len(labelled) == 575 and summary["skipped"] == 0
    ng = {Path(f["path"]).name for f in frames if f["verdict"] == "NG"}
    assert ng == {name for name, defective in labelled.items() if defective}
