"""The PyInstaller bundle (build.spec): it builds, and the built station judges frames on its own.

Slow (~45 s build on 2 cores): marked ``slow``; ``make test`` runs it. The bundle is run in a
clean environment — no PYTHONPATH, no VIRTUAL_ENV, a PATH without the venv — so it can only work
from what it carries.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 5


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pyinstaller = shutil.which("pyinstaller", path=str(Path(sys.executable).parent))
    if pyinstaller is None:
        pytest.skip(
            "pyinstaller is not installed (it is in the dev extra: pip install -e '.[dev]')"
        )
    out = tmp_path_factory.mktemp("bundle")
    build = subprocess.run(
        [pyinstaller, "--noconfirm", "--log-level", "WARN", "--distpath", str(out / "dist"),
         "--workpath", str(out / "work"), str(ROOT / "build.spec")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-4000:]
    exe = out / "dist" / "inspection-station" / "inspection-station"
    assert exe.is_file(), f"no executable in {exe.parent}"
    return exe


def test_bundle_runs_headless_in_a_clean_environment(bundle: Path, tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "INSPECTION_STATION_HOME": str(tmp_path / "station"),
        "LANG": "C.UTF-8",
    }
    assert not {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"} & set(env)
    run = subprocess.run(
        [str(bundle), "run", "--headless", "--limit", str(FRAMES)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    frames = [line for line in lines if "verdict" in line]
    assert len(frames) == FRAMES, run.stdout[-2000:]
    assert all(f["verdict"] in ("PASS", "NG") for f in frames)  # the demo frames are readable
    summary = lines[-1]
    assert "verdict" not in summary and summary.get("judged", FRAMES) == FRAMES
    # the bundle does not carry TensorFlow (the station never imports it)
    internal = bundle.parent / "_internal"
    assert not (internal / "tensorflow").exists()
    assert os.access(bundle, os.X_OK)
