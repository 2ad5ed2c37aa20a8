"""Smoke test of ``python -m bench``: every cheap subcommand runs end to end at tiny sizes.

No TensorFlow (``--no-random``, backends onnxruntime / opencv), the demo model, frames of 128 px,
fractions of a second per row: this checks the tooling, not the speed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import __main__ as bench_cli
from bench import engines_table, ort_routes, pipeline_e2e, scaling
from bench._machine import Machine

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "resources" / "models" / "demo.onnx"

pytest.importorskip("onnxruntime")


def test_cli_lists_subcommands_and_refuses_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("engines", "pipeline", "scaling", "gui", "routes"):
        assert name in out
    assert bench_cli.main(["nonsense"]) == 2


def test_machine_marks_loaded_runs_preliminary() -> None:
    busy = Machine("python -m bench x", load={"start": 2.5, "end": 3.1, "max": 3.1})
    assert busy.preliminary
    assert "Preliminary" in "\n".join(busy.header("t"))
    crowded = Machine("python -m bench x", cores=2, load={"start": 0.5, "end": 3.0, "max": 4.5})
    assert crowded.preliminary  # more than the benchmark's own 2 threads on top of 2
    idle = Machine("python -m bench x", cores=2, load={"start": 0.2, "end": 2.1, "max": 2.4})
    assert not idle.preliminary  # the benchmark's own threads alone
    assert "Preliminary" not in "\n".join(idle.header("t"))


def test_engines_table_tiny(tmp_path: Path) -> None:
    argv = ["--backend", "onnxruntime,opencv", "--no-random", "--only", "demo", "--seconds", "0.05",
            "--rounds", "1", "--no-accuracy", "--frame-size", "128", "--batches", "1,2",
            "--out-dir", str(tmp_path)]  # fmt: skip
    assert bench_cli.main(["engines", *argv]) == 0
    data = json.loads((tmp_path / "engines_table.json").read_text())
    assert data["machine"]["cpu"] and "load" in data["machine"]
    ort = next(r for r in data["rows"] if r["name"] == "demo ORT")
    assert set(ort["timing"]) == {"1", "2"}
    assert all(t["ms_per_frame"] > 0 and t["vs_tf"] is None for t in ort["timing"].values())
    md = (tmp_path / "engines_table.md").read_text()
    assert "| demo ORT | onnxruntime | 8 | 128 |" in md
    assert engines_table.RANDOM_SHAPES[0] == (16, 512, 1.0)  # the TF baseline's shape comes first


def test_routes_tiny(tmp_path: Path) -> None:
    argv = ["--model", str(DEMO), "--frame-size", "128", "--seconds", "0.1", "--rounds", "1",
            "--out-dir", str(tmp_path)]  # fmt: skip
    assert ort_routes.main(argv) == 0
    rows = json.loads((tmp_path / "ort_routes.json").read_text())["rows"]
    names = [r["name"] for r in rows]
    assert names[0].startswith("station settings")
    assert "2 sessions x 1 thread, frames in parallel" in names
    two = next(r for r in rows if r["sessions"] == 2)
    assert two["fps"] > 0


def test_scaling_child_counts_tiles() -> None:
    small = scaling.child(str(DEMO), 128, 0.05)
    big = scaling.child(str(DEMO), 256, 0.05)
    assert small["tiles"] == 1 and big["tiles"] > small["tiles"]
    assert big["ms_per_frame"] > 0 and big["peak_rss_mb"] > 0


def test_pipeline_session_child(tmp_path: Path) -> None:
    cfg = {"kind": "session", "recipe": str(ROOT / "resources/recipes/demo.toml"),
           "source": f"folder:{ROOT / 'resources/samples'}", "limit": 4, "pin": None,
           "home": str(tmp_path)}  # fmt: skip
    out = pipeline_e2e.session_child(cfg)
    assert out["judged"] == 4 and out["lost"] == 0
    assert out["fps"] > 0 and out["bare_fps"] > 0
    assert out["latency_ms"]["p99"] >= out["latency_ms"]["p50"] >= 0
    assert out["peak_rss_mb"] > 0


def test_engines_tensorrt_rows_say_why_they_were_skipped(tmp_path: Path) -> None:
    from bench._variants import tensorrt_unavailable

    reason = tensorrt_unavailable()
    if reason is None:
        pytest.skip("TensorRT and a CUDA device are present: the rows would run, not skip")
    argv = ["--backend", "tensorrt", "--no-random", "--no-accuracy", "--out-dir", str(tmp_path)]
    assert engines_table.main(argv) == 0
    rows = json.loads((tmp_path / "engines_table.json").read_text())["rows"]
    assert rows and all(r["backend"] == "tensorrt" and r["skip"] == reason for r in rows)
    assert "Skipped here:" in (tmp_path / "engines_table.md").read_text()
